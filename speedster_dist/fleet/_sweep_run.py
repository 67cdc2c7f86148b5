"""Running a sweep: one driver process per job, a live table, every job's end reported."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, Any

from speedster_dist.fleet._jobs import JobSpec
from speedster_dist.fleet._sweep import SweepJobResult
from speedster_dist.fleet._sweep_child import EVENT_PREFIX, job_to_json
from speedster_dist.present import SweepBoard, is_terminal, ms, say, show

__all__ = ["CHILD_COMMAND", "run_sweep"]

CHILD_COMMAND = (sys.executable, "-m", "speedster_dist.fleet._sweep_child")


class JobCrashed(RuntimeError):
    """A job's driver process ended without reporting how its search ended."""


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Job:
    """One job's process: its events feed the board; its other output is kept."""

    def __init__(self, spec: JobSpec, board: SweepBoard, lock: threading.Lock, quiet: bool) -> None:
        self.spec, self.board, self.lock, self.quiet = spec, board, lock, quiet
        self.output: list[str] = []
        self.trials: list[dict[str, Any]] = []  # trial_json documents, as they came
        self.final: dict[str, Any] | None = None

    def run(self, command: Sequence[str], request: dict[str, Any]) -> SweepJobResult:
        started = time.monotonic()
        with self.lock:
            self.board.job(self.spec.name, "running")
        say(f"{self.spec.name}: started")
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(request))
        process.stdin.close()
        self._read(process.stdout)
        code = process.wait()
        took = f"{time.monotonic() - started:.0f} s"
        result = self._result(code)
        status = "done" if result.error is None else "failed"
        with self.lock:
            self.board.job(self.spec.name, status)
        if result.error is None:
            say(f"{self.spec.name}: finished in {took}")
        else:
            say(f"{self.spec.name}: FAILED after {took}: {result.error}")
        return result

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if not line.startswith(EVENT_PREFIX):
                self.output.append(line.rstrip("\n"))
                continue
            try:
                event = json.loads(line[len(EVENT_PREFIX) :])
            except ValueError:
                continue
            if event.get("event") in ("done", "failed"):
                self.final = event
            elif event.get("event") == "trial":
                self.trials.append({k: v for k, v in event.items() if k != "event"})
                if not self.quiet:
                    p50 = event.get("latency_p50_s")
                    detail = ms(p50) if p50 else str(event.get("reason", ""))[:60]
                    say(
                        f"{self.spec.name}: {event.get('hardware_type')} {event.get('label')}: "
                        f"{event.get('status')} {detail}"
                    )
            with self.lock:
                self.board.event(self.spec.name, event)

    def _result(self, code: int) -> SweepJobResult:
        final = self.final or {}
        if final.get("event") == "done" and code == 0:
            winners = list(final.get("winners") or [])
            return SweepJobResult(self.spec, winners=winners, trials=self.trials)
        if final.get("event") == "failed":
            error = RuntimeError(final.get("error", ""))
            return SweepJobResult(self.spec, error=error, trials=self.trials)
        crash = JobCrashed(
            f"its search process {_exit_description(code)} without reporting an outcome "
            "(the trials it finished are in the history; rerun with --resume)"
        )
        return SweepJobResult(self.spec, error=crash, trials=self.trials)


def run_sweep(
    specs: tuple[JobSpec, ...],
    history: Path,
    workers: int,
    quick: bool = False,
    quiet: bool = False,
    *,
    cluster: str | None = None,
    command: Sequence[str] = CHILD_COMMAND,
    table_every_s: float = 10.0,
    verbosity: int = 0,
    debug: bool = False,
) -> list[SweepJobResult]:
    """Run every job in its own driver process, ``workers`` at a time; one job's failure or
    crash never stops the others. The live table (model x hardware type) goes to stderr
    every ``table_every_s`` seconds when it changed (not when ``quiet``); each job's own
    output (its summary) to stdout when it ends. ``cluster``: the address the processes
    join (default: the cluster this process is connected to). ``command`` starts one job's
    process (tests wrap it); ``verbosity`` and ``debug``: the logging the processes set up
    (the CLI's ``-v`` and ``--debug``)."""
    say(f"sweep: {len(specs)} jobs, {workers} at a time, one process each, history {history}")
    board, lock = SweepBoard([s.name for s in specs]), threading.Lock()
    address = _address(cluster)
    jobs = {spec.name: _Job(spec, board, lock, quiet) for spec in specs}
    futures: dict[str, Future[SweepJobResult]] = {}
    printed = -1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        for spec in specs:
            request = {
                "spec": job_to_json(spec),
                "history": str(history),
                "quick": quick,
                "cluster": address,
                "verbosity": verbosity,
                "debug": debug,
            }
            futures[spec.name] = pool.submit(jobs[spec.name].run, command, request)
        pending = set(futures.values())
        while pending:
            done, pending = wait(pending, timeout=table_every_s)
            for future in done:
                _show_output(jobs, future, lock)
            with lock:
                if not quiet and pending and board.version != printed:
                    printed = board.version
                    show(board.render(is_terminal(sys.stderr)), err=True)
    with lock:
        show(board.render(is_terminal(sys.stdout)))
    return [futures[spec.name].result() for spec in specs]


def _show_output(
    jobs: dict[str, _Job], future: Future[SweepJobResult], lock: threading.Lock
) -> None:
    name = future.result().spec.name
    text = "\n".join(jobs[name].output).strip()
    if text:
        with lock:
            show(f"--- {name} ---\n{text}")


def _address(cluster: str | None) -> str:
    """Where the job processes connect: the given address, else this process's cluster."""
    if cluster and cluster not in ("auto", "local"):
        return cluster
    from speedster_dist.runtime.ray import connected_address

    return connected_address()
