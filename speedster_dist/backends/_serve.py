"""Serving many requests through a compiled model: batched and in flight, in order.

A learner's ``run_many`` hands its requests here (each one flat tuple of tensors, as one
call of the model takes it). Consecutive requests that agree beyond the batch axis are
concatenated into calls of at most ``batch_size`` requests, ``concurrency`` calls are kept in
flight through the model's runner (:func:`~._runners.runner_for`: the backend's own
asynchronous API where it has one), and each call's outputs are split back, request by
request, along axis 0. A model built for fixed shapes takes calls of exactly its rows: a
shorter call is padded with copies of its own rows, and the padding's outputs dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from speedster_dist.backends._runners import check_concurrency, runner_for
from speedster_dist.errors import ShapeError

__all__ = ["fixed_rows", "pad_rows", "serve_requests", "split_rows"]

Request = tuple[torch.Tensor, ...]


def fixed_rows(compiled: Any) -> int | None:
    """The rows a model built for fixed shapes takes per call (None: any number)."""
    fixed = getattr(compiled, "fixed_shapes", None)
    if not fixed:
        return None
    return int(next(iter(fixed.values()))[0])


def pad_rows(inputs: Request, rows: int) -> Request:
    """``inputs`` with its rows repeated in turn up to ``rows`` along axis 0."""
    have = int(inputs[0].shape[0])
    if have == rows:
        return inputs
    index = torch.arange(rows) % have
    return tuple(t.index_select(0, index.to(t.device)) for t in inputs)


def split_rows(outputs: Sequence[Any], rows: Sequence[int]) -> list[Request]:
    """A call's outputs, request by request (``rows`` of each; padding left out): every
    output must be batched along axis 0."""
    total = sum(rows)
    kept: list[tuple[torch.Tensor, ...]] = []
    for index, output in enumerate(outputs):
        if not isinstance(output, torch.Tensor) or output.dim() == 0 or output.shape[0] < total:
            raise ShapeError(
                f"output {index} of a call of {total} rows is not batched along axis 0, so "
                "the requests of a batch cannot be told apart: call the learner once per "
                "request instead of run_many"
            )
        kept.append(torch.split(output[:total], list(rows), dim=0))
    return [tuple(piece[i] for piece in kept) for i in range(len(rows))]


def _host(outputs: Any) -> tuple[torch.Tensor, ...]:
    """Outputs as torch tensors: an ONNX Runtime IO binding's (a GPU session's runner) are
    copied to the host, as its ``__call__`` does."""
    copy = getattr(outputs, "copy_outputs_to_cpu", None)
    if copy is not None:
        return tuple(torch.from_numpy(np.asarray(a)) for a in copy())
    return tuple(outputs)


def _tail(request: Request) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(t.shape[1:]) for t in request)


def _chunks(requests: Sequence[Request], batch_size: int, limit: int | None) -> list[list[int]]:
    """Indices of consecutive requests served by one call: at most ``batch_size`` of them,
    of one shape beyond the batch axis, and no more than ``limit`` rows (fixed shapes)."""
    chunks: list[list[int]] = []
    rows = 0
    for index, request in enumerate(requests):
        size = int(request[0].shape[0])
        if limit is not None and size > limit:
            raise ShapeError(
                f"request {index} has {size} rows; this learner's model takes calls of "
                f"{limit} rows (it was built for that batch)"
            )
        current = chunks[-1] if chunks else None
        fits = (
            current is not None
            and len(current) < batch_size
            and _tail(requests[current[0]]) == _tail(request)
            and (limit is None or rows + size <= limit)
        )
        if fits and current is not None:
            current.append(index)
            rows += size
        else:
            chunks.append([index])
            rows = size
    return chunks


class _Results:
    """Outputs by request index, filled from the runner's threads."""

    def __init__(self, count: int, concurrency: int) -> None:
        self.outputs: list[Request | None] = [None] * count
        self.errors: list[BaseException] = []
        self.slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()

    def done_for(self, indices: list[int], rows: list[int]) -> Any:
        def done(outputs: Any, error: BaseException | None) -> None:
            try:
                if error is not None:
                    raise error
                for index, piece in zip(indices, split_rows(_host(outputs), rows), strict=True):
                    self.outputs[index] = piece
            except BaseException as exc:  # a runner's `done` must not raise
                with self._lock:
                    self.errors.append(exc)
            finally:
                self.slots.release()

        return done


def serve_requests(
    compiled: Any, requests: Sequence[Request], batch_size: int, concurrency: int
) -> list[Request]:
    """Each request's outputs, in order, served ``batch_size`` requests per call with
    ``concurrency`` calls in flight. Raises the first call's error, or ShapeError when a
    request does not fit the model's fixed shapes or an output is not batched on axis 0."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not requests:
        return []
    limit = fixed_rows(compiled)
    results = _Results(len(requests), check_concurrency(concurrency))
    runner = runner_for(compiled, concurrency)
    # Every call's inputs outlive it: a runtime may read them in place while it runs
    # (OpenVINO's share_inputs), after this loop has moved on.
    submitted: list[Request] = []
    try:
        for chunk in _chunks(requests, batch_size, limit):
            members = [requests[i] for i in chunk]
            batch = tuple(torch.cat(parts, dim=0) for parts in zip(*members, strict=True))
            rows = [int(r[0].shape[0]) for r in members]
            results.slots.acquire()  # at most `concurrency` calls in flight
            if results.errors:
                results.slots.release()
                break
            call = pad_rows(batch, limit) if limit is not None else batch
            submitted.append(call)
            runner.submit(call, results.done_for(chunk, rows))
        runner.drain()
    finally:
        runner.close()
    if results.errors:
        raise results.errors[0]
    served = [out for out in results.outputs if out is not None]
    if len(served) != len(requests):
        raise RuntimeError(f"{len(requests) - len(served)} request(s) got no outputs")
    return served
