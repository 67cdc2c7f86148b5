import contextlib
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import pytest

from speedster_dist.runtime.ray import LOOPBACK_ENV, worker_pool_config
from speedster_dist.testing.registry import use_backends


def _refresh_auth_config() -> None:
    """Ray caches its auth mode at import and its token once read. The package sets both
    before Ray is imported; these tests start and stop many Rays in one process, each with
    its own token, so they refresh Ray's caches the way Ray itself does (private APIs, which
    only tests use)."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    _enable_token_auth()
    AuthenticationTokenLoader.instance().reset_cache()


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
    use_backends(patcher, backends)
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


def free_port() -> int:
    """A port free on 127.0.0.1 now (never Ray's default: other Rays on this machine stay
    untouched)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_token(patcher: pytest.MonkeyPatch) -> str:
    """Token authentication with an ephemeral token for what starts next (as speedster_dist's
    embedded Ray): never ~/.ray/auth_token, which another Ray on this machine may write or
    remove, and never the auth mode an earlier module's Ray left in Ray's cached config."""
    token = secrets.token_hex(32)
    patcher.setenv("RAY_AUTH_MODE", "token")
    patcher.setenv("RAY_AUTH_TOKEN", token)
    _refresh_auth_config()
    return token


@contextlib.contextmanager
def ray_cluster(backends: str, *, connect: bool = True, **head_args: Any):
    """A private multi-node Ray of one test module (``ray.cluster_utils.Cluster``): a head
    without CPUs (it only coordinates) on 127.0.0.1 with token authentication, whose nodes
    and workers know the extra ``backends``. The test adds its nodes (``add_node``), and this
    process is connected to it unless ``connect`` is False. Any Ray this process was connected
    to is shut down first; everything is stopped and the environment restored after."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # an earlier module's Ray: one cluster at a time
        ray.shutdown()
    patcher = pytest.MonkeyPatch()
    # Set before the nodes start: Ray's processes and workers inherit the environment.
    node_environment(patcher, backends)
    patcher.setenv("RAY_USAGE_STATS_ENABLED", "0")
    private_token(patcher)
    try:
        with quiet_address_file(patcher):
            cl = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 0,
                    "include_dashboard": False,
                    "_system_config": worker_pool_config(2),  # as speedster_dist's own Ray
                    **head_args,
                },
            )
            try:
                if connect:
                    ray.init(address=cl.address, log_to_driver=False, configure_logging=False)
                    assert_loopback(ray)
                yield cl
            finally:
                if connect:
                    ray.shutdown()
                cl.shutdown()
    finally:
        patcher.undo()
        _refresh_auth_config()  # Ray cached this cluster's token: read the restored one


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
    use_backends(patcher)  # the fakes
    loopback_only(patcher)
    private_token(patcher)
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new Ray even if a stale cluster address is recorded in /tmp/ray.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _system_config=worker_pool_config(2),  # as speedster_dist's embedded Ray
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


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (Linux /proc): what a test's Ray started."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in found]
        found.update(children)
        frontier.extend(children)
    return found
