"""Connecting to Ray: an existing cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

__all__ = ["ClusterConnectionError", "connect"]

_CHECK_TIMEOUT_S = 5.0


class ClusterConnectionError(ConnectionError):
    """The cluster address given (or found in RAY_ADDRESS) cannot be reached."""


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, on an address nothing listens on."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise ClusterConnectionError(
            f"cluster address {address!r} is not host:port (or ray://host:port); "
            "use cluster='auto' to connect to a local cluster or start an embedded one"
        )
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=_CHECK_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterConnectionError(
            f"cannot reach the Ray cluster at {address}: {exc}. Is `ray start --head` running "
            "there, and is the port open? Use cluster='auto' for an embedded local Ray."
        ) from exc


def _init_kwargs() -> dict[str, object]:
    # Trial workers print exporter warnings and progress bars of their own; the driver
    # reports every trial's outcome itself, so worker logs stay in Ray's log files.
    return {"log_to_driver": False, "configure_logging": False, "ignore_reinit_error": True}


def connect(cluster: str | None = "auto") -> str:
    """Make sure this process is connected to Ray; return how ("existing", "address", "embedded").

    ``"auto"`` (or None): an already initialised Ray is reused; else ``RAY_ADDRESS``; else a
    cluster running on this machine (``ray start --head``); else an embedded local Ray is
    started with every core of this machine. Any other value is a cluster address
    (``host:port`` or ``ray://host:port``) that must be reachable.
    """
    import ray

    if ray.is_initialized():
        return "existing"
    cluster = cluster or "auto"
    if cluster != "auto":
        _check_reachable(cluster)
        ray.init(address=cluster, **_init_kwargs())  # type: ignore[arg-type]
        return "address"
    env_address = os.environ.get("RAY_ADDRESS", "")
    if env_address and env_address != "auto":
        _check_reachable(env_address)
        ray.init(address=env_address, **_init_kwargs())  # type: ignore[arg-type]
        return "address"
    try:
        ray.init(address="auto", **_init_kwargs())  # type: ignore[arg-type]
        return "existing"
    except ConnectionError:
        pass
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **_init_kwargs())  # type: ignore[arg-type]
    return "embedded"
