"""What the connected Ray cluster says about itself: its alive nodes and its address.

For the entry points that show or split work by node (``speedster-dist cluster``, sweeps);
the executor keeps its own view of the nodes (:mod:`._membership`).
"""

from __future__ import annotations

import os

__all__ = ["alive_node_count", "connected_address", "node_addresses"]


def alive_node_count() -> int:
    """Alive nodes of the connected cluster (at least 1)."""
    import ray

    return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))


def node_addresses() -> dict[str, str]:
    """Node id -> the address of each alive node."""
    import ray

    return {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ray.nodes() if n.get("Alive")}


def connected_address() -> str:
    """The control-store address of the cluster this process is connected to, for other
    processes to join it; a Ray Client connection has none of its own, so its own address
    (``RAY_ADDRESS``, else "auto")."""
    import ray

    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # Ray Client: no control-store address in this process
        return os.environ.get("RAY_ADDRESS", "auto")
