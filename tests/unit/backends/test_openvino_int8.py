"""OpenVINO's accuracy-aware int8 (NNCF): int8 kernels, float layers, calibration only."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.backends import _openvino_int8 as int8
from speedster_dist.backends import openvino as ov_backend
from speedster_dist.measure import cosine_drop
from speedster_dist.records import BackendInfo, DeviceKind, HardwareType, Precision
from speedster_dist.search import SpaceSettings, derive_candidates
from speedster_dist.testing.backend_contract import contract_model

pytest.importorskip("nncf")

NO_BF16 = HardwareType("cpu-test-avx2", DeviceKind.CPU, features=frozenset({"avx2"}))


@pytest.fixture(scope="module")
def bert():
    return contract_model("bert")


def _build(model, tmp_path, hardware=None, **knobs):
    config = BuildConfig(Precision.INT8, DeviceKind.CPU, "nncf", knobs, hardware)
    return get_backend("openvino").build(model.source, model.calibration, config, tmp_path)


def _reference(model):
    with torch.inference_mode():
        return [tuple(t.float() for t in model.source.module(*s)) for s in model.validation]


def _ov_bf16() -> bool:
    return "BF16" in ov_backend._core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_nncf_is_declared_as_data():
    backend = get_backend("openvino")
    caps = {(c.precision, c.technique) for c in backend.capabilities}
    assert (Precision.INT8, "nncf") in caps
    knobs = {k.name: k for k in backend.knobs if "nncf" in k.techniques}
    assert set(knobs) == {"smooth_quant_alpha", "fp_layers"}
    assert (
        knobs["smooth_quant_alpha"].default == 0.75 and -1.0 in knobs["smooth_quant_alpha"].choices
    )
    assert knobs["fp_layers"].default == 1 and 0 in knobs["fp_layers"].choices
    # A rejected candidate is tried again with more float MatMuls (the search's back-off).
    ladder = knobs["fp_layers"].backoff
    assert ladder[:3] == (0, 1, 2) and list(ladder) == sorted(ladder) and ladder[-1] >= 16


def test_the_search_tries_nncf_once_int8_is_allowed():
    backend = get_backend("openvino")
    catalog = (BackendInfo("openvino", tuple(backend.capabilities), tuple(backend.knobs)),)
    hardware = HardwareType("cpu-test", DeviceKind.CPU, features=frozenset({"avx512_vnni"}))
    settings = SpaceSettings(metric_drop_ths=0.01, metric="cosine", baseline_backend="openvino")
    found = {c.label for c in derive_candidates(catalog, hardware, settings)}
    assert any(label.startswith("openvino int8/nncf fp_layers=1") for label in found)
    assert "smooth_quant_alpha=0.75" in next(x for x in found if "int8/nncf" in x)
    # Speedster's elementwise metric keeps int8 out at 0.01 (its bar is 0.02).
    plain = SpaceSettings(metric_drop_ths=0.01, baseline_backend="openvino")
    assert not any("int8" in c.label for c in derive_candidates(catalog, hardware, plain))


def test_full_int8_runs_int8_kernels_close_in_cosine(bert, tmp_path):
    compiled = _build(bert, tmp_path, fp_layers=0)
    precisions = compiled.runtime_precisions()
    assert precisions and set(precisions) == {"i8"}  # every FullyConnected runs int8
    assert compiled.float_layers == ()
    outputs = [compiled(*s) for s in bert.validation]
    drop = cosine_drop(_reference(bert), outputs)
    assert 0 < drop < 0.05


@pytest.mark.slow  # an NNCF build with its sensitivity runs
def test_fp_layers_keeps_that_many_matmuls_in_float(bert, tmp_path):
    compiled = _build(bert, tmp_path, hardware=NO_BF16, fp_layers=2, smooth_quant_alpha=-1.0)
    assert len(compiled.float_layers) == 2
    precisions = compiled.runtime_precisions()
    assert precisions.count("f32") == 2  # no bf16 on this hardware type: the rest is f32
    assert precisions.count("i8") == len(precisions) - 2 > 0
    assert compiled.inference_precision == "f32"


@pytest.fixture(scope="module")
def spied(bert, tmp_path_factory):
    """One default build (fp_layers=1) with spies on every sample that reaches NNCF or the
    sensitivity runs, and on the ranking."""
    nncf = pytest.importorskip("nncf")
    # Imported before the spy replaces nncf.Dataset: it reads ``Dataset | None`` at import,
    # which fails on a function (this fixture used to error when it built first).
    importlib.import_module("nncf.quantization.algorithms.post_training.algorithm")
    seen: list[dict[str, np.ndarray]] = []
    rankings: list[list[tuple[str, float]]] = []
    run, dataset, rank = ov_backend._run_f32, nncf.Dataset, int8.rank_sensitive_matmuls

    def spy_run(model, items):
        seen.extend(items)
        return run(model, items)

    def spy_dataset(items, *args):
        seen.extend(items)
        return dataset(items, *args)

    def spy_rank(*args):
        rankings.append(rank(*args))
        return rankings[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ov_backend, "_run_f32", spy_run)
        patch.setattr(nncf, "Dataset", spy_dataset)
        patch.setattr(int8, "rank_sensitive_matmuls", spy_rank)
        compiled = _build(bert, tmp_path_factory.mktemp("spied"))
    return compiled, seen, rankings


@pytest.mark.slow  # the spied NNCF build
def test_sensitivity_sees_only_calibration_samples(bert, spied):
    compiled, seen, _ = spied
    assert len(compiled.float_layers) == 1 and seen

    def ids(sample):
        return sample[bert.source.input_names.index("input_ids")].numpy()

    calibration = [ids(s) for s in bert.calibration]
    held_out = [ids(s) for s in bert.validation]
    for item in seen:
        assert any(np.array_equal(item["input_ids"], c) for c in calibration)
        assert not any(np.array_equal(item["input_ids"], h) for h in held_out)


@pytest.mark.slow  # the spied NNCF build
def test_the_most_sensitive_matmul_is_kept_in_float(spied):
    compiled, _, rankings = spied
    (ranking,) = rankings
    drops = [drop for _, drop in ranking]
    assert drops == sorted(drops) and len(ranking) >= 13  # 6 per layer, and the pooler
    assert list(compiled.float_layers) == [ranking[0][0]]
    # Putting that MatMul back in float brings the outputs closer than full int8 does.
    assert ranking[0][1] < ranking[-1][1]


@pytest.mark.slow  # the spied NNCF build
def test_float_part_is_bf16_where_the_cpu_has_it(spied):
    compiled, _, _ = spied
    expected = "bf16" if _ov_bf16() else "f32"
    assert compiled.inference_precision == expected
    assert compiled.runtime_precisions().count(expected) == 1


def test_sensitivity_score_is_the_cosine_drop():
    reference = [[np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([2.0, 0.0])]]
    outputs = [[np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([3.0, 0.0])]]
    assert int8._cosine_drop(reference, outputs) == pytest.approx(1 - (1 + 2**-0.5) / 2)
    outputs[0][1] = np.array([np.nan, 0.0])
    assert int8._cosine_drop(reference, outputs) == float("inf")


def test_int8_on_few_distinct_calibration_samples_carries_a_note(bert, spied, tmp_path):
    compiled, _, _ = spied
    assert compiled.notes == (
        "int8 was calibrated on 4 distinct sample(s) (of 4 held in): 16 or more distinct, "
        "representative samples make int8 more accurate",
    )
    # The guide's way: one sample repeated. Counted by content, not by object.
    same = [tuple(t.clone() for t in bert.calibration[0]) for _ in range(4)]
    config = BuildConfig(Precision.INT8, DeviceKind.CPU, "nncf", {"fp_layers": 0})
    repeated = get_backend("openvino").build(bert.source, same, config, tmp_path)
    assert isinstance(repeated, ov_backend.OpenVinoCompiled)
    assert repeated.notes[0].startswith("int8 was calibrated on 1 distinct sample(s) (of 4 ")


def test_fp32_carries_no_note(bert, tmp_path):
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    compiled = get_backend("openvino").build(bert.source, bert.calibration, config, tmp_path)
    assert isinstance(compiled, ov_backend.OpenVinoCompiled) and compiled.notes == ()
