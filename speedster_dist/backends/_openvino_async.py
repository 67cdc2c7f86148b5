"""OpenVINO's own asynchronous API as a runner: ``AsyncInferQueue`` of ``concurrency`` infer
requests on one compiled model.

OpenVINO runs requests in flight in parallel when the model was compiled for several CPU
streams (``PERFORMANCE_HINT=THROUGHPUT`` or ``NUM_STREAMS`` > 1); with one stream (the
LATENCY hint) they queue inside OpenVINO, and the runner declares that it does not overlap.
Inference runs on OpenVINO's threads without the GIL; only the completion callback takes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from speedster_dist.serving import Done, Overlap

__all__ = ["AsyncQueueRunner", "streams_of"]


def streams_of(compiled_model: Any) -> int:
    """The CPU streams OpenVINO compiled ``compiled_model`` for."""
    return int(compiled_model.get_property("NUM_STREAMS"))


class AsyncQueueRunner:
    """``concurrency`` OpenVINO infer requests; ``feed(inputs)`` makes a request's inputs and
    ``outputs(request)`` reads its outputs (copied: a request reuses its buffers)."""

    def __init__(
        self,
        compiled_model: Any,
        concurrency: int,
        feed: Callable[[tuple[Any, ...]], dict[str, Any]],
        outputs: Callable[[Any], Any],
    ) -> None:
        import openvino as ov

        self._feed = feed
        self._outputs = outputs
        self._queue = ov.AsyncInferQueue(compiled_model, concurrency)
        self._queue.set_callback(self._finished)
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        streams = streams_of(compiled_model)
        self.overlap = Overlap(
            "openvino AsyncInferQueue",
            overlaps=streams > 1 and concurrency > 1,
            note=f"{concurrency} infer requests on {streams} CPU stream(s)"
            + ("" if streams > 1 else ": they queue; THROUGHPUT or num_streams > 1 overlaps them"),
        )

    def submit(self, inputs: tuple[Any, ...], done: Done) -> None:
        # share_inputs: OpenVINO reads the inputs without copying them (they are not written).
        self._queue.start_async(self._feed(inputs), done, share_inputs=True)

    def _finished(self, request: Any, done: Done) -> None:
        # An exception escaping an OpenVINO callback aborts the process: none may escape.
        try:
            outputs, error = self._outputs(request), None
        except BaseException as exc:
            outputs, error = None, exc
        try:
            done(outputs, error)
        except BaseException as exc:
            with self._lock:
                self._errors.append(exc)

    def drain(self) -> None:
        self._queue.wait_all()
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.drain()
