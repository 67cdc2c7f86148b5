"""One learner for a fleet: the portable fallback, listing, fingerprints, the fleet summary."""

import json
from dataclasses import replace

import pytest
import torch

from speedster_dist.artifacts import (
    PORTABLE_KEY,
    ArtifactError,
    LearnerIO,
    LearnerMetadata,
    WinnerEntry,
)
from speedster_dist.artifacts import compatible as _compatible
from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.hardware import hardware_from_json, hardware_to_json, local_hardware
from speedster_dist.learner import HardwareKeyedLearner, load_model
from speedster_dist.modelio import OutputSpec
from speedster_dist.present import format_fleet, format_summary
from speedster_dist.records import (
    Candidate,
    DeviceKind,
    HardwareType,
    LatencyStats,
    Precision,
    SearchOutcome,
    TrialResult,
    TrialStatus,
)
from speedster_dist.runtime._trial import save_compiled as _save
from speedster_dist.testing.backend_contract import contract_model


def _local_cpu() -> HardwareType:
    hardware = local_hardware(DeviceKind.CPU)
    assert hardware is not None  # every machine has a CPU hardware type
    return hardware


LOCAL = _local_cpu()
# A CPU this machine is not: it has a feature nothing here has.
ELSEWHERE = replace(LOCAL, key="cpu-elsewhere", features=LOCAL.features | {"made_up_isa"})


@pytest.fixture(scope="module")
def mlp():
    return contract_model("mlp")


def _saved(mlp, tmp_path, name):
    compiled = get_backend("torch").build(
        mlp.source, [], BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    work = tmp_path / name
    work.mkdir(parents=True)
    return _save(compiled, "torch", DeviceKind.CPU, work)


def _learner(mlp, tmp_path, portable=True):
    entry = WinnerEntry(
        ELSEWHERE,
        "torch",
        "fp32",
        "",
        {},
        {"latency_p50_s": 0.001, "baseline_p50_s": 0.002},
        _saved(mlp, tmp_path, "winner"),
    )
    io = LearnerIO(mlp.source.input_names, False, OutputSpec("tensor", ("output_0",)))
    fallback = _saved(mlp, tmp_path, "portable") if portable else None
    return HardwareKeyedLearner(io, {ELSEWHERE.key: entry}, portable=fallback)


def test_no_compatible_winner_runs_the_portable_fallback_and_says_so(mlp, tmp_path):
    learner = _learner(mlp, tmp_path)
    x = mlp.validation[0][0]
    with pytest.warns(UserWarning, match="portable fallback"):
        out = learner(x)
    assert learner.selection.how == "portable" and learner.selection.key == PORTABLE_KEY
    torch.testing.assert_close(out, mlp.source.module(x)[0])
    assert learner.for_hardware().entry.hardware.key == PORTABLE_KEY  # decided once
    with pytest.raises(ArtifactError, match="no portable fallback"):
        _learner(mlp, tmp_path / "b", portable=False).for_hardware()


def test_saved_artifact_holds_the_fallback_verified_and_listed(mlp, tmp_path):
    path = _learner(mlp, tmp_path).save(tmp_path / "artifact")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["portable"]["folder"] == "_portable"
    assert manifest["portable"]["files"] and (path / "_portable").is_dir()
    entry = manifest["entries"][ELSEWHERE.key]
    assert entry["hardware"]["cpu_model"] == LOCAL.cpu_model
    assert entry["hardware"]["arch"] == LOCAL.arch and LOCAL.arch

    meta = LearnerMetadata.read(path)
    assert meta.hardware_types() == [ELSEWHERE.key] and meta.has_portable
    rows = {row["hardware_type"]: row for row in meta.describe()}
    assert rows[ELSEWHERE.key]["speedup"] == pytest.approx(2.0)
    assert rows[ELSEWHERE.key]["latency_p50_ms"] == pytest.approx(1.0)
    assert rows[PORTABLE_KEY]["backend"] == "torch"

    explicit = load_model(path, hardware_key=PORTABLE_KEY, trust_code=True)
    assert explicit.selection is not None
    assert explicit.selection.key == PORTABLE_KEY and explicit.selection.how == "explicit"
    x = mlp.validation[0][0]
    torch.testing.assert_close(explicit(x), mlp.source.module(x)[0])
    with pytest.warns(UserWarning, match="portable fallback"):
        selection = load_model(path, trust_code=True).selection
        assert selection is not None and selection.how == "portable"

    model_file = next((path / "_portable").rglob("*.pt"))
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    with pytest.raises(ArtifactError, match="checksum"):
        load_model(path, hardware_key=PORTABLE_KEY, trust_code=True)
    # Only the entry that runs is read: the other one still loads.
    assert load_model(path, hardware_key=ELSEWHERE.key, trust_code=True)(x) is not None


def test_a_portable_naming_an_unknown_backend_is_refused(mlp, tmp_path):
    path = _learner(mlp, tmp_path).save(tmp_path / "artifact")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["portable"]["backend"] = "os.system"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="portable fallback names unknown backend"):
        LearnerMetadata.read(path)


