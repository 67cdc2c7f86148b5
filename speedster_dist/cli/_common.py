"""What every command shares: exit codes, errors, the cluster connection."""

from __future__ import annotations

import argparse

from speedster_dist.errors import ClusterConnectionError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "CliError",
    "add_shared_options",
    "connect_cluster",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed: no winner, a sweep job or a learner failed
EXIT_USAGE = 2  # wrong arguments, unreadable model or inputs, unreachable cluster
EXIT_REGRESSION = 3  # rebench found at least one regression
EXIT_INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure the user can act on: its message is printed, its code is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def add_shared_options(parser: argparse.ArgumentParser, *names: str) -> None:
    """``--quiet``, ``-v`` and ``--debug``, plus the shared options in ``names`` (``cluster``,
    ``quick_measure``) that this command uses."""
    if "cluster" in names:
        parser.add_argument(
            "--cluster",
            help="auto (default: RAY_ADDRESS, a cluster on this machine, else an embedded "
            "Ray), local (always a private embedded Ray), or host:port / ray://host:port",
        )
    if "quick_measure" in names:
        parser.add_argument(
            "--quick-measure",
            action="store_true",
            help="advanced: time each candidate briefly (smoke tests; latencies are noisy)",
        )
    parser.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the package's logs on stderr: -v INFO, -vv DEBUG (and others' INFO)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print tracebacks of errors, and DEBUG logs"
    )


def connect_cluster(address: str) -> str:
    """Connect this process to Ray (see :func:`speedster_dist.runtime.ray.connect`): ``local``
    always starts a private embedded Ray; an unreachable address is a usage error."""
    from speedster_dist.runtime.ray import connect

    try:
        return connect(address)
    except ClusterConnectionError as exc:
        raise CliError(str(exc)) from exc
