"""One contender of a confirmation, built and timed in a fresh process of its own.

A contender timed in a process that also built and ran others is timed with their leftovers:
thread pools still spinning, allocator arenas, torch's thread count, caches. (An int8 learner
measured 13% slower in the Ray worker that had also run eager than in a fresh process.) So the
confirmation has one child per contender, never a fork of a worker that holds a built model:
:mod:`._fresh_server` forks it from a process that has imported torch and this package and
never ran a model. The caller drives it over a socket: the child builds its contender once,
then times one round each time it is asked, and reports the machine load that round saw
(:class:`~speedster_dist.measure.LoadWatch`, in the child, so that its own CPU time is not
counted as others' work). Only one child times at a time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import socket
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from speedster_dist.backends import BuildConfig, Compiled, device_call, get_backend
from speedster_dist.cache import scratch_dir
from speedster_dist.measure import LoadWatch, MeasureSettings, measure_latency
from speedster_dist.records import Candidate, HardwareType
from speedster_dist.runtime._fresh_server import ServerError, contender_server
from speedster_dist.runtime._payload import TrialPayload

__all__ = ["FreshWorker", "RoundTiming", "WorkerError", "build_contender", "serve"]

BUILD_TIMEOUT_S = 1800.0  # a build that takes longer is stuck (the trial timeout bounds it on Ray)
ROUND_TIMEOUT_S = 600.0


class WorkerError(RuntimeError):
    """The child failed: its build or timing raised, it died, or it did not answer in time."""


@dataclass(frozen=True)
class RoundTiming:
    """One round of one contender: its p50 (seconds) and the load the round saw."""

    p50: float
    load: dict[str, float]


def _send(conn: Connection, obj: Any) -> None:
    # Plain pickle: the connection's own pickler would hand torch tensors over as shared
    # memory, which needs a multiprocessing parent the child does not have.
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _recv(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


class FreshWorker:
    """A child process holding one built contender (see the module).

    ``start`` sends it the build; ``ready`` waits for it; ``time_round`` times one round;
    ``close`` ends it (always called, also after an error).
    """

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        self._conn = Connection(mine.detach())
        self._server = contender_server()
        try:
            self.pid = self._server.start(theirs)
        except ServerError as exc:
            self._conn.close()
            raise WorkerError(str(exc)) from exc

    def start(
        self, payload: Any, candidate: Candidate, hardware: HardwareType, cpus: float | None
    ) -> None:
        _send(self._conn, (payload, candidate, hardware, cpus))

    def _answer(self, timeout_s: float) -> Any:
        try:
            if not self._conn.poll(timeout_s):
                raise WorkerError(f"no answer within {timeout_s:g} s")
            kind, value = _recv(self._conn)
        except (EOFError, OSError) as exc:
            code = self._exit_code(5.0)
            raise WorkerError(f"the contender's process died (exit code {code})") from exc
        if kind == "error":
            raise WorkerError(value)
        return value

    def ready(self) -> None:
        """Wait until the contender is built (raises :class:`WorkerError` if it is not)."""
        self._answer(BUILD_TIMEOUT_S)

    def time_round(self, settings: MeasureSettings) -> RoundTiming:
        _send(self._conn, settings)
        p50, load = self._answer(ROUND_TIMEOUT_S + settings.max_duration_s)
        return RoundTiming(p50, load)

    def _exit_code(self, timeout_s: float) -> int | str:
        try:
            code = self._server.wait(self.pid, timeout_s)
        except ServerError:  # the server took it along when it died
            return "unknown"
        return "unknown" if code is None else code

    def close(self) -> None:
        with contextlib.suppress(OSError):
            _send(self._conn, None)
        self._conn.close()
        with contextlib.suppress(ServerError):
            if self._server.wait(self.pid, 10.0) is None:
                self._server.kill(self.pid)


def build_contender(
    payload: TrialPayload, candidate: Candidate, hardware: HardwareType
) -> Compiled:
    """``candidate`` built exactly as its trial built it (called in the contender's process)."""
    workdir = scratch_dir("confirm-")
    try:
        config = BuildConfig(
            candidate.precision,
            hardware.device,
            candidate.technique,
            candidate.knob_dict,
            hardware,
        )
        return get_backend(candidate.backend).build(
            payload.source, payload.calibration, config, workdir
        )
    finally:  # what a built model needs stays in memory (as in a trial, timed after its build)
        shutil.rmtree(workdir, ignore_errors=True)


def serve(conn: Connection) -> None:
    """The child's side: build, say ready, then time a round per request until told to stop."""
    from speedster_dist.runtime._task import size_torch_threads
    from speedster_dist.runtime._trial import synchronizer

    payload, candidate, hardware, cpus = _recv(conn)
    try:
        size_torch_threads(cpus)
        timed = device_call(build_contender(payload, candidate, hardware))
        sample, sync = payload.validation[0], synchronizer(hardware.device)
    except Exception as exc:
        _send(conn, ("error", "".join(traceback.format_exception_only(type(exc), exc)).strip()))
        return
    _send(conn, ("ready", os.getpid()))
    while (settings := _recv(conn)) is not None:
        try:
            watch = LoadWatch().start()
            p50 = measure_latency(lambda: timed(*sample), settings, sync).p50
            _send(conn, ("round", (p50, watch.stop())))
        except Exception as exc:
            _send(conn, ("error", "".join(traceback.format_exception_only(type(exc), exc)).strip()))
            return
