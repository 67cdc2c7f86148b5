"""The contract every backend passes: build, run, save, load, compare with eager.

``tests/unit/backends/test_contract.py`` runs it for every registered backend and every
capability it declares (:func:`contract_cases`), like Optuna's storage test case: a new
backend is covered by registering it. Its own test adds what is particular to it, calling
:func:`check_backend_contract` with knobs or tighter tolerances::

    check_backend_contract("onnxruntime", "int8", "static", tmp_path, tolerance=0.2,
                           knobs={"per_channel": True})
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist.backends import BuildConfig, SourceModel, UnsupportedCandidate, get_backend
from speedster_dist.inputs import normalize_inputs
from speedster_dist.measure import numeric_precision_drop
from speedster_dist.modelio import make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing import models

__all__ = [
    "ContractCase",
    "ContractModel",
    "check_backend_contract",
    "contract_cases",
    "contract_model",
    "contract_tolerance",
    "outputs_through_runner",
]

# Speedster's relative metric on the tiny random models. int8: the mlp's outputs sit near
# zero, so a correct build reads ~0.6 (bert ~0.1); the contract still catches wrong shapes,
# NaN, inf and reloads that differ from the build.
_TOLERANCES: dict[Precision, dict[str, float]] = {
    Precision.FP32: {"mlp": 1e-4, "bert": 1e-4},
    Precision.TF32: {"mlp": 1e-2, "bert": 1e-2},
    Precision.FP16: {"mlp": 5e-2, "bert": 5e-2},
    Precision.BF16: {"mlp": 1e-1, "bert": 1e-1},
    Precision.INT8: {"mlp": 1.0, "bert": 0.5},
}
# GPU fp32 (TensorRT's kernels, the CUDA EP) sums in other orders: a little more slack.
_GPU_FP32_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ContractCase:
    """One declared capability of one registered backend."""

    backend: str
    device: DeviceKind
    precision: Precision
    technique: str
    requires_any: frozenset[str]

    @property
    def id(self) -> str:
        tech = f"-{self.technique}" if self.technique else ""
        return f"{self.backend}-{self.device.value}-{self.precision.value}{tech}"


def contract_cases() -> list[ContractCase]:
    """Every (backend, capability) of the registry; a backend that cannot even be imported
    here is left out (the import test covers that it shows as unavailable)."""
    from speedster_dist.backends import backend_names

    cases = []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except Exception:  # its library is missing: nothing to build
            continue
        for cap in backend.capabilities:
            if not cap.sources & {"torch", "onnx"}:  # generation: tests/unit/generation/
                continue
            case = ContractCase(name, cap.device, cap.precision, cap.technique, cap.requires_any)
            cases.append(case)
    return cases


def contract_tolerance(
    precision: Precision | str, kind: str, device: DeviceKind = DeviceKind.CPU
) -> float:
    """The largest metric drop the contract accepts for ``precision`` on model ``kind``."""
    if device is DeviceKind.GPU and Precision(precision) is Precision.FP32:
        return _GPU_FP32_TOLERANCE
    return _TOLERANCES[Precision(precision)][kind]


def _skip_without_features(requires_any: frozenset[str], device: DeviceKind) -> None:
    from speedster_dist.hardware import local_hardware

    hardware = local_hardware(device)
    if requires_any and (hardware is None or not hardware.has_any(requires_any)):
        pytest.skip(f"this machine has none of {sorted(requires_any)}")


@dataclass
class ContractModel:
    source: SourceModel
    calibration: list[tuple[torch.Tensor, ...]]
    validation: list[tuple[torch.Tensor, ...]]


def contract_model(kind: str = "bert", dynamic: bool = True) -> ContractModel:
    """A tiny model in flat form: ``"mlp"`` (positional) or ``"bert"`` (keyword, HF output).

    With ``dynamic`` the samples differ in batch (mlp) or sequence length (bert), so the
    source model carries dynamic axes and validation uses a shape not seen at build time.
    """
    if kind == "mlp":
        model = models.tiny_mlp()
        gen = torch.Generator().manual_seed(1)
        sizes = [1, 3, 2, 4, 1, 2] if dynamic else [2] * 6
        data: list[Any] = [((torch.randn(n, 16, generator=gen),), 0) for n in sizes]
    elif kind == "bert":
        model = models.tiny_bert()
        lengths = [8, 12, 16, 10, 8, 14] if dynamic else [12] * 6
        data = [models.token_batch(seq_len=n, seed=i) for i, n in enumerate(lengths)]
    else:
        raise ValueError(f"unknown contract model {kind!r}")
    samples = normalize_inputs(data, model)
    source, _ = make_source_model(model, samples.input_names, samples.samples, samples.keyword)
    return ContractModel(source, samples.samples[:4], samples.samples[4:])


def _outputs(fn: Any, samples: list[tuple[torch.Tensor, ...]]) -> list[tuple[torch.Tensor, ...]]:
    with torch.inference_mode():
        return [tuple(t.detach().float().cpu() for t in fn(*s)) for s in samples]


def check_backend_contract(
    backend_name: str,
    precision: str,
    technique: str,
    tmp_path: Path,
    *,
    tolerance: float,
    device: DeviceKind = DeviceKind.CPU,
    kind: str = "bert",
    knobs: dict[str, Any] | None = None,
    skip_unsupported: bool = False,
) -> float:
    """Build -> run -> save -> load -> run; return the built candidate's metric drop.

    Skips (with the reason) when the backend is unavailable on ``device`` or the machine
    lacks the CPU features the capability needs; with ``skip_unsupported``, also when the
    build raises :class:`UnsupportedCandidate` (a GPU image without TensorRT's provider...).
    """
    backend = get_backend(backend_name)
    reason = backend.unavailable_reason(device)
    if reason is not None:
        pytest.skip(f"{backend_name} unavailable on {device.value}: {reason}")
    declared = [
        c
        for c in backend.capabilities
        if c.device is device and c.precision is Precision(precision) and c.technique == technique
    ]
    assert declared, f"{backend_name} does not declare {device.value}/{precision}/{technique}"
    _skip_without_features(declared[0].requires_any, device)

    model = contract_model(kind)
    config = BuildConfig(Precision(precision), device, technique, knobs or {})
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    try:
        compiled = backend.build(model.source, model.calibration, config, build_dir)
    except UnsupportedCandidate as exc:
        if not skip_unsupported:
            raise
        pytest.skip(f"{backend_name} cannot build {precision}/{technique} here: {exc}")

    assert model.source.module is not None
    reference = _outputs(model.source.module, model.validation)
    built = _outputs(compiled, model.validation)
    for ref, out in zip(reference, built, strict=True):
        assert [t.shape for t in ref] == [t.shape for t in out], "output shapes differ from eager"
    drop = numeric_precision_drop(reference, built)
    assert drop <= tolerance, (
        f"{backend_name} {precision}/{technique}: drop {drop:.4g} > {tolerance}"
    )
    concurrent = outputs_through_runner(compiled, model.validation, concurrency=2)
    assert numeric_precision_drop(built, concurrent) <= 1e-4, (
        "outputs of requests in flight (runner_for) differ from calls one at a time"
    )

    save_dir = tmp_path / "saved"
    save_dir.mkdir()
    options = json.loads(json.dumps(compiled.save(save_dir)))  # must be JSON-able
    assert any(save_dir.iterdir()), "save() wrote no model file"
    loaded = backend.load(save_dir, options, device)
    reloaded = _outputs(loaded, model.validation)
    assert numeric_precision_drop(built, reloaded) <= 1e-3, (
        "loaded model differs from the built one"
    )
    return drop


def outputs_through_runner(
    compiled: Any, samples: list[tuple[torch.Tensor, ...]], concurrency: int
) -> list[tuple[torch.Tensor, ...]]:
    """Each sample's outputs, run as requests in flight through ``runner_for(compiled)``,
    at most ``concurrency`` at a time, in the samples' order."""
    from speedster_dist.backends import runner_for

    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def done_for(index: int) -> Any:
        def done(outputs: Any, error: BaseException | None) -> None:
            results[index] = outputs
            if error is not None:
                errors.append(error)

        return done

    runner = runner_for(compiled, concurrency)
    try:
        for start in range(0, len(samples), concurrency):
            for index in range(start, min(start + concurrency, len(samples))):
                runner.submit(samples[index], done_for(index))
            runner.drain()
    finally:
        runner.close()
    assert not errors, f"a request in flight failed: {errors[0]!r}"
    with torch.inference_mode():
        return [tuple(t.detach().float().cpu() for t in results[i]) for i in range(len(samples))]


def contract_payload(
    kind: str = "mlp", metric_drop_ths: float | None = None, measure: Any = None
) -> Any:
    """A :class:`TrialPayload` for the tiny ``kind`` contract model, with eager reference outputs.

    Shared by the driver, executor and cluster tests and the orchestration benchmark.
    """
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.runtime import TrialPayload

    model = contract_model(kind)
    assert model.source.module is not None
    with torch.inference_mode():
        reference = [tuple(model.source.module(*s)) for s in model.validation]
    return TrialPayload(
        source=model.source,
        calibration=model.calibration,
        validation=model.validation,
        reference_outputs=reference,
        metric=numeric_precision_drop,
        metric_drop_ths=metric_drop_ths,
        measure=measure or MeasureSettings(),
    )
