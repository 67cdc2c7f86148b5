"""connect(): a stale cluster address recorded on this machine is skipped at once."""

import socket
from pathlib import Path

import pytest

import speedster_dist
from speedster_dist.runtime.ray import _connect


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """Record an address where ``ray start`` does: RAY_TMPDIR/ray/ray_current_cluster."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    file = tmp_path / "ray" / "ray_current_cluster"
    file.parent.mkdir()

    def record(address):
        if address is None:
            file.unlink(missing_ok=True)
        else:
            file.write_text(address + "\n")

    return record


def test_a_recorded_address_nothing_listens_on_is_skipped(recorded):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    recorded(f"127.0.0.1:{port}")
    assert not _connect._recorded_cluster_is_up()


def test_a_live_recorded_address_or_none_lets_ray_decide(recorded):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        recorded(f"127.0.0.1:{server.getsockname()[1]}")
        assert _connect._recorded_cluster_is_up()
    recorded(None)
    assert _connect._recorded_cluster_is_up()


def test_package_runtime_env_ships_the_package_folder_and_the_plugins(monkeypatch):
    monkeypatch.setenv("SPEEDSTER_DIST_BACKENDS", "x=y.z")
    env = _connect.package_runtime_env({"pip": ["onnxruntime"], "env_vars": {"A": "1"}})
    (folder,) = env["py_modules"]
    assert Path(folder) == Path(speedster_dist.__file__).resolve().parent  # the package, whole
    assert env["pip"] == ["onnxruntime"]
    assert env["env_vars"] == {"SPEEDSTER_DIST_BACKENDS": "x=y.z", "A": "1"}


def test_the_recorded_address_is_read_like_ray_reads_it(recorded):
    import ray._private.utils

    recorded("10.1.2.3:6379")
    assert _connect._recorded_address() == ray._private.utils.read_ray_address() == "10.1.2.3:6379"
