"""Runners: several requests in flight through a compiled model (``serving.Runner``).

A compiled model may offer ``runner(concurrency)`` built on its library's own asynchronous
API (OpenVINO's ``AsyncInferQueue``, CUDA streams); :func:`runner_for` falls back to
:class:`ThreadRunner`, which declares that it does not overlap: requests then run on Python
threads and overlap only if the backend's call releases the GIL, which an undeclared backend
has not said. Runners never read a clock: ``measure.measure_load`` times them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from speedster_dist.backends._protocol import device_call
from speedster_dist.serving import Done, Overlap, Runner

__all__ = [
    "UNDECLARED_THREADS",
    "CudaStreamRunner",
    "ThreadRunner",
    "check_concurrency",
    "runner_for",
]

UNDECLARED_THREADS = Overlap(
    "threads",
    overlaps=False,
    note="the backend declares no asynchronous API: calls run on Python threads and overlap "
    "only where they release the GIL (measure.gil_release measures it)",
)


def check_concurrency(concurrency: object) -> int:
    """``concurrency`` as an integer >= 1, or a ValueError that says what was wrong."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    return concurrency


class ThreadRunner:
    """Each call on one of ``concurrency`` threads. They overlap only while ``call`` releases
    the GIL (ONNX Runtime's ``run``, torch's kernels); ``overlap`` says which applies."""

    def __init__(self, call: Callable[..., Any], concurrency: int, overlap: Overlap) -> None:
        self.overlap = overlap
        self._call = call
        self._pool = ThreadPoolExecutor(check_concurrency(concurrency), "speedster-request")
        self._idle = threading.Condition()
        self._active = 0  # submitted calls whose `done` has not returned yet

    def submit(self, inputs: tuple[Any, ...], done: Done) -> None:
        with self._idle:
            self._active += 1
        future = self._pool.submit(self._call, *inputs)
        future.add_done_callback(lambda f: self._finish(f, done))

    def _finish(self, future: Future[Any], done: Done) -> None:
        error = future.exception()
        try:
            done(None if error is not None else future.result(), error)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def drain(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0)

    def close(self) -> None:
        self.drain()
        self._pool.shutdown(wait=True)


class CudaStreamRunner:
    """One CUDA stream per request in flight: ``call`` is launched on a free stream from the
    submitting thread, and a waiter thread calls ``done`` once the stream's event completes.

    Kernels of different requests overlap on the GPU; their launches are serialized on the
    submitting Python thread (a CUDA graph or a compiled model makes launches cheap).
    """

    overlap = Overlap(
        "cuda streams",
        overlaps=True,
        note="one stream per request in flight; kernel launches share the submitting thread",
    )

    def __init__(self, call: Callable[..., Any], concurrency: int) -> None:
        import torch

        self._torch = torch
        self._call = call
        size = check_concurrency(concurrency)
        self._streams = [torch.cuda.Stream() for _ in range(size)]
        self._free: queue.Queue[int] = queue.Queue()
        for index in range(size):
            self._free.put(index)
        self._waiters = ThreadRunner(self._wait, size, UNDECLARED_THREADS)

    def submit(self, inputs: tuple[Any, ...], done: Done) -> None:
        torch = self._torch
        index = self._free.get()  # blocks only when every stream has a request in flight
        stream = self._streams[index]
        stream.wait_stream(torch.cuda.current_stream())  # inputs written on the default stream
        try:
            with torch.cuda.stream(stream):
                outputs = self._call(*inputs)
                event = torch.cuda.Event()
                event.record(stream)
        except BaseException as exc:
            self._free.put(index)
            done(None, exc)
            return
        self._waiters.submit((event, outputs, index), done)

    def _wait(self, event: Any, outputs: Any, index: int) -> Any:
        event.synchronize()  # releases the GIL while the GPU works
        self._free.put(index)
        return outputs

    def drain(self) -> None:
        self._waiters.drain()

    def close(self) -> None:
        self._waiters.close()


def runner_for(compiled: Any, concurrency: int) -> Runner:
    """The runner a compiled model offers (``compiled.runner(concurrency)``), else a
    :class:`ThreadRunner` over its call that declares no overlap (:data:`UNDECLARED_THREADS`).
    Outputs stay on the device where the model offers ``run_on_device``."""
    size = check_concurrency(concurrency)
    make = getattr(compiled, "runner", None)
    if make is not None:
        runner: Runner = make(size)
        return runner
    call = device_call(compiled)
    return ThreadRunner(call, size, UNDECLARED_THREADS)
