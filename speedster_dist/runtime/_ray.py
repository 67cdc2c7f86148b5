"""Connecting to Ray: an existing cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from speedster_dist.errors import ClusterConnectionError

__all__ = [
    "LOOPBACK_ENV",
    "PRIVATE_ENV",
    "ClusterConnectionError",
    "connect",
    "package_runtime_env",
]

_CHECK_TIMEOUT_S = 5.0


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
_AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
# Ray binds to the machine's routable address even when told 127.0.0.1; with this switch off it
# uses loopback, which keeps an embedded (single-machine) Ray private to this machine. Ray
# reads it when ``ray`` is imported (and its processes when they start).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# An embedded Ray reports nothing to Ray's usage statistics service.
PRIVATE_ENV = {**LOOPBACK_ENV, "RAY_USAGE_STATS_ENABLED": "0"}


def _token_available() -> bool:
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return bool(os.environ.get(_AUTH_TOKEN_ENV)) or token_file.is_file()


def _refresh_auth_config() -> None:
    """Ray caches its config at import, and the token once read: refresh both the way Ray
    itself does, so a token set in the environment now is the one this process sends."""
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    except ImportError:  # older Ray without token authentication: the env vars are harmless
        return
    try:
        from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without the token cache reads it each time
        pass


def _use_token_if_available() -> None:
    """Clusters started by ``ray start`` use token authentication when a token exists; a
    client must then say so itself, or the head refuses it with "InvalidAuthToken"."""
    if _AUTH_MODE_ENV in os.environ or not _token_available():
        return
    os.environ[_AUTH_MODE_ENV] = "token"
    _refresh_auth_config()


def _private_environment() -> None:
    """Before an embedded Ray starts: loopback only, token authentication always (with an
    ephemeral token, never written to disk, when none exists), no usage statistics. Set in
    this process's environment, so that Ray's own processes inherit it."""
    os.environ.update(PRIVATE_ENV)
    os.environ[_AUTH_MODE_ENV] = "token"
    if not _token_available():
        os.environ[_AUTH_TOKEN_ENV] = secrets.token_hex(32)
    if "ray" in sys.modules:  # imported before: its module-level switches were read already
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        _refresh_auth_config()


def _init_kwargs(runtime_env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    # Trial workers print exporter warnings and progress bars of their own; the driver
    # reports every trial's outcome itself, so worker logs stay in Ray's log files.
    kwargs: dict[str, Any] = {
        "log_to_driver": False,
        "configure_logging": False,
        "ignore_reinit_error": True,
    }
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    return kwargs


def _connected() -> bool:
    """Whether this process is connected to Ray (never imports Ray to find out)."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def connect(cluster: str | None = "auto", runtime_env: Mapping[str, Any] | None = None) -> str:
    """Make sure this process is connected to Ray; return how ("existing", "address", "embedded").

    ``"auto"`` (or None): an already initialised Ray is reused; else ``RAY_ADDRESS``; else a
    cluster running on this machine (``ray start --head``); else an embedded local Ray is
    started with every core of this machine. ``"local"``: always a private embedded Ray
    (unless this process is connected already). Any other value is a cluster address
    (``host:port`` or ``ray://host:port``) that must be reachable.

    An embedded Ray is private: every address on loopback, token authentication on, usage
    statistics off (decided before ``ray`` is imported, which reads the loopback switch).

    ``runtime_env`` becomes the job's Ray runtime environment (e.g.
    :func:`package_runtime_env`): Ray uploads local folders only at this level. It cannot be
    applied to a Ray this process initialised before (ValueError: pass it to that
    ``ray.init`` instead).
    """
    cluster = cluster or "auto"
    if cluster not in ("auto", "local"):
        _check_reachable(cluster)  # even when connected: a wrong address is the user's mistake
    if _connected():
        if runtime_env:
            raise ValueError(
                "Ray is already initialised in this process, so runtime_env cannot be applied; "
                "pass it to that ray.init(runtime_env=...) instead"
            )
        return "existing"
    kwargs = _init_kwargs(runtime_env)
    if cluster == "local":
        return _start_embedded(kwargs)
    address = cluster if cluster != "auto" else os.environ.get("RAY_ADDRESS", "")
    if address and address != "auto":
        _check_reachable(address)
        return _join(address, kwargs, "address")
    if _recorded_cluster_is_up():
        try:
            return _join("auto", kwargs, "existing")
        except ConnectionError:
            pass
    return _start_embedded(kwargs)


def _join(address: str, kwargs: Mapping[str, Any], how: str) -> str:
    _use_token_if_available()
    import ray

    ray.init(address=address, **kwargs)
    return how


def _start_embedded(kwargs: Mapping[str, Any]) -> str:
    """A new, private Ray on this machine, even when a (possibly stale) cluster address is
    recorded on disk."""
    _private_environment()
    import ray

    ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
    return "embedded"


def _recorded_address() -> str:
    """The address ``ray start`` recorded on this machine (read as Ray does, without
    importing Ray: importing it fixes its network settings before ours are chosen)."""
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        return (Path(temp) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        return ""


def _recorded_cluster_is_up() -> bool:
    """Whether the cluster ``ray start`` recorded on this machine still answers.

    A cluster killed without ``ray stop`` leaves its address behind; Ray would then try it
    (through the machine's routable address) for many seconds before giving up. A recorded
    address that nothing listens on is skipped at once. With nothing recorded, Ray's own
    detection of a running cluster decides.
    """
    recorded = _recorded_address()
    if not recorded:
        return True
    try:
        _check_reachable(recorded)
    except ClusterConnectionError:
        return False
    return True


# Environment variables a worker needs to see the same backends as the driver.
_SHIPPED_ENV = ("SPEEDSTER_DIST_BACKENDS",)


def package_runtime_env(base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A Ray runtime environment that ships this ``speedster_dist`` to every worker.

    For clusters where the package is not installed on the nodes: given to :func:`connect`
    (``optimize_model(..., runtime_env="package")``), Ray uploads the package folder once
    (content-addressed, cached on each node) and puts it on the workers' ``sys.path``; the
    backend-plugin variable set here is passed on too. Its dependencies (torch,
    onnxruntime...) must be on the nodes already, or be added to ``base`` (e.g.
    ``{"pip": [...]}``, or an image with them). Anything in ``base`` is kept.
    """
    env: dict[str, Any] = dict(base or {})
    package_dir = str(Path(__file__).resolve().parents[1])  # speedster_dist/: Ray uploads it
    env["py_modules"] = [*env.get("py_modules", []), package_dir]
    shipped = {name: os.environ[name] for name in _SHIPPED_ENV if os.environ.get(name)}
    env["env_vars"] = {**shipped, **env.get("env_vars", {})}
    return env
