"""Trials on Ray: the only part of speedster_dist that imports ``ray``.

Connecting (an existing cluster, or a private embedded one), the :class:`RayExecutor` (the
:class:`~speedster_dist.runtime.Executor` that places each trial on a free node of its
hardware type), the cluster's membership as nodes come and go, the autoscaler demand for node
groups, the run clock of trial tasks and the shared ONNX export as a task. ``ray`` itself is
imported only when a :class:`RayExecutor` is created or :func:`connect` is called, so
importing this package is cheap. Everything else of :mod:`speedster_dist.runtime` is
executor-agnostic and never imports this package (``tests/test_layers.py``).
"""

from speedster_dist.runtime.ray._cluster_info import (
    alive_node_count,
    connected_address,
    node_addresses,
)
from speedster_dist.runtime.ray._connect import (
    LOOPBACK_ENV,
    PRIVATE_ENV,
    ClusterConnectionError,
    connect,
    package_runtime_env,
)
from speedster_dist.runtime.ray._environment import KEEP_IDLE_WORKERS, worker_pool_config
from speedster_dist.runtime.ray._executor import RayExecutor
from speedster_dist.runtime.ray._group_demand import GroupDemand

__all__ = [
    "KEEP_IDLE_WORKERS",
    "LOOPBACK_ENV",
    "PRIVATE_ENV",
    "ClusterConnectionError",
    "GroupDemand",
    "RayExecutor",
    "alive_node_count",
    "connect",
    "connected_address",
    "node_addresses",
    "package_runtime_env",
    "worker_pool_config",
]
