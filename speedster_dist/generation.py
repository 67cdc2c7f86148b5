"""Generative models: whether a search optimizes ``generate()``, and its trial payload.

``optimize_model(model, input_data, task=...)``: ``"text-generation"`` (a decoder-only model),
``"text2text-generation"`` (an encoder-decoder), ``"forward"`` (one forward pass, as for any
model), or None: a model that can generate and is not an encoder-decoder (a causal LM head)
is optimized for generation, anything else for its forward pass. The prompts (dicts of
``input_ids`` and optionally ``attention_mask``, or strings with a tokenizer) are checked here,
before any trial: anything wrong raises :class:`~speedster_dist.errors.InputError`. The
original's greedy ``generate()`` on the held-out prompts is the reference every candidate's
tokens are compared with (docs/generation.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from speedster_dist.artifacts import LearnerIO
from speedster_dist.backends import SourceModel
from speedster_dist.errors import InputError
from speedster_dist.inputs import SampleSet, few_samples, normalize_inputs, split_sizes
from speedster_dist.measure import resolve_metric
from speedster_dist.modelio import OutputSpec, model_fingerprint
from speedster_dist.options import RunOptions, parse_run_options
from speedster_dist.prepare import Prepared, prepare_payload
from speedster_dist.runtime import TrialPayload

__all__ = [
    "GENERATION_INPUTS",
    "GENERATION_TASKS",
    "generation_options",
    "generation_task",
    "prepare_generation",
    "recorded_payload",
]

GENERATION_TASKS = ("text-generation", "text2text-generation")
GENERATION_INPUTS = ("input_ids", "attention_mask")
_AXES = {0: "batch", 1: "sequence"}


def _can_generate(model: Any) -> bool:
    check = getattr(model, "can_generate", None)
    try:
        return isinstance(model, torch.nn.Module) and callable(check) and bool(check())
    except Exception:  # a model's own can_generate() that raises: it cannot
        return False


def generation_task(model: Any, task: str) -> str:
    """The generation task ``model`` is optimized for ("" for a forward pass), given the
    user's ``task`` ("" when not given); InputError for a task the model cannot do."""
    if task == "forward":
        return ""
    can = _can_generate(model)
    seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    if not task:
        return "text-generation" if can and not seq2seq else ""
    if not can:
        raise InputError(
            f"task={task!r} needs a model that can generate() (a Hugging Face model with a "
            f"language-model head); {type(model).__name__} cannot"
        )
    if seq2seq != (task == "text2text-generation"):
        kind = "an encoder-decoder" if seq2seq else "a decoder-only model"
        right = "text2text-generation" if seq2seq else "text-generation"
        raise InputError(f"task={task!r}: {type(model).__name__} is {kind}; use task={right!r}")
    return task


