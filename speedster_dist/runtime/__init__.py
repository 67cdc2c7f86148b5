"""Runtime: where trials run and the driver that runs a search, executor-agnostic.

The executor protocol (with its optional capabilities), the search request and driver, the
trial and confirmation bodies, node probes, the in-process executor and fixed re-measurements.
Everything of Ray lives in :mod:`speedster_dist.runtime.ray`; its public names are also
re-exported here, where callers found them before (Ray itself is imported only when a
:class:`RayExecutor` is created or :func:`connect` is called).
"""

from speedster_dist.runtime._catalog import NodeProbe, backend_catalog, probe_node
from speedster_dist.runtime._confirm import (
    DEFAULT_CONFIRM_ROUNDS,
    DEFAULT_CONFIRM_TOP,
    confirm_task,
)
from speedster_dist.runtime._driver import BUDGET_EXHAUSTED, SearchOutcome, run_search
from speedster_dist.runtime._frontier import LOAD_NOT_CONFIRMED, frontier_point, frontiers
from speedster_dist.runtime._inline import InlineExecutor
from speedster_dist.runtime._node_groups import GROUP_LABEL, NodeGroup
from speedster_dist.runtime._portable import onnx_portable
from speedster_dist.runtime._protocol import (
    CANNOT_CONFIRM,
    NO_DEMAND,
    Cluster,
    Demand,
    Executor,
    HardwareGroup,
    TrialOutcome,
    TrialRunner,
    failed_result,
)
from speedster_dist.runtime._rebench import (
    FixedTrial,
    OnlyTypes,
    baseline_candidate,
    operating_load,
    run_fixed_trials,
    winner_candidate,
)
from speedster_dist.runtime._request import SearchHooks, SearchRequest
from speedster_dist.runtime._trial import (
    FP32_TOLERANCE,
    OVERLOADED_NOTE,
    PRUNE_MIN_CALLS,
    TrialPayload,
    run_trial,
    save_compiled,
)
from speedster_dist.runtime.ray import (
    ClusterConnectionError,
    GroupDemand,
    RayExecutor,
    connect,
    package_runtime_env,
)

__all__ = [
    "BUDGET_EXHAUSTED",
    "CANNOT_CONFIRM",
    "DEFAULT_CONFIRM_ROUNDS",
    "DEFAULT_CONFIRM_TOP",
    "FP32_TOLERANCE",
    "GROUP_LABEL",
    "LOAD_NOT_CONFIRMED",
    "NO_DEMAND",
    "OVERLOADED_NOTE",
    "PRUNE_MIN_CALLS",
    "Cluster",
    "ClusterConnectionError",
    "Demand",
    "Executor",
    "FixedTrial",
    "GroupDemand",
    "HardwareGroup",
    "InlineExecutor",
    "NodeGroup",
    "NodeProbe",
    "OnlyTypes",
    "RayExecutor",
    "SearchHooks",
    "SearchOutcome",
    "SearchRequest",
    "TrialOutcome",
    "TrialPayload",
    "TrialRunner",
    "backend_catalog",
    "baseline_candidate",
    "confirm_task",
    "connect",
    "failed_result",
    "frontier_point",
    "frontiers",
    "onnx_portable",
    "operating_load",
    "package_runtime_env",
    "probe_node",
    "run_fixed_trials",
    "run_search",
    "run_trial",
    "save_compiled",
    "winner_candidate",
]
