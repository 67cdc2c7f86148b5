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
from speedster_dist.runtime._hardware import (
    GPU_HARDWARE_LABEL,
    HARDWARE_LABEL,
    SIMULATED_TYPE_ENV,
    hardware_from_json,
    hardware_to_json,
    local_hardware,
    local_hardware_types,
)
from speedster_dist.runtime._ray import ClusterConnectionError, connect, package_runtime_env
from speedster_dist.runtime._trial import FP32_TOLERANCE, SavedCandidate, TrialPayload, run_trial

__all__ = [
    "BUDGET_EXHAUSTED",
    "FP32_TOLERANCE",
    "GPU_HARDWARE_LABEL",
    "HARDWARE_LABEL",
    "SIMULATED_TYPE_ENV",
    "ClusterConnectionError",
    "Executor",
    "HardwareGroup",
    "InlineExecutor",
    "NodeProbe",
    "RayExecutor",
    "SavedCandidate",
    "SearchOutcome",
    "TrialOutcome",
    "TrialPayload",
    "backend_catalog",
    "connect",
    "hardware_from_json",
    "hardware_to_json",
    "local_hardware",
    "local_hardware_types",
    "package_runtime_env",
    "probe_node",
    "run_search",
    "run_trial",
]
