"""Normalise the user's ``input_data`` into one flat form: named tensors plus an optional label.

Accepted forms (Speedster's):
- Hugging Face: tokenizer dicts (``BatchEncoding`` or plain dicts of tensors), including
  encoder-decoder dicts that carry ``decoder_input_ids``; or raw strings with ``tokenizer=``;
- plain torch: ``((input_0, ...), label)`` tuples, ``(tensor, label)``, bare tensors or tuples
  of tensors, or a ``DataLoader`` yielding any of those.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from speedster_dist.errors import InputError

__all__ = [
    "MIN_SAMPLES",
    "InputError",
    "SampleSet",
    "few_samples",
    "normalize_inputs",
    "split_sizes",
]

_DEFAULT_TOKENIZER_ARGS: dict[str, Any] = {"truncation": True, "padding": True}
# Below this many samples the 80/20 split leaves one held-out sample (or none) to judge
# accuracy on: the CLI refuses, the API warns.
MIN_SAMPLES = 5


@dataclass
class SampleSet:
    """Samples as ordered tensors. ``keyword`` says whether the model takes them by name."""

    input_names: tuple[str, ...]
    samples: list[tuple[torch.Tensor, ...]]
    labels: list[Any] | None
    keyword: bool

    def as_call(self, sample: tuple[torch.Tensor, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments that call the original model on ``sample``."""
        if self.keyword:
            return (), dict(zip(self.input_names, sample, strict=True))
        return sample, {}


def normalize_inputs(
    input_data: Any,
    model: torch.nn.Module | None,
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
    batch_size: int = 1,
) -> SampleSet:
    """Turn ``input_data`` into a :class:`SampleSet`, or raise :class:`InputError`."""
    items = _materialise(input_data)
    if not items:
        raise InputError(
            "input_data is empty: pass at least one sample (e.g. a list of tokenizer dicts, "
            "strings with tokenizer=, or ((tensor, ...), label) tuples)"
        )
    if all(isinstance(item, str) for item in items):
        return _from_strings(items, tokenizer, tokenizer_args, batch_size)
    if any(isinstance(item, str) for item in items):
        raise InputError("input_data mixes strings with other kinds of samples")
    if all(isinstance(item, Mapping) for item in items):
        return _from_dicts(items)
    return _from_tuples(items, model)


