"""The per-node ONNX export cache trusts nothing it finds (issue 20, item 5): a planted or
damaged export is not reused, a fresh one is exported beside it, and nothing is deleted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from speedster_dist.backends import BuildConfig, _onnx, get_backend
from speedster_dist.cache import CACHE_ENV, entry_problem
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import ContractModel, contract_model

pytest.importorskip("onnxruntime")

OTHER_UID = 54321
ROOT_ONLY = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def mlp() -> ContractModel:
    return contract_model("mlp")


def _count_exports(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    real: Any = torch.onnx.export

    def counting(*args: Any, **kwargs: Any) -> object:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", counting)
    return calls


def _plant_other_graph(model: Path) -> None:
    # A valid ONNX graph that computes something else: what a planted export would be.
    import onnx

    proto = onnx.load(str(model))
    weights = proto.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weights) * 0 + 7
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    model.write_bytes(proto.SerializeToString())


def _chown_other(model: Path) -> None:
    os.chown(model, OTHER_UID, OTHER_UID)


PLANTS: list[object] = [
    pytest.param(_plant_other_graph, id="other-content"),
    pytest.param(lambda m: m.chmod(0o777), id="file-mode-0777"),
    pytest.param(lambda m: m.parent.parent.chmod(0o777), id="folder-mode-0777"),
    pytest.param(_chown_other, id="another-owner", marks=ROOT_ONLY),
]


@pytest.mark.parametrize("plant", PLANTS)
def test_a_planted_export_is_not_reused(
    plant: Callable[[Path], object],
    mlp: ContractModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = _onnx.export_onnx(mlp.source, tmp_path / "w1")
    plant(first)
    planted = first.read_bytes()
    exports = _count_exports(monkeypatch)

    second = _onnx.export_onnx(mlp.source, tmp_path / "w2")

    assert len(exports) == 1, "the planted export must not be reused"
    entry = second.parent.parent
    assert entry.name == first.parent.parent.name + "~1" and entry_problem(entry) is None
    assert first.read_bytes() == planted, "the planted folder is left as it is, not deleted"
    # A backend built from the fresh export computes the model, not the planted graph.
    compiled = get_backend("onnxruntime").build(
        mlp.source, mlp.calibration, BuildConfig(Precision.FP32, DeviceKind.CPU), tmp_path
    )
    sample = mlp.validation[0]
    with torch.no_grad():
        want = mlp.source.module(*sample)[0].numpy()  # type: ignore[misc]
    np.testing.assert_allclose(compiled(*sample)[0].numpy(), want, atol=1e-4)
    # And the next trial on the node reuses the fresh one.
    assert _onnx.export_onnx(mlp.source, tmp_path / "w3") == second and len(exports) == 1


def test_an_export_from_an_older_cache_layout_is_not_reused(
    mlp: ContractModel, tmp_path: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before checksums were recorded, <cache>/onnx/<key>/model.onnx was taken on sight.
    first = _onnx.export_onnx(mlp.source, tmp_path / "w1")
    key = first.parent.parent.name
    old = _private_cache / "onnx" / "old"
    old.mkdir(mode=0o700)
    (old / "model.onnx").write_bytes(first.read_bytes())
    first.parent.parent.rename(_private_cache / "onnx" / "kept")
    old.rename(_private_cache / "onnx" / key)
    exports = _count_exports(monkeypatch)
    second = _onnx.export_onnx(mlp.source, tmp_path / "w2")
    assert len(exports) == 1 and second.parent.parent.name == f"{key}~1"
    assert (_private_cache / "onnx" / key / "model.onnx").exists()
