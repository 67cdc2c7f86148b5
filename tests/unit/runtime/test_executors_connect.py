"""connect(): a stale cluster address recorded on this machine is skipped at once."""

import socket

import pytest

from speedster_dist.runtime import _ray


@pytest.fixture
def recorded(monkeypatch):
    import ray._private.utils

    def record(address):
        monkeypatch.setattr(ray._private.utils, "read_ray_address", lambda *a, **k: address)

    return record


def test_a_recorded_address_nothing_listens_on_is_skipped(recorded):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    recorded(f"127.0.0.1:{port}")
    assert not _ray._recorded_cluster_is_up()


def test_a_live_recorded_address_or_none_lets_ray_decide(recorded):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        recorded(f"127.0.0.1:{server.getsockname()[1]}")
        assert _ray._recorded_cluster_is_up()
    recorded(None)
    assert _ray._recorded_cluster_is_up()


def test_package_runtime_env_ships_the_package_folder_and_the_plugins(monkeypatch):
    monkeypatch.setenv("SPEEDSTER_DIST_BACKENDS", "x=y.z")
    env = _ray.package_runtime_env({"pip": ["onnxruntime"], "env_vars": {"A": "1"}})
    (folder,) = env["py_modules"]
    assert folder.endswith("speedster_dist") and env["pip"] == ["onnxruntime"]
    assert env["env_vars"] == {"SPEEDSTER_DIST_BACKENDS": "x=y.z", "A": "1"}
