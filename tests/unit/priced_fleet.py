"""A throughput search on two simulated, priced hardware types (arithmetic, no clock): shared
by the summary's, the report's and the rebench's fleet-view tests.

Both types run the same candidates on :class:`~speedster_dist.testing.curves.LoadCurve`: a
call of b requests takes (2 + 2b) ms, halved on backend "fast", two calls overlap fully.
"cpu-sim-big" is 4x faster than "cpu-sim-small" and costs 6x as much an hour. With a p99
budget of 40 ms:

- small: fast @ 8x2, a 9 ms call, 16 / 0.009 = 1778 requests/s (32x2 is over the budget);
- big: fast @ 32x2, a 33 / 4 = 8.25 ms call, 64 / 0.00825 = 7758 requests/s;

at 0.10 and 0.60 an hour, 1M requests cost 0.0156 (small) and 0.0215 (big): the small
type is the cheapest at the SLO though the big one serves 4.4x as much.
"""

from __future__ import annotations

import math
from dataclasses import replace

from speedster_dist.cost import parse_prices
from speedster_dist.measure import MeasureSettings
from speedster_dist.records import (
    BackendInfo,
    Capability,
    DeviceKind,
    HardwareType,
    Knob,
    Precision,
    SearchOutcome,
)
from speedster_dist.runtime import NodeProbe, SearchRequest, run_search
from speedster_dist.search import Budget, SpaceSettings
from speedster_dist.serving import Objective
from speedster_dist.testing.backend_contract import contract_payload
from speedster_dist.testing.curves import CurveExecutor, LoadCurve

SMALL = HardwareType("cpu-sim-small", DeviceKind.CPU, "simulated small CPU", frozenset(), 2)
BIG = HardwareType("cpu-sim-big", DeviceKind.CPU, "simulated big CPU", frozenset(), 8)
_CPU = frozenset({DeviceKind.CPU})
CATALOG = tuple(
    BackendInfo(
        name, (Capability(DeviceKind.CPU, Precision.FP32),), (Knob("slowdown", (1, 2), _CPU),)
    )
    for name in ("slow", "fast")
)
PROBE = NodeProbe("node-1", (SMALL, BIG), ((SMALL.key, CATALOG), (BIG.key, CATALOG)))
CURVE = LoadCurve(0.002, 0.002, 2, speed={"fast": 2.0}, hardware_speed={BIG.key: 4.0})
OBJECTIVE = Objective("throughput", (1, 8, 32), (1, 2), latency_budget_ms=40.0)
PRICES = parse_prices({"prices": {SMALL.key: 0.10, BIG.key: 0.60}, "source": "test list"})
SMALL_RATE, BIG_RATE = 16 / 0.009, 64 / 0.00825  # requests a second at each winner
SMALL_COST = 0.10 / 3600 * 1e6 / SMALL_RATE
BIG_COST = 0.60 / 3600 * 1e6 / BIG_RATE
FAST = MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.02)


def priced_search(objective: Objective = OBJECTIVE, curve: LoadCurve = CURVE) -> SearchOutcome:
    """The search of both types, every point measured once (exhaustive)."""
    payload = replace(contract_payload("mlp", 0.01, FAST), objective=objective)
    settings = SpaceSettings(tune_knobs=True, baseline_backend="slow", objective=objective)
    budget = Budget(math.inf, tune_knobs=True, label="test")
    request = SearchRequest(payload=payload, settings=settings, budget=budget)
    return run_search(CurveExecutor(curve, PROBE), request)


def write_history(
    root, outcome: SearchOutcome, run_id: str = "search", model_name: str = "bert-base"
) -> None:
    """Every trial of ``outcome`` in the history under ``root``, as ``optimize_model`` writes
    them (the run's settings carry the objective)."""
    from speedster_dist.results import HistoryWriter, RunInfo

    settings = {"metric_drop_ths": 0.05, **outcome.objective.identity()}
    info = RunInfo(run_id, "optimize", model_name, "f1ngerprint", "bert", 1, settings)
    writer = HistoryWriter(root, info)
    for result in outcome.results:
        writer.append(result)
