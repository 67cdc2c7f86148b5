import importlib
import importlib.util

import pytest
import torch

from speedster_dist.backends import get_backend
from speedster_dist.backends.tensorrt import profile_shapes
from speedster_dist.records import DeviceKind, Precision

_HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_tensorrt_module_imports_and_declares_gpu_capabilities():
    module = importlib.import_module("speedster_dist.backends.tensorrt")
    backend = module.BACKEND
    assert backend.name == "tensorrt"
    assert {(c.device, c.precision, c.technique) for c in backend.capabilities} == {
        (DeviceKind.GPU, Precision.FP32, ""),
        (DeviceKind.GPU, Precision.TF32, ""),
        (DeviceKind.GPU, Precision.FP16, ""),
        (DeviceKind.GPU, Precision.INT8, "static"),
    }
    assert all(c.sources == frozenset({"torch", "onnx"}) for c in backend.capabilities)
    assert {k.name for k in backend.knobs} == {
        "builder_optimization_level",
        "workspace_gb",
        "calibration_samples",
        "calibration_method",
    }


def test_tensorrt_is_unavailable_on_cpu():
    reason = get_backend("tensorrt").unavailable_reason(DeviceKind.CPU)
    assert reason is not None and "GPU" in reason


@pytest.mark.skipif(_HAS_TENSORRT, reason="tensorrt is installed here")
def test_tensorrt_reports_missing_library_without_raising():
    assert get_backend("tensorrt").unavailable_reason(DeviceKind.GPU) == "tensorrt not installed"


@pytest.mark.skipif(
    not _HAS_TENSORRT or torch.cuda.is_available(), reason="needs tensorrt without a CUDA device"
)
def test_tensorrt_reports_missing_gpu():
    assert (
        get_backend("tensorrt").unavailable_reason(DeviceKind.GPU)
        == "no CUDA device visible to torch"
    )


def test_profile_covers_dynamic_dims_with_headroom():
    samples = [torch.zeros(1, 8), torch.zeros(1, 12), torch.zeros(1, 16)]
    low, opt, high = profile_shapes("input_ids", (1, -1), samples)
    assert low == (1, 1)
    assert opt == (1, 8)  # the example input's sizes
    assert high == (1, 32)


def test_profile_keeps_static_dims():
    low, opt, high = profile_shapes("x", (-1, 16), [torch.zeros(3, 16), torch.zeros(5, 16)])
    assert (low, opt, high) == ((1, 16), (3, 16), (10, 16))


@pytest.mark.gpu
def test_tensorrt_refuses_an_engine_from_another_version(tmp_path):
    from speedster_dist.backends import UnsupportedCandidate

    backend = get_backend("tensorrt")
    reason = backend.unavailable_reason(DeviceKind.GPU)
    if reason is not None:
        pytest.skip(reason)
    (tmp_path / "model.engine").write_bytes(b"")
    options = {
        "engine": "model.engine",
        "input_names": ["x"],
        "output_names": ["y"],
        "tensorrt_version": "0.0.0",
    }
    with pytest.raises(UnsupportedCandidate, match="rebuild"):
        backend.load(tmp_path, options, DeviceKind.GPU)
