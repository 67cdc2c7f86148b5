"""The contract every backend passes: build, run, save, load, compare with eager.

A backend's test calls :func:`check_backend_contract` for each capability it wants covered::

    @pytest.mark.parametrize("precision,technique,tolerance", [("fp32", "", 1e-3), ...])
    def test_contract(tmp_path, precision, technique, tolerance):
        check_backend_contract("onnxruntime", precision, technique, tmp_path, tolerance=tolerance)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist.backends import BuildConfig, SourceModel, get_backend
from speedster_dist.inputs import normalize_inputs
from speedster_dist.measure import numeric_precision_drop
from speedster_dist.modelio import make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing import models

__all__ = ["ContractModel", "check_backend_contract", "contract_model"]


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
) -> float:
    """Build -> run -> save -> load -> run; return the built candidate's metric drop.

    Skips (with the backend's own reason) when the backend is unavailable on ``device``.
    """
    backend = get_backend(backend_name)
    reason = backend.unavailable_reason(device)
    if reason is not None:
        pytest.skip(f"{backend_name} unavailable on {device.value}: {reason}")
    assert any(
        c.device is device and c.precision is Precision(precision) and c.technique == technique
        for c in backend.capabilities
    ), f"{backend_name} does not declare {device.value}/{precision}/{technique}"

    model = contract_model(kind)
    config = BuildConfig(Precision(precision), device, technique, knobs or {})
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    compiled = backend.build(model.source, model.calibration, config, build_dir)

    assert model.source.module is not None
    reference = _outputs(model.source.module, model.validation)
    built = _outputs(compiled, model.validation)
    for ref, out in zip(reference, built, strict=True):
        assert [t.shape for t in ref] == [t.shape for t in out], "output shapes differ from eager"
    drop = numeric_precision_drop(reference, built)
    assert drop <= tolerance, (
        f"{backend_name} {precision}/{technique}: drop {drop:.4g} > {tolerance}"
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
        model.source,
        model.calibration,
        model.validation,
        reference,
        None,
        numeric_precision_drop,
        metric_drop_ths,
        measure or MeasureSettings(),
    )
