"""What every command shares: exit codes, errors, the cluster connection, messages."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "QUICK_MEASURE",
    "CliError",
    "connect_cluster",
    "measure_settings",
    "say",
    "table",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed: no winner, a sweep job or a learner failed
EXIT_USAGE = 2  # wrong arguments, unreadable model or inputs, unreachable cluster
EXIT_REGRESSION = 3  # rebench found at least one regression
EXIT_INTERRUPTED = 130  # Ctrl-C

# --quick-measure: a few timed calls instead of the trustworthy default (tests, smoke runs).
QUICK_MEASURE: dict[str, float] = {
    "warmup_calls": 2,
    "warmup_s": 0.0,
    "min_calls": 10,
    "min_duration_s": 0.05,
    "max_duration_s": 2.0,
}


class CliError(Exception):
    """A failure the user can act on: its message is printed, its code is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """A progress or status line (stderr, so stdout stays the result)."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def measure_settings(quick: bool) -> Any:
    """The MeasureSettings of ``--quick-measure``, or None for the library's defaults."""
    if not quick:
        return None
    from speedster_dist.measure import MeasureSettings

    return MeasureSettings(
        warmup_calls=int(QUICK_MEASURE["warmup_calls"]),
        warmup_s=QUICK_MEASURE["warmup_s"],
        min_calls=int(QUICK_MEASURE["min_calls"]),
        min_duration_s=QUICK_MEASURE["min_duration_s"],
        max_duration_s=QUICK_MEASURE["max_duration_s"],
    )


def connect_cluster(address: str) -> str:
    """Connect this process to Ray. ``local`` always starts a private embedded Ray.

    ``auto`` (the default) reuses a connected Ray, then ``RAY_ADDRESS`` (set inside a Ray
    job), then a cluster started on this machine, else starts an embedded one; anything
    else is a cluster address (see :func:`speedster_dist.runtime.connect`).
    """
    import ray

    from speedster_dist.runtime import ClusterConnectionError, connect
    from speedster_dist.runtime._ray import LOOPBACK_ENV

    if address == "local":
        if not ray.is_initialized():
            os.environ.update(LOOPBACK_ENV)  # stays on loopback, private to this machine
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        return "embedded"
    try:
        return connect(address)
    except ClusterConnectionError as exc:
        raise CliError(str(exc)) from exc


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table (the CLI's result output)."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])
