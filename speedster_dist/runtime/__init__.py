"""Runtime: where trials run (Ray, hardware discovery) and the driver that runs the search."""

from speedster_dist.runtime._catalog import NodeProbe, backend_catalog, probe_node
from speedster_dist.runtime._driver import BUDGET_EXHAUSTED, SearchOutcome, run_search
from speedster_dist.runtime._executors import (
    Executor,
    HardwareGroup,
    InlineExecutor,
    RayExecutor,
    TrialOutcome,
)
from speedster_dist.runtime._ray import ClusterConnectionError, connect, package_runtime_env
from speedster_dist.runtime._trial import FP32_TOLERANCE, TrialPayload, run_trial

__all__ = [
    "BUDGET_EXHAUSTED",
    "FP32_TOLERANCE",
    "ClusterConnectionError",
    "Executor",
    "HardwareGroup",
    "InlineExecutor",
    "NodeProbe",
    "RayExecutor",
    "SearchOutcome",
    "TrialOutcome",
    "TrialPayload",
    "backend_catalog",
    "connect",
    "package_runtime_env",
    "probe_node",
    "run_search",
    "run_trial",
]
