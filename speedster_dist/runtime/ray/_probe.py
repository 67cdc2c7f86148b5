"""Whether a Ray cluster can be joined, found out in bounded time without touching this process.

``ray.init(address=...)`` against a GCS that does not answer (or answers as someone else's
cluster, or refuses this client's token) retries for minutes and cannot be cancelled from a
thread. So the join is first tried in a short-lived child process that does exactly what the
driver will do (``ray.init`` with the same environment, then ``ray.shutdown``) and is killed,
with everything it started, when the time is up. Only a cluster that this child joined is
joined by the driver. The limit is ``SPEEDSTER_DIST_CONNECT_TIMEOUT`` seconds
(:data:`DEFAULT_CONNECT_TIMEOUT_S` when unset).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlparse

from speedster_dist.errors import ClusterConnectionError

__all__ = [
    "CONNECT_TIMEOUT_ENV",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "check_address",
    "connect_timeout",
    "join_problem",
    "unreachable",
]

CONNECT_TIMEOUT_ENV = "SPEEDSTER_DIST_CONNECT_TIMEOUT"
# Importing Ray and joining a live cluster takes 2-5 s on a busy 2-core machine.
DEFAULT_CONNECT_TIMEOUT_S = 30.0
_TCP_TIMEOUT_S = 5.0

# The child ends with its parent (a driver stopped while it waits must not leave it retrying).
_PROBE = (
    "import os, sys, threading, time\n"
    "parent = os.getppid()\n"
    "def orphaned():\n"
    "    while os.getppid() == parent:\n"
    "        time.sleep(0.5)\n"
    "    os._exit(3)\n"
    "threading.Thread(target=orphaned, daemon=True).start()\n"
    "import ray\n"
    "ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)\n"
    "ray.shutdown()\n"
)


def connect_timeout(timeout_s: float | None = None) -> float:
    """``timeout_s``, else ``SPEEDSTER_DIST_CONNECT_TIMEOUT``, else the default (seconds, > 0)."""
    if timeout_s is None:
        raw = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
        try:
            timeout_s = float(raw) if raw else DEFAULT_CONNECT_TIMEOUT_S
        except ValueError:
            raise ClusterConnectionError(
                f"{CONNECT_TIMEOUT_ENV}={raw!r} is not a number of seconds"
            ) from None
    if not timeout_s > 0 or timeout_s == float("inf"):
        raise ClusterConnectionError(
            f"the connect timeout must be > 0 s and finite, got {timeout_s}"
        )
    return float(timeout_s)


def check_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``ray://host:port`` split, or :class:`ClusterConnectionError`."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or not port:
        raise ClusterConnectionError(
            f"cluster address {address!r} is not host:port (or ray://host:port); "
            "use cluster='auto' to connect to a local cluster or start an embedded one"
        )
    return parsed.hostname, port


def unreachable(address: str, timeout_s: float) -> str | None:
    """Why nothing answers on ``address``'s port (fails in seconds), or None."""
    host, port = check_address(address)
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, _TCP_TIMEOUT_S)):
            return None
    except OSError as exc:
        return f"cannot reach it: {exc}"


# Ray retries a refused token for about 20 s before giving up: it never becomes valid.
_REFUSED = ("InvalidAuthToken", "AuthenticationError")
# "[2026-01-01 10:00:00,000 W 123 123] gcs_client.cc:210: " before each of Ray's own lines.
_LOG_PREFIX = re.compile(r"^\[[^]]*\] \S+:\d+: ")


def _reason(lines: list[str]) -> str:
    """The line of a failed ``ray.init`` that says why, shortened: a refused token first
    (Ray ends with a generic ConnectionError), else its last error."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in lines if line.strip()]
    refused = [line for line in lines if any(mark in line for mark in _REFUSED)]
    errors = [line for line in lines if "Error" in line or "error" in line]
    line = (refused or errors or lines or ["no output"])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def _watch(child: subprocess.Popen[str], timeout_s: float) -> tuple[list[str], str]:
    """Its stderr lines and how it ended: "exited", "refused" or "timeout"."""
    lines: list[str] = []
    refused = threading.Event()

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            if any(mark in line for mark in _REFUSED):
                refused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while child.poll() is None and not refused.is_set() and time.monotonic() < deadline:
        refused.wait(0.1)
    if child.poll() is not None:
        reader.join(timeout=5)
        return lines, "exited"
    with contextlib.suppress(ProcessLookupError):  # its own group: whatever it started too
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    reader.join(timeout=5)
    return lines, "refused" if refused.is_set() else "timeout"


def _try_join(address: str, timeout_s: float, env: Mapping[str, str]) -> str | None:
    """Join ``address`` in a child process within ``timeout_s``: None, or why not."""
    child = subprocess.Popen(
        [sys.executable, "-c", _PROBE, address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        start_new_session=True,
    )
    lines, end = _watch(child, timeout_s)
    if end == "timeout":
        return f"no answer as a Ray cluster within {timeout_s:g} s ({CONNECT_TIMEOUT_ENV})"
    if end == "refused" or child.returncode != 0:
        return f"joining failed: {_reason(lines)}"
    return None


def join_problem(address: str, timeout_s: float, env: Mapping[str, str]) -> str | None:
    """Why this process could not join the Ray cluster at ``address`` now, or None when a
    child process with the environment ``env`` joined it within ``timeout_s`` seconds.

    Called by :func:`~speedster_dist.runtime.ray.connect` before its own ``ray.init``, with
    the environment it will join with; a malformed address raises
    :class:`ClusterConnectionError`.
    """
    return unreachable(address, timeout_s) or _try_join(address, timeout_s, env)
