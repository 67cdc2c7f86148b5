"""connect(): which addresses ``auto`` considers; bad addresses and limits refused at once."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import speedster_dist
from speedster_dist.errors import ClusterConnectionError
from speedster_dist.runtime.ray import _connect, _probe, connect


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


def _free_port() -> int:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_address_nothing_listens_on_is_a_problem_found_at_once():
    problem = _probe.join_problem(f"127.0.0.1:{_free_port()}", 30, {})
    assert problem is not None and problem.startswith("cannot reach it")


def test_auto_considers_ray_address_then_the_recorded_address_and_nothing_else(
    recorded, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    recorded(None)
    assert _connect._auto_address() == ("", "")  # no process scan: nothing recorded is nothing
    recorded("127.0.0.1:6379")
    assert _connect._auto_address() == ("127.0.0.1:6379", "recorded by `ray start`")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert _connect._auto_address() == ("10.0.0.5:6379", "RAY_ADDRESS")
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # Ray's own word for "find one": the record
    assert _connect._auto_address()[0] == "127.0.0.1:6379"


def test_malformed_addresses_and_timeouts_are_refused_before_anything_starts(monkeypatch):
    with pytest.raises(ClusterConnectionError, match="not host:port"):
        connect("nonsense")
    with pytest.raises(ClusterConnectionError, match="not host:port"):
        connect("127.0.0.1:99999")
    with pytest.raises(ClusterConnectionError, match="must be > 0"):
        connect("127.0.0.1:1", timeout_s=0)
    monkeypatch.setenv(_probe.CONNECT_TIMEOUT_ENV, "soon")
    with pytest.raises(ClusterConnectionError, match="SPEEDSTER_DIST_CONNECT_TIMEOUT='soon'"):
        connect("127.0.0.1:1")
    monkeypatch.setenv(_probe.CONNECT_TIMEOUT_ENV, "7.5")
    assert _probe.connect_timeout() == 7.5 and _probe.connect_timeout(2) == 2
    monkeypatch.delenv(_probe.CONNECT_TIMEOUT_ENV)
    assert _probe.connect_timeout() == _probe.DEFAULT_CONNECT_TIMEOUT_S


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


def test_ray_imported_before_with_other_settings_is_an_error_not_a_public_ray(tmp_path):
    """Ray reads its loopback switch and auth mode at import: an embedded Ray started after
    an earlier ``import ray`` would listen on the machine's address, so connect refuses
    (before starting anything) and says what to set; set beforehand, it is fine."""
    script = (
        "import ray\n"
        "from speedster_dist.runtime.ray import connect\n"
        "from speedster_dist.runtime.ray._environment import apply_before_ray\n"
        "try:\n"
        "    connect('local')\n"
        "except ConnectionError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "print('initialized', ray.is_initialized())\n"
        "apply_before_ray({'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0'}, 'test')\n"
        "print('same values: fine')\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
        "HOME": str(tmp_path),
        "RAY_TMPDIR": str(tmp_path),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # set before the import: that one is fine
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ClusterConnectionError ray was imported before"), out.stderr
    assert "RAY_AUTH_MODE=token" in lines[0] and "RAY_ENABLE_WINDOWS" not in lines[0]
    assert lines[1:] == ["initialized False", "same values: fine"]


def test_a_driver_killed_while_it_waits_leaves_no_probe_behind(tmp_path):
    """The child that tries the join ends with its parent: a driver stopped (SIGKILL) while
    it waits on a cluster that never answers leaves nothing retrying."""
    script = (
        "import socket, sys\n"
        "from speedster_dist.runtime.ray import connect\n"
        "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(8)\n"
        "print(server.getsockname()[1], flush=True)\n"
        "connect(f'127.0.0.1:{server.getsockname()[1]}', timeout_s=300)\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
        "HOME": str(tmp_path),
        "RAY_TMPDIR": str(tmp_path),
    }
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    assert driver.stdout is not None
    port = driver.stdout.readline().decode().strip()
    probe = None
    for _ in range(200):  # until the probe (a child in its own session) is there
        probe = _probe_of(port)
        if probe:
            break
        time.sleep(0.1)
    assert probe, "no probe process started"
    driver.kill()
    driver.wait(timeout=30)
    for _ in range(100):
        if not _probe_of(port):
            break
        time.sleep(0.1)
    left = _probe_of(port)
    for pid in left:
        os.kill(pid, 9)
    assert left == []


def _probe_of(port: str) -> list[int]:
    """Processes whose command line ends with 127.0.0.1:``port`` (the probe's argument)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                b"ray.init(address=sys.argv[1]" in b" ".join(args)
                and f"127.0.0.1:{port}".encode() in args
            ):
                found.append(int(entry.name))
    return found
