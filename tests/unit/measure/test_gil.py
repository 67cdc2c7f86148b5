"""Whether a call releases the GIL, measured (ONNX Runtime and OpenVINO in tests/unit/backends)."""

from __future__ import annotations

import time

import pytest
import torch

from speedster_dist.measure import gil_release


def test_a_sleeping_call_leaves_the_gil_free():
    probe = gil_release(lambda: time.sleep(0.002))
    assert probe.released and probe.ticks > 0 and probe.calls >= 5


def test_a_builtin_loop_holds_it():
    probe = gil_release(lambda: sum(range(200_000)))
    assert not probe.released and probe.free_share < 0.1


def test_a_torch_kernel_releases_it():
    a = torch.randn(384, 384)
    assert gil_release(lambda: a @ a).released


def test_an_error_in_the_call_reaches_the_caller():
    calls: list[int] = []

    def boom() -> None:
        calls.append(1)
        if len(calls) > 2:  # after the two calls that size the probe: on its worker thread
            raise KeyError("inside the probe")

    with pytest.raises(KeyError, match="inside the probe"):
        gil_release(boom)
