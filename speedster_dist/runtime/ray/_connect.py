"""Connecting to Ray: an existing cluster when there is one, else an embedded local Ray."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speedster_dist.errors import ClusterConnectionError
from speedster_dist.runtime.ray import _reaper
from speedster_dist.runtime.ray._environment import (
    LOOPBACK_ENV,
    PRIVATE_ENV,
    apply_before_ray,
    client_settings,
    private_settings,
    worker_pool_config,
)
from speedster_dist.runtime.ray._probe import (
    check_address,
    connect_timeout,
    join_problem,
    unreachable,
)

__all__ = [
    "LOOPBACK_ENV",
    "PRIVATE_ENV",
    "ClusterConnectionError",
    "connect",
    "package_runtime_env",
]

logger = logging.getLogger(__name__)


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


def connect(
    cluster: str | None = "auto",
    runtime_env: Mapping[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
) -> str:
    """Make sure this process is connected to Ray; return how ("existing", "address", "embedded").

    ``"auto"`` (or None): an already initialised Ray is reused; else the cluster named by
    ``RAY_ADDRESS``, else the one ``ray start --head`` recorded on this machine (Ray's
    ``ray_current_cluster`` file), if it can be joined within ``timeout_s``; else a private
    embedded Ray is started with every core of this machine, and one log line says why. A
    Ray process that was not started as a cluster (another program's ``ray.init``) is never
    joined. ``"local"``: always a private embedded Ray (unless this process is connected
    already). Any other value is a cluster address (``host:port`` or ``ray://host:port``):
    one that cannot be joined within ``timeout_s`` raises :class:`ClusterConnectionError`.

    ``timeout_s`` (seconds) defaults to ``SPEEDSTER_DIST_CONNECT_TIMEOUT``, else 30: the join
    is tried first in a child process that is killed when the time is up, since Ray's own
    ``ray.init`` retries for minutes and cannot be interrupted.

    An embedded Ray is private: every address on loopback, token authentication on, usage
    statistics off (decided before ``ray`` is imported, which reads the loopback switch).

    ``runtime_env`` becomes the job's Ray runtime environment (e.g.
    :func:`package_runtime_env`): Ray uploads local folders only at this level. It cannot be
    applied to a Ray this process initialised before (ValueError: pass it to that
    ``ray.init`` instead).
    """
    cluster = cluster or "auto"
    explicit = cluster not in ("auto", "local")
    if explicit:
        check_address(cluster)  # even when connected: a wrong address is the user's mistake
    limit = connect_timeout(timeout_s)
    if _connected():
        problem = unreachable(cluster, limit) if explicit else None
        if problem:
            raise ClusterConnectionError(_cannot_join(cluster, problem))
        if runtime_env:
            raise ValueError(
                "Ray is already initialised in this process, so runtime_env cannot be applied; "
                "pass it to that ray.init(runtime_env=...) instead"
            )
        return "existing"
    kwargs = _init_kwargs(runtime_env)
    if cluster == "local":
        return _start_embedded(kwargs)
    if explicit:
        return _join_or_raise(cluster, kwargs, limit)
    return _auto(kwargs, limit)


def _cannot_join(address: str, problem: str) -> str:
    return (
        f"cannot join the Ray cluster at {address}: {problem}. Is `ray start --head` running "
        "there, is the port open and is its token (RAY_AUTH_TOKEN, ~/.ray/auth_token) here? "
        "Use cluster='auto' for an embedded local Ray."
    )


def _join_or_raise(address: str, kwargs: Mapping[str, Any], limit: float) -> str:
    problem = _join_problem(address, limit)
    if problem:
        raise ClusterConnectionError(_cannot_join(address, problem))
    try:
        return _join(address, kwargs, "address")
    except ConnectionError as exc:  # it went away since the child process joined it
        raise ClusterConnectionError(_cannot_join(address, str(exc))) from exc


def _join_problem(address: str, limit: float) -> str | None:
    """Why ``address`` cannot be joined now (tried in a child process with the settings
    this process will join with), or None; then those settings are this process's."""
    settings = client_settings(address)
    problem = join_problem(address, limit, {**os.environ, **settings})
    if problem is None:
        apply_before_ray(settings, f"to join the Ray cluster at {address}")
    return problem


def _auto_address() -> tuple[str, str]:
    """The address ``auto`` may join and where it was found, or ("", "")."""
    from_env = os.environ.get("RAY_ADDRESS", "").strip()
    if from_env and from_env != "auto":
        return from_env, "RAY_ADDRESS"
    recorded = _recorded_address()
    return (recorded, "recorded by `ray start`") if recorded else ("", "")


def _auto(kwargs: Mapping[str, Any], limit: float) -> str:
    address, source = _auto_address()
    if not address:
        logger.info(
            "no Ray cluster recorded on this machine (`ray start`) and no RAY_ADDRESS: "
            "starting a private embedded Ray"
        )
        return _start_embedded(kwargs)
    problem = _join_problem(address, limit)
    if problem is None:
        try:
            return _join(address, kwargs, "address" if source == "RAY_ADDRESS" else "existing")
        except ConnectionError as exc:  # it went away since the child process joined it
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _shutdown()
    logger.warning(
        "not joining the Ray cluster at %s (%s): %s; starting a private embedded Ray instead",
        address,
        source,
        problem,
    )
    return _start_embedded(kwargs)


def _shutdown() -> None:
    ray = sys.modules.get("ray")
    if ray is not None:
        ray.shutdown()


def _join(address: str, kwargs: Mapping[str, Any], how: str) -> str:
    import ray

    ray.init(address=address, **kwargs)
    return how


def _start_embedded(kwargs: Mapping[str, Any]) -> str:
    """A new, private Ray on this machine, even when a (possibly stale) cluster address is
    recorded on disk."""
    apply_before_ray(private_settings(), "to keep an embedded Ray private")
    import ray

    cpus = os.cpu_count() or 1
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        _system_config=worker_pool_config(cpus),
        **kwargs,
    )
    _reaper.start(os.getpid())  # its helpers end with this process, even one killed -9
    return "embedded"


def _recorded_address() -> str:
    """The address ``ray start`` recorded on this machine (read as Ray does, without
    importing Ray: importing it fixes its network settings before ours are chosen)."""
    temp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        return (Path(temp) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        return ""


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
    # speedster_dist/ (this file is speedster_dist/runtime/ray/_connect.py): Ray uploads it.
    package_dir = str(Path(__file__).resolve().parents[2])
    env["py_modules"] = [*env.get("py_modules", []), package_dir]
    shipped = {name: os.environ[name] for name in _SHIPPED_ENV if os.environ.get(name)}
    env["env_vars"] = {**shipped, **env.get("env_vars", {})}
    return env
