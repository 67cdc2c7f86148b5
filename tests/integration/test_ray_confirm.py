"""Confirmations on a real (embedded, loopback) Ray: the coordinating task runs in a fresh
worker, and each contender is built and timed in a fresh process of its own, never in the
worker that ran the trials."""

import math
import os

import pytest

from speedster_dist.measure import MeasureSettings
from speedster_dist.runtime import SearchRequest, run_search
from speedster_dist.runtime.ray import RayExecutor
from speedster_dist.search import Budget, SpaceSettings
from speedster_dist.testing.backend_contract import contract_payload

pytestmark = pytest.mark.integration
# load_check off: this shared test machine is always busy (the check has its own unit tests).
FAST = MeasureSettings(
    warmup_calls=1, warmup_s=0, min_calls=5, min_duration_s=0.02, load_check=False
)
OTHERS = {"torch", "torchscript", "torch_compile", "onnxruntime", "openvino", "tensorrt"}


def test_each_contender_is_confirmed_in_a_process_of_its_own(local_ray):
    settings = SpaceSettings(
        metric_drop_ths=0.01,
        baseline_backend="fake",
        ignored_backends=frozenset({*OTHERS, "fake_faulty", "fake_deadly"}),
    )
    request = SearchRequest(
        payload=contract_payload("mlp", 0.01, FAST),
        settings=settings,
        budget=Budget(math.inf, False, "test"),
        confirm_rounds=2,
        confirm_top=2,
    )
    outcome = run_search(RayExecutor(trial_timeout_s=120), request)
    (confirmation,) = outcome.confirmed.values()
    assert confirmation.ok and len(confirmation.entries) >= 2
    pids = [e.pid for e in confirmation.entries]
    # One fresh process per contender: not this driver, not one another.
    assert len(set(pids)) == len(pids) and os.getpid() not in pids and all(p > 0 for p in pids)
