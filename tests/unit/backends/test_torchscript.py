import pytest
import torch

from speedster_dist.backends import BuildConfig, UnsupportedCandidate, get_backend
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import check_backend_contract, contract_model


@pytest.mark.parametrize("optimize", [False])  # True, the default: the conformance test
@pytest.mark.parametrize("kind", ["mlp", "bert"])
def test_torchscript_cpu_contract(tmp_path, kind, optimize):
    # optimize_for_inference rewrites the graph (oneDNN, pre-transposed weights): it must
    # keep eager's outputs, and what it saves must load back to the same outputs.
    drop = check_backend_contract(
        "torchscript",
        "fp32",
        "",
        tmp_path,
        tolerance=1e-4,
        kind=kind,
        knobs={"optimize_for_inference": optimize},
    )
    assert drop < 1e-4


def test_torchscript_rejects_reduced_precision_on_cpu(tmp_path):
    model = contract_model("mlp")
    config = BuildConfig(Precision.FP16, DeviceKind.CPU)
    with pytest.raises(UnsupportedCandidate):
        get_backend("torchscript").build(model.source, model.calibration, config, tmp_path)


def test_torchscript_rejects_onnx_source(tmp_path):
    model = contract_model("mlp")
    model.source.module = None
    config = BuildConfig(Precision.FP32, DeviceKind.CPU)
    with pytest.raises(UnsupportedCandidate):
        get_backend("torchscript").build(model.source, model.calibration, config, tmp_path)


def test_torchscript_does_not_modify_the_source_module(tmp_path):
    model = contract_model("mlp")
    assert model.source.module is not None
    before = {k: v.clone() for k, v in model.source.module.state_dict().items()}
    config = BuildConfig(Precision.FP32, DeviceKind.CPU, knobs={"optimize_for_inference": True})
    get_backend("torchscript").build(model.source, model.calibration, config, tmp_path)
    after = model.source.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
