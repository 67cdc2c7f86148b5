"""The environment Ray is given before it is imported: loopback, token authentication, privacy.

Ray reads its network switch and its authentication mode once, when ``ray`` is imported
(its own processes read them when they start, from the environment they inherit). So they
are set through Ray's public environment variables before this process imports ``ray``:
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps every address of a single-machine Ray on
loopback (Ray otherwise turns 127.0.0.1 into the machine's routable address),
``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` (or
``~/.ray/auth_token``) authenticates (Ray >= 2.52), ``RAY_USAGE_STATS_ENABLED=0`` reports
nothing. When ``ray`` was imported before with other values, they cannot be changed through a
public API any more: :func:`apply_before_ray` says so instead of starting a Ray that would
not be private, or a client that would not send its token.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from speedster_dist.errors import ClusterConnectionError
from speedster_dist.runtime.ray._probe import check_address

__all__ = [
    "KEEP_IDLE_WORKERS",
    "LOOPBACK_ENV",
    "PRIVATE_ENV",
    "apply_before_ray",
    "client_settings",
    "private_settings",
    "worker_pool_config",
]

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
# Ray binds to the machine's routable address even when told 127.0.0.1; with this switch off it
# uses loopback, which keeps an embedded (single-machine) Ray private to this machine.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# An embedded Ray reports nothing to Ray's usage statistics service.
PRIVATE_ENV = {**LOOPBACK_ENV, "RAY_USAGE_STATS_ENABLED": "0"}
# Ray ends idle workers beyond a soft limit, by default one per CPU, counted over every job
# (driver) of the cluster. A sweep's jobs each keep a zero-CPU probe worker and a trial worker
# idle between trials: on a 2-CPU machine the limit ended one job's trial worker whenever
# another job ran, and its next trial paid for a new worker (importing torch again, 4-5 s of
# CPU there; a 3-job sweep of tiny models spent 63 s of CPU in Ray workers, 23 s with this).
# Idle workers hold memory, not CPU; Ray's memory monitor still ends them under pressure.
KEEP_IDLE_WORKERS = 8
# What Ray reads once, at import, in the driver's process.
_READ_AT_IMPORT = (*LOOPBACK_ENV, AUTH_MODE_ENV)


def _token_available() -> bool:
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    return bool(os.environ.get(AUTH_TOKEN_ENV)) or token_file.is_file()


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_settings(address: str) -> dict[str, str]:
    """What a client of the cluster at ``address`` needs: token mode when a token is here
    (a ``ray start`` cluster with a token refuses clients without one, "InvalidAuthToken"),
    unless the mode was chosen already; loopback kept loopback for a loopback address."""
    settings: dict[str, str] = {}
    if AUTH_MODE_ENV not in os.environ and _token_available():
        settings[AUTH_MODE_ENV] = "token"
    host, _ = check_address(address)
    if _is_loopback(host):
        settings.update(LOOPBACK_ENV)
    return settings


def private_settings() -> dict[str, str]:
    """What an embedded Ray needs: loopback only, no usage statistics, token authentication
    always (with an ephemeral token, never written to disk, when none exists)."""
    settings = {**PRIVATE_ENV, AUTH_MODE_ENV: "token"}
    if not _token_available():
        settings[AUTH_TOKEN_ENV] = secrets.token_hex(32)
    return settings


def apply_before_ray(settings: Mapping[str, str], purpose: str) -> None:
    """Set ``settings`` in this process's environment (Ray's processes inherit it), or raise
    :class:`ClusterConnectionError` when ``ray`` was imported already with other values of
    what it reads at import (``purpose`` says what they were for)."""
    late = [
        name
        for name in _READ_AT_IMPORT
        if name in settings and os.environ.get(name) != settings[name]
    ]
    if late and "ray" in sys.modules:
        wanted = " ".join(f"{name}={settings[name]}" for name in late)
        raise ClusterConnectionError(
            f"ray was imported before speedster_dist could set {wanted} ({purpose}), and Ray "
            "reads these once, when it is imported. Set them in the environment before "
            "importing ray, or import ray after optimize_model/connect has connected, or "
            "call ray.init yourself first (that Ray is then used as it is)."
        )
    os.environ.update(settings)


def worker_pool_config(cpus: int) -> dict[str, int]:
    """Ray system settings for the worker pool of a Ray this package starts on ``cpus`` CPUs:
    at least :data:`KEEP_IDLE_WORKERS` idle workers are kept for their jobs' next tasks."""
    return {"num_workers_soft_limit": max(KEEP_IDLE_WORKERS, cpus)}
