import json
import zipfile

import pytest

from speedster_dist.backends import BuildConfig, UnsupportedCandidate, get_backend
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.testing.backend_contract import contract_model


def _require_inductor() -> None:
    reason = get_backend("torch_compile").unavailable_reason(DeviceKind.CPU)
    if reason is not None:
        pytest.skip(f"toolchain missing: {reason}")


@pytest.mark.slow
def test_torch_compile_saves_a_pickle_free_export_and_recompiles(tmp_path):
    _require_inductor()
    model = contract_model("mlp")
    backend = get_backend("torch_compile")
    config = BuildConfig(
        Precision.FP32, DeviceKind.CPU, knobs={"mode": "max-autotune-no-cudagraphs"}
    )
    compiled = backend.build(model.source, model.calibration, config, tmp_path)
    options = compiled.save(tmp_path)
    assert options["format"] == "torch.export"
    assert options["recompile"] == "torch_compile"
    assert options["mode"] == "max-autotune-no-cudagraphs"
    assert options["dynamic"] is True
    with zipfile.ZipFile(tmp_path / options["file"]) as archive:
        samples = [i for i in archive.infolist() if "/data/sample_inputs/" in i.filename]
    assert all(i.file_size == 0 for i in samples)
    loaded = backend.load(tmp_path, json.loads(json.dumps(options)), DeviceKind.CPU)
    for sample in model.validation:
        assert all(
            (a - b).abs().max() < 1e-5
            for a, b in zip(compiled(*sample), loaded(*sample), strict=True)
        )


def test_torch_compile_refuses_an_archive_with_pickles(tmp_path):
    path = tmp_path / "model.pt2"
    config = {"config": {"w": {"path_name": "weight_0", "use_pickle": True}}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data/weights/model_weights_config.json", json.dumps(config))
    options = {"file": "model.pt2", "format": "torch.export", "mode": "default"}
    with pytest.raises(UnsupportedCandidate, match="not a plain tensor"):
        get_backend("torch_compile").load(tmp_path, options, DeviceKind.CPU)


def test_torch_compile_rejects_reduced_precision_on_cpu(tmp_path):
    model = contract_model("mlp")
    config = BuildConfig(Precision.BF16, DeviceKind.CPU)
    with pytest.raises(UnsupportedCandidate):
        get_backend("torch_compile").build(model.source, model.calibration, config, tmp_path)


def test_cuda_graphs_only_for_gpu_modes_that_capture_them():
    from speedster_dist.backends.torch_compile import uses_cuda_graphs

    assert uses_cuda_graphs(DeviceKind.GPU, "reduce-overhead")
    assert uses_cuda_graphs(DeviceKind.GPU, "max-autotune")
    assert not uses_cuda_graphs(DeviceKind.GPU, "default")
    assert not uses_cuda_graphs(DeviceKind.CPU, "max-autotune-no-cudagraphs")
    knob = next(k for k in get_backend("torch_compile").knobs if DeviceKind.GPU in k.devices)
    assert knob.default == "reduce-overhead"  # a constrained GPU search tries CUDA graphs


@pytest.mark.gpu
def test_cuda_graph_outputs_survive_the_next_call(tmp_path):
    import torch

    model = contract_model("mlp")
    config = BuildConfig(Precision.FP32, DeviceKind.GPU, knobs={"mode": "reduce-overhead"})
    compiled = get_backend("torch_compile").build(model.source, model.calibration, config, tmp_path)
    first_in, second_in = model.calibration[0], model.calibration[-1]
    first = [t.clone() for t in compiled(*first_in)]
    for _ in range(3):  # several replays: CUDA graph trees record after warm-up calls
        kept = compiled(*first_in)
        compiled(*second_in)
    for expected, got in zip(first, kept, strict=True):
        torch.testing.assert_close(got, expected)  # not overwritten by the later replay
