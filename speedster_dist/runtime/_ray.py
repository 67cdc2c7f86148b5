"""Connecting to Ray: an existing cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["LOOPBACK_ENV", "ClusterConnectionError", "connect"]

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


_AUTH_MODE_ENV = "RAY_AUTH_MODE"
# Ray binds to the machine's routable address even when told 127.0.0.1; with this switch off it
# uses loopback, which keeps an embedded (single-machine) Ray private to this machine.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _use_token_if_available() -> None:
    """Clusters started by ``ray start`` use token authentication when a token exists; a
    client must then say so itself, or the head refuses it with "InvalidAuthToken"."""
    if _AUTH_MODE_ENV in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if not (os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file()):
        return
    os.environ[_AUTH_MODE_ENV] = "token"
    try:  # Ray caches its config at import: refresh it the way Ray itself does
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except ImportError:  # older Ray without token authentication: the env var is harmless
        pass


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

    cluster = cluster or "auto"
    if cluster != "auto":
        _check_reachable(cluster)  # even when connected: a wrong address is the user's mistake
    if ray.is_initialized():
        return "existing"
    _use_token_if_available()
    if cluster != "auto":
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
    for name, value in LOOPBACK_ENV.items():
        os.environ.setdefault(name, value)
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **_init_kwargs())  # type: ignore[arg-type]
    return "embedded"
