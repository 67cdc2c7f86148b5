"""``trial_timeout`` counts running time only: a trial queued on its node (behind another
driver's work) starts its clock when its task marks that it runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import TrialStatus
from speedster_dist.runtime.ray import RayExecutor

from .test_executors import A, FakeRay, _candidate, _fake_ray, _hw


@dataclass
class FakeMarks:
    """Start marks of FakeRay tasks: a task on a node in ``queued`` has not started."""

    queued: set[str] = field(default_factory=set)
    forgotten: list[str] = field(default_factory=list)
    tasks: dict[str, Any] = field(default_factory=dict)

    def key(self, ref) -> str:
        self.tasks[str(id(ref.task))] = ref.task
        return str(id(ref.task))

    def started(self) -> set[str]:
        return {k for k, task in self.tasks.items() if task.node_id not in self.queued}

    def forget(self, key: str) -> None:
        self.forgotten.append(key)


def _ray_with_marks() -> tuple[FakeRay, FakeMarks]:
    ray = _fake_ray(a1=A)
    marks = FakeMarks(queued={"a1"})
    ray.start_marks = marks  # type: ignore[attr-defined]
    return ray, marks


def _executor(ray: FakeRay, payload, timeout: float) -> RayExecutor:
    executor = RayExecutor(trial_timeout_s=timeout, refresh_s=0, ray_api=ray)
    executor.discover()
    executor.prepare(payload)
    ray.held = {"a1"}  # its trial does not finish (it waits, then runs past its limit)
    return executor


def _poll_for(executor, seconds: float) -> list:
    outcomes: list[Any] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and not outcomes:
        outcomes = executor.poll(0.01)
    return outcomes


def test_queue_time_does_not_count_running_time_does(fakes, payload):
    ray, marks = _ray_with_marks()
    executor = _executor(ray, payload, 0.2)
    executor.submit(_candidate(A), _hw(A), True)
    assert _poll_for(executor, 0.6) == []  # queued three timeouts long: not timed out
    marks.queued.clear()  # the node is free: the task runs now
    started = time.monotonic()
    (outcome,) = _poll_for(executor, 5)
    assert time.monotonic() - started >= 0.2  # its whole timeout, from its start
    assert outcome.result.status is TrialStatus.FAILED
    assert outcome.result.reason == "timed out after 0.2 s"
    assert len(marks.forgotten) == 1  # the mark is removed once seen
    assert executor.has_capacity(A)


def test_a_trial_that_never_starts_is_given_up_after_ten_timeouts(fakes, payload):
    ray, marks = _ray_with_marks()
    executor = _executor(ray, payload, 0.02)
    executor.submit(_candidate(A), _hw(A), True)
    (outcome,) = _poll_for(executor, 5)
    assert (
        outcome.result.reason == "did not start within 0.2 s (its node stayed busy with other work)"
    )
    assert marks.forgotten  # cleaned up on cancel too