def test_gpu_engines_only_fit_the_compute_capability_they_were_built_for(mlp, tmp_path):
    saved = _saved(mlp, tmp_path, "gpu")
    h100 = HardwareType("gpu-h100", DeviceKind.GPU, compute_capability="9.0")
    l4 = HardwareType("gpu-l4", DeviceKind.GPU, compute_capability="8.9")
    engine = WinnerEntry(
        h100, "tensorrt", "fp16", "", {}, {}, replace(saved, options={"engine": "model.engine"})
    )
    assert _compatible(engine, h100) and not _compatible(engine, l4)
    cpu = WinnerEntry(LOCAL, "torch", "fp32", "", {}, {}, saved)
    assert _compatible(cpu, LOCAL) and not _compatible(cpu, l4)
    assert not _compatible(replace(cpu, hardware=ELSEWHERE), LOCAL)


def test_fingerprint_round_trips_through_json():
    gpu = HardwareType(
        "gpu-l4-22gb-sm89",
        DeviceKind.GPU,
        "NVIDIA L4",
        gpu_name="NVIDIA L4",
        gpu_memory_mb=22491,
        compute_capability="8.9",
        arch="x86_64",
        gpu_driver="550.54.15",
        cuda_version="12.4",
    )
    for hardware in (LOCAL, gpu):
        data = json.loads(json.dumps(hardware_to_json(hardware)))
        assert hardware_from_json(data) == hardware
    assert LOCAL.cpu_vendor and LOCAL.cpu_model and LOCAL.arch
    # Manifests written before the new fields load with defaults.
    old = {"key": "cpu-x", "device": "cpu", "features": ["avx2"], "cores": 4}
    assert hardware_from_json(old) == HardwareType(
        "cpu-x", DeviceKind.CPU, "", frozenset({"avx2"}), 4
    )


def _result(key, label_precision, p50, baseline=False, drop=0.0):
    candidate = Candidate.make("fake", label_precision, key, knobs={"slowdown": 1})
    latency = LatencyStats(10, p50, 0.0, p50, p50, p50, p50, 10 * p50)
    return TrialResult(
        candidate, TrialStatus.COMPLETE, latency=latency, metric_drop=drop, is_baseline=baseline
    )


def test_fleet_summary_has_one_row_per_type_and_the_fastest_type():
    a, b, c = "cpu-sim-a", "cpu-sim-b", "cpu-sim-c"
    results = [
        _result(a, "fp32", 0.004, baseline=True),
        _result(a, "fp16", 0.002, drop=0.004),
        _result(b, "fp32", 0.003, baseline=True),
        _result(b, "fp16", 0.006, drop=0.004),
    ]
    outcome = SearchOutcome(
        hardware={k: HardwareType(k, DeviceKind.CPU, f"{k} cpu") for k in (a, b, c)},
        results=results,
        winners={a: results[1], b: results[2]},
        no_winner={c: "every node of this hardware type left the cluster during the search"},
        lost={c: "every node of this hardware type left the cluster during the search"},
    )
    fleet = format_fleet(outcome)
    rows = {line.split("|")[1].strip(): line for line in fleet.splitlines() if "| cpu-" in line}
    assert set(rows) == {a, b, c}
    assert "fake fp16 slowdown=1" in rows[a] and "2.00 ms" in rows[a] and "2.00x" in rows[a]
    assert "fake fp32 slowdown=1" in rows[b] and "1.00x" in rows[b]  # its own baseline won
    assert "its nodes left mid-search" in rows[c] and "no winner" in rows[c]
    assert fleet.endswith(
        f"Fastest hardware type for this model: {a} (fake fp16 slowdown=1, 2.00 ms)"
    )
    summary = format_summary(outcome)
    assert "Fleet: 3 hardware types" in summary and f"Hardware type {c}" in summary