def _prompts(samples: SampleSet, model: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each sample as (input_ids, attention_mask), checked."""
    names = samples.input_names
    extra = set(names) - set(GENERATION_INPUTS)
    if "input_ids" not in names or extra:
        hint = " (tokenizer_args=dict(return_token_type_ids=False))" if extra else ""
        raise InputError(
            "generation takes prompts as dicts of input_ids and optionally attention_mask, or "
            f"strings with tokenizer=; the samples have {list(names)}{hint}"
        )
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    prompts = []
    for index, sample in enumerate(samples.samples):
        values = dict(zip(names, sample, strict=True))
        ids = values["input_ids"]
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2 or ids.is_floating_point() or ids.shape[1] == 0:
            raise InputError(
                f"sample {index}: input_ids must be a non-empty 2-D integer tensor "
                f"[batch, tokens], got {tuple(ids.shape)} {ids.dtype}"
            )
        if vocab and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise InputError(f"sample {index}: input_ids outside the vocabulary [0, {vocab})")
        mask = values.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask.reshape(ids.shape).long()
        if bool((mask[:, :-1] > mask[:, 1:]).any()):  # a pad after a token: right padding
            raise InputError(
                f"sample {index}: prompts must be left-padded for generation (the new tokens "
                "follow the last one): set tokenizer.padding_side = 'left'"
            )
        prompts.append((ids.long(), mask))
    return prompts


def _check_length(model: Any, prompts: list[Any], task: str, new_tokens: int) -> None:
    limit = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    longest = max(int(ids.shape[1]) for ids, _ in prompts)
    if task == "text-generation" and isinstance(limit, int) and longest + new_tokens > limit:
        raise InputError(
            f"a prompt of {longest} tokens plus max_new_tokens={new_tokens} exceeds the "
            f"model's {limit} positions"
        )


def _references(model: Any, validation: list[Any], new_tokens: int) -> tuple[list, list]:
    """The original's greedy tokens and prefill logits on each held-out prompt."""
    from speedster_dist.backends.generate.torch_generate import TorchGenerator

    generator = TorchGenerator(model)
    try:
        tokens = [generator.generate(ids, mask, new_tokens) for ids, mask in validation]
        logits = [(generator.prefill(ids, mask),) for ids, mask in validation]
    except Exception as exc:
        raise InputError(
            f"the model's generate() raised on a held-out prompt: {type(exc).__name__}: {exc}"
        ) from exc
    return tokens, logits


def prepare_generation(
    model: torch.nn.Module,
    input_data: Any,
    options: RunOptions,
    task: str,
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
) -> Prepared:
    """The payload of a generation search (``task`` from :func:`generation_task`)."""
    if options.objective != "latency":
        raise InputError("generation is searched for tokens a second: objective='latency' only")
    if tokenizer is not None:  # texts: a BERT-like tokenizer's token_type_ids are no prompt
        tokenizer_args = {"return_token_type_ids": False, **(tokenizer_args or {})}
    samples = normalize_inputs(input_data, model, tokenizer, tokenizer_args, options.batch_size)
    prompts = _prompts(samples, model)
    new_tokens = options.max_new_tokens
    _check_length(model, prompts, task, new_tokens)
    warning = few_samples(len(prompts))
    if warning is not None:
        warnings.warn(
            f"input_data has {warning}: the agreement guard compares few prompts.",
            UserWarning,
            stacklevel=3,
        )
    held_out = split_sizes(len(prompts))[1]
    calibration = prompts if len(prompts) == 1 else prompts[:-held_out]
    validation = prompts[-held_out:]
    tokens, logits = _references(model, validation, new_tokens)
    source = SourceModel(
        GENERATION_INPUTS,
        ("logits",),
        prompts[0],
        module=model,
        dynamic_axes={name: dict(_AXES) for name in GENERATION_INPUTS},
        fingerprint=model_fingerprint(model, f"{task}:{new_tokens}"),
        hf_config=model.config.to_dict(),  # type: ignore[union-attr,operator]
        task=task,
        max_new_tokens=new_tokens,
    )
    payload = TrialPayload(
        source=source,
        calibration=list(calibration),
        validation=list(validation),
        reference_outputs=logits,
        metric=options.metric,
        metric_drop_ths=options.metric_drop_ths,
        measure=options.measure,
        objective=options.serving_objective,
        reference_tokens=tokens,
    )
    io = LearnerIO(
        GENERATION_INPUTS, True, OutputSpec("tensor", ("logits",)), None, ((None, None),) * 2
    )
    return Prepared(payload, io, int(prompts[0][0].shape[0]))


def generation_options(options: RunOptions) -> RunOptions:
    """``options`` as a generation search uses them: judged by greedy agreement."""
    return replace(options, metric=resolve_metric("agreement"))


def recorded_payload(
    model: Any,
    input_data: Any,
    settings: Mapping[str, Any],
    tokenizer: Any = None,
    tokenizer_args: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> tuple[TrialPayload, RunOptions, int]:
    """:func:`~speedster_dist.prepare.prepare_payload` for recorded ``settings`` (a rebench
    kit's), a generation search's too: settings recorded before generation existed (no
    ``task``) were a forward pass's."""
    generation = {
        "task": settings.get("task") if "task" in settings else "forward",
        "max_new_tokens": settings.get("max_new_tokens") or 32,
    }
    extras = {**(extras or {}), **generation}
    task = generation_task(model, str(generation["task"] or ""))
    if not task:
        return prepare_payload(model, input_data, settings, tokenizer, tokenizer_args, extras)
    options = parse_run_options(
        metric_drop_ths=settings.get("metric_drop_ths"),
        optimization_time=settings.get("optimization_time", "constrained"),
        ignore_compilers=settings.get("ignore_compilers"),
        ignore_compressors=settings.get("ignore_compressors"),
        device=settings.get("device"),
        extras=extras,
    )
    prepared = prepare_generation(
        model, input_data, generation_options(options), task, tokenizer, tokenizer_args
    )
    return prepared.payload, generation_options(options), prepared.batch
