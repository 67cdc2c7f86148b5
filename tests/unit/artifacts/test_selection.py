"""Which entry runs where: a GPU node runs its (faster) GPU winner, the caller may choose."""

from __future__ import annotations

import pytest

from speedster_dist.artifacts import PORTABLE_KEY, ArtifactError, WinnerEntry, select_entry
from speedster_dist.records import DeviceKind, HardwareType, SavedCandidate

CPU = HardwareType("cpu-x-avx512-16c", DeviceKind.CPU, features=frozenset({"avx512f"}))
GPU = HardwareType("gpu-h200-141gb-sm90", DeviceKind.GPU, compute_capability="9.0")
FILES = {"model.onnx": b"\x00"}


def _entry(hardware: HardwareType, p50: float | None) -> WinnerEntry:
    saved = SavedCandidate("onnxruntime", hardware.device.value, {"file": "model.onnx"}, FILES)
    metrics = {"latency_p50_s": p50} if p50 is not None else {}
    return WinnerEntry(hardware, "onnxruntime", "fp32", "", {}, metrics, saved)


ENTRIES = {CPU.key: _entry(CPU, 0.012), GPU.key: _entry(GPU, 0.0015)}
PORTABLE = SavedCandidate("onnxruntime", "gpu", {"file": "model.onnx"}, FILES)


def test_a_gpu_node_runs_its_faster_gpu_winner_not_its_cpu_winner():
    # Local types list the CPU first: the old rule took the first match, the CPU winner.
    chosen = select_entry(ENTRIES, None, [CPU, GPU])
    assert (chosen.key, chosen.how) == (GPU.key, "own")


def test_the_faster_winner_runs_whichever_it_is():
    slow_gpu = {CPU.key: _entry(CPU, 0.001), GPU.key: _entry(GPU, 0.004)}
    assert select_entry(slow_gpu, None, [CPU, GPU]).key == CPU.key
    unmeasured = {CPU.key: _entry(CPU, None), GPU.key: _entry(GPU, 0.004)}
    assert select_entry(unmeasured, None, [CPU, GPU]).key == GPU.key


def test_the_caller_chooses_the_device():
    assert select_entry(ENTRIES, None, [CPU, GPU], device=DeviceKind.CPU).key == CPU.key
    assert select_entry(ENTRIES, None, [CPU, GPU], device=DeviceKind.GPU).key == GPU.key
    only_cpu = {CPU.key: ENTRIES[CPU.key]}
    with pytest.raises(ArtifactError, match=r"no gpu device|none can run"):
        select_entry(only_cpu, None, [CPU], device=DeviceKind.GPU)
    fallback = select_entry(only_cpu, PORTABLE, [CPU], device=DeviceKind.GPU)
    assert fallback.key == PORTABLE_KEY and fallback.how == "portable"


def test_the_portable_fallback_runs_on_the_cpu_even_when_its_trial_ran_on_a_gpu(monkeypatch):
    from speedster_dist.artifacts import LearnerIO
    from speedster_dist.learner import HardwareKeyedLearner
    from speedster_dist.modelio import OutputSpec

    learner = HardwareKeyedLearner(
        LearnerIO(("x",), False, OutputSpec("tensor", ("output_0",))),
        {"gpu-elsewhere": _entry(HardwareType("gpu-elsewhere", DeviceKind.GPU), 0.001)},
        portable=PORTABLE,
    )
    seen = {}

    def fake_load(key, entry, trust_code):
        seen["device"] = entry.saved.device
        return lambda *a: a

    import speedster_dist.learner as learner_module

    monkeypatch.setattr(learner_module, "load_compiled", fake_load)
    with pytest.warns(UserWarning, match="portable fallback"):
        learner.for_hardware()
    assert seen["device"] == "cpu"
