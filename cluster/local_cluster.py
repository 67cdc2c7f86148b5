"""The supervisor behind ``cluster/local.sh up``: a multi-node Ray cluster on loopback.

One head (no CPUs: it only coordinates) and one node per simulated hardware type, each with
its own raylet, object store and workers, all bound to 127.0.0.1. They are started with
Ray's own one-machine multi-node launcher (``ray.cluster_utils``) because ``ray start
--address`` refuses to start a worker node with loopback-only networking on: with that
switch off it canonicalises 127.0.0.1 to the machine's routable address. Token
authentication is on (``RAY_AUTH_MODE=token``, ``~/.ray/auth_token``); no dashboard.

The cluster keeps its files in a Ray temp root of its own (``RAY_TMPDIR``, a fresh
``/tmp/sdr-*`` folder, short because Ray's Unix socket paths live under it and must stay
under ~107 bytes): ``ray.cluster_utils`` records the head's address as the machine's
default cluster (``ray_current_cluster`` under Ray's default temp root, where every
``ray.init(address="auto")`` looks), and with a private root that record stays private.
Worker nodes take the head's temp root. Clients use ``RAY_ADDRESS`` instead.

Runs until SIGTERM/SIGINT, then removes every node it started and its temp root. Usage
(local.sh does this): ``python cluster/local_cluster.py PORT CPUS STORE_MB TYPE [TYPE ...]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from types import FrameType

# Both before Ray is imported: its constants are read once, at import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_AUTH_MODE", "token")

LABEL = "speedster-dist/hardware-type"  # speedster_dist.runtime.HARDWARE_LABEL


def private_ray_tmpdir() -> str:
    """A fresh, short Ray temp root made this process's ``RAY_TMPDIR`` (whatever it was:
    a user's own root holds their default cluster's record). Ray reads it whenever it needs
    its default temp dir: the head's files and the address ``ray.cluster_utils`` records go
    under it, not under ``/tmp/ray``."""
    root = tempfile.mkdtemp(prefix="sdr-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = root
    return root


def main(argv: list[str]) -> int:
    port, cpus, store_mb, *types = argv
    # Do not become this machine's default cluster for ray.init(address="auto"): other
    # people's Ray on this machine stays theirs. Clients export RAY_ADDRESS instead.
    root = private_ray_tmpdir()
    print(f"ray temp dir: {root}", flush=True)  # local.sh down removes it if we cannot
    try:
        return _run(port, float(cpus), int(store_mb), types)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(port: str, cpus: float, store_mb: int, types: list[str]) -> int:
    from ray.cluster_utils import Cluster

    store = store_mb * 2**20
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "gcs_server_port": int(port),
            "node_ip_address": "127.0.0.1",
            "include_dashboard": False,
            "object_store_memory": store,
            # Keep idle workers for their jobs' next trials, as speedster_dist's embedded Ray
            # does (speedster_dist.runtime.ray.KEEP_IDLE_WORKERS says why).
            "_system_config": {"num_workers_soft_limit": 8},
        },
    )
    for hardware_type in types:
        cluster.add_node(
            num_cpus=cpus,
            labels={LABEL: hardware_type},
            node_ip_address="127.0.0.1",
            object_store_memory=store,
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        cluster.shutdown()
        sys.exit(0)  # main's finally removes the temp root

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"ready: head 127.0.0.1:{port}, nodes {' '.join(types)}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
