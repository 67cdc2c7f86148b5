"""The backend contract, run for every registered backend x every capability it declares.

A backend added to the registry (or installed as a plugin) is covered here without a line
of its own; its own test file adds what is particular to it (knobs, formats, refusals).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist.cache import CACHE_ENV
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import (
    ContractCase,
    check_backend_contract,
    contract_cases,
    contract_tolerance,
)


def _params() -> list[object]:
    params: list[object] = []
    for case in contract_cases():
        marks = [pytest.mark.gpu] if case.device is DeviceKind.GPU else []
        if case.backend == "torch_compile" or case.technique == "nncf":  # compile, calibrate
            marks.append(pytest.mark.slow)
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    # One ONNX cache for the module: later builds of the same model reuse the export.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("onnx-cache")))
        yield


def test_every_builtin_backend_declares_capabilities() -> None:
    names = {case.backend for case in contract_cases()}
    assert {"torch", "torchscript", "torch_compile", "onnxruntime", "openvino"} <= names


@pytest.mark.parametrize("kind", ["mlp", "bert"])
@pytest.mark.parametrize("case", _params())
def test_backend_contract(case: ContractCase, kind: str, tmp_path: Path) -> None:
    drop = check_backend_contract(
        case.backend,
        case.precision.value,
        case.technique,
        tmp_path,
        tolerance=contract_tolerance(case.precision, kind, case.device),
        device=case.device,
        kind=kind,
        skip_unsupported=case.device is DeviceKind.GPU,
    )
    if case.precision is Precision.INT8:
        assert drop > 0, "int8 outputs identical to fp32: the quantized graph did not run"
