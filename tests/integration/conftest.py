import contextlib
import os
import secrets
from pathlib import Path

import pytest

from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV
from speedster_dist.runtime.ray._connect import LOOPBACK_ENV, _refresh_auth_config
from speedster_dist.testing.fakes import FAKE_BACKENDS


def loopback_only(patcher: pytest.MonkeyPatch) -> None:
    """Every Ray node these tests start binds 127.0.0.1 only. Ray reads its switch once, when
    imported (usually before a fixture runs), so the environment alone is not enough: the
    constant it was read into is set too, as speedster_dist's embedded Ray does."""
    from ray._private import ray_constants

    for name, value in LOOPBACK_ENV.items():
        patcher.setenv(name, value)
    patcher.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)


def node_environment(patcher: pytest.MonkeyPatch, backends: str) -> None:
    """What the nodes of a test cluster need, set before they start (their workers inherit
    it): the extra backends ``backends``, this checkout on PYTHONPATH, loopback only."""
    root = str(Path(__file__).resolve().parents[2])
    patcher.setenv(EXTRA_BACKENDS_ENV, backends)
    patcher.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    loopback_only(patcher)


@contextlib.contextmanager
def quiet_address_file(monkeypatch: pytest.MonkeyPatch):
    """cluster_utils writes (then deletes) /tmp/ray/ray_current_cluster, which every
    ``ray.init(address="auto")`` on this machine reads: leave other people's Ray alone."""
    import ray._common.utils
    import ray._private.utils

    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    monkeypatch.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
    yield


def assert_loopback(ray) -> None:
    """The nodes of the running cluster listen on loopback only (never a routable address)."""
    addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    assert addresses == {"127.0.0.1"}, addresses


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray whose workers also know the fake backends.

    Module-scoped, and the environment is restored afterwards: the fake backends (one of them
    kills its process on purpose) must never leak into tests that run trials in-process.
    """
    import ray

    patcher = pytest.MonkeyPatch()
    # Set before ray.init: worker processes inherit the raylet's environment.
    patcher.setenv(EXTRA_BACKENDS_ENV, FAKE_BACKENDS)
    loopback_only(patcher)
    # Token authentication with an ephemeral token, as speedster_dist's embedded Ray: also
    # whatever auth mode an earlier module's cluster left in Ray's cached config.
    patcher.setenv("RAY_AUTH_MODE", "token")
    patcher.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    _refresh_auth_config()
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new Ray even if a stale cluster address is recorded in /tmp/ray.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        assert_loopback(ray)
        yield ray
    finally:
        ray.shutdown()
        patcher.undo()
        _refresh_auth_config()  # Ray cached this fixture's token: read the restored one
