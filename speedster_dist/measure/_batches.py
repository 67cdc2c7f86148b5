"""Batches of requests built from the samples, for load generation.

A request is one sample, as the learner's ``__call__`` takes it (its own leading batch axis,
usually of size 1). A batch of ``b`` requests concatenates ``b`` samples along that axis,
cycling through the samples in order, so a batch of 8 from 3 samples is
``s0 s1 s2 s0 s1 s2 s0 s1``. Samples must agree on every other axis (a text model's samples
padded to one length); otherwise the batch cannot be built and :class:`BatchError` says which
input differs and how.

Whether a backend can *take* the batch is the backend's business: a candidate built for fixed
shapes is built per batch (``speedster_dist.backends.source_for_batch``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speedster_dist.errors import BatchError

__all__ = ["BatchError", "batch_rows", "tile_batch"]

Sample = Sequence[torch.Tensor]


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BatchError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    return batch_size


def _check_samples(samples: Sequence[Sample], input_names: Sequence[str]) -> None:
    if not samples:
        raise BatchError("a batch needs at least one sample")
    for index, sample in enumerate(samples):
        if len(sample) != len(input_names):
            raise BatchError(
                f"sample {index} has {len(sample)} inputs, the model {len(input_names)}: "
                f"{list(input_names)}"
            )
        for name, tensor in zip(input_names, sample, strict=True):
            if tensor.dim() == 0:
                raise BatchError(
                    f"input {name!r} of sample {index} is a scalar: it has no batch axis "
                    "to concatenate along"
                )


def _check_other_axes(name: str, tensors: Sequence[torch.Tensor]) -> None:
    shapes = {tuple(t.shape[1:]) for t in tensors}
    if len(shapes) > 1:
        raise BatchError(
            f"input {name!r} differs between samples beyond the batch axis "
            f"({sorted(shapes)}): requests can only be batched when every sample has one "
            "shape on the other axes; pad the samples to one length (a tokenizer's "
            "padding='max_length') or measure batch size 1"
        )


def tile_batch(
    samples: Sequence[Sample], input_names: Sequence[str], batch_size: int
) -> tuple[torch.Tensor, ...]:
    """The inputs of one call serving ``batch_size`` requests (one sample each), the
    samples taken in turn and concatenated along axis 0 (the batch axis of every input)."""
    size = _check_batch_size(batch_size)
    _check_samples(samples, input_names)
    chosen = [samples[i % len(samples)] for i in range(size)]
    batch = []
    for position, name in enumerate(input_names):
        tensors = [sample[position] for sample in chosen]
        _check_other_axes(name, tensors)
        batch.append(torch.cat(tensors, dim=0).contiguous())
    return tuple(batch)


def batch_rows(samples: Sequence[Sample], batch_size: int) -> int:
    """Rows along the batch axis of a batch of ``batch_size`` requests (each sample may
    carry several rows)."""
    size = _check_batch_size(batch_size)
    if not samples or not samples[0]:
        raise BatchError("a batch needs at least one sample with one input")
    return sum(int(samples[i % len(samples)][0].shape[0]) for i in range(size))