def split_sizes(count: int) -> tuple[int, int]:
    """(held-in, held-out) samples of Speedster's 80/20 split of ``count`` samples; one
    sample is both (nothing is held out)."""
    if count <= 1:
        return count, count
    held_out = max(1, count // 5)
    return count - held_out, held_out


def few_samples(count: int) -> str | None:
    """What too few samples do to the search (None from :data:`MIN_SAMPLES` on)."""
    if count >= MIN_SAMPLES:
        return None
    held_in, held_out = split_sizes(count)
    if count == 0:
        return f"no sample (fewer than {MIN_SAMPLES}): nothing to calibrate, time or judge"
    if count == 1:
        split = (
            "the one sample both calibrates and judges accuracy: nothing is held out, so "
            "the accuracy check only tests the sample the candidates were calibrated on"
        )
    else:
        split = (
            f"{held_in} calibrate(s) and {held_out} is held out, so every candidate's "
            f"accuracy is judged on {held_out} sample(s)"
        )
    return f"{count} sample(s), fewer than {MIN_SAMPLES}: {split}"


def _materialise(input_data: Any) -> list[Any]:
    if input_data is None:
        return []
    if isinstance(input_data, str | torch.Tensor | Mapping):
        return [input_data]
    if not isinstance(input_data, Iterable):
        raise InputError(
            f"input_data must be a list or a DataLoader, got {type(input_data).__name__}"
        )
    return list(input_data)


def _from_strings(
    texts: list[str], tokenizer: Any, tokenizer_args: Mapping[str, Any] | None, batch_size: int
) -> SampleSet:
    if tokenizer is None:
        raise InputError(
            "input_data holds strings but no tokenizer was given: pass tokenizer=<your "
            "Hugging Face tokenizer> (and optionally tokenizer_args=...)"
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    blank = [index for index, text in enumerate(texts) if not text.strip()]
    if blank:  # tokenized to special tokens only: nothing of the model's real input
        raise InputError(
            f"input_data text {blank[0]} is empty or only spaces ({len(blank)} of "
            f"{len(texts)} texts are): give texts like the ones the model will serve"
        )
    args = {**_DEFAULT_TOKENIZER_ARGS, **(tokenizer_args or {}), "return_tensors": "pt"}
    encoded = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        try:
            encoded.append(dict(tokenizer(batch, **args)))
        except Exception as exc:
            raise InputError(f"the tokenizer failed on {batch[:1]!r}: {exc}") from exc
    return _from_dicts(encoded)


def _from_dicts(dicts: list[Any]) -> SampleSet:
    names = tuple(str(k) for k in dicts[0])
    if not names:
        raise InputError("the first input dict is empty")
    samples = []
    for index, item in enumerate(dicts):
        if set(item) != set(names):  # same keys in another order are fine: taken by name
            raise InputError(
                f"sample {index} has keys {sorted(item)}, sample 0 has {sorted(names)}"
            )
        samples.append(tuple(_tensor(item[n], f"sample {index} key {n!r}") for n in names))
    return SampleSet(names, samples, None, keyword=True)


def _from_tuples(items: list[Any], model: torch.nn.Module | None) -> SampleSet:
    samples: list[tuple[torch.Tensor, ...]] = []
    labels: list[Any] = []
    for index, item in enumerate(items):
        inputs, label = _split_label(item, index)
        samples.append(tuple(_tensor(t, f"sample {index} input {i}") for i, t in enumerate(inputs)))
        labels.append(label)
    arity = {len(s) for s in samples}
    if len(arity) != 1:
        raise InputError(f"samples have different numbers of inputs: {sorted(arity)}")
    names = _positional_names(model, arity.pop())
    has_labels = any(label is not None for label in labels)
    return SampleSet(names, samples, labels if has_labels else None, keyword=False)


def _split_label(item: Any, index: int) -> tuple[Sequence[Any], Any]:
    item = _numpy_to_tensor(item)
    if isinstance(item, tuple | list):  # numpy arrays are taken wherever tensors are
        item = [_numpy_to_tensor(v) for v in item]
    if isinstance(item, torch.Tensor):
        return (item,), None
    if not isinstance(item, Sequence) or not item:
        raise InputError(
            f"sample {index} is a {type(item).__name__}; expected ((tensor, ...), label)"
        )
    if len(item) == 2 and isinstance(item[0], Sequence) and not isinstance(item[0], torch.Tensor):
        return item[0], item[1]
    if (
        len(item) == 2
        and isinstance(item[0], torch.Tensor)
        and not isinstance(item[1], torch.Tensor | Sequence)
    ):
        return (item[0],), item[1]
    if len(item) == 2 and isinstance(item[0], torch.Tensor) and _looks_like_label(item[0], item[1]):
        return (item[0],), item[1]
    return item, None


def _looks_like_label(first: torch.Tensor, second: Any) -> bool:
    # DataLoaders yield [inputs, labels]: integer labels with one value per row of the batch.
    return (
        isinstance(second, torch.Tensor)
        and not second.is_floating_point()
        and second.dim() <= 1
        and first.dim() >= 2
        and second.numel() == first.shape[0]
    )


def _numpy_to_tensor(value: Any) -> Any:
    import numpy as np

    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def _tensor(value: Any, where: str) -> torch.Tensor:
    import numpy as np

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{where} is a {type(value).__name__}, expected a torch tensor")
    if value.numel() == 0:  # nothing to time or judge: every candidate would "match" it
        raise InputError(
            f"{where} is empty (shape {tuple(value.shape)}): every sample needs at least one "
            "row of real data; drop the empty samples or give representative ones"
        )
    return value.detach()


def _positional_names(model: torch.nn.Module | None, arity: int) -> tuple[str, ...]:
    default = tuple(f"input_{i}" for i in range(arity))
    if model is None:
        return default
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return default
    named = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(named[:arity]) if len(named) >= arity else default
