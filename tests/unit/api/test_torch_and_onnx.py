"""``optimize_model`` on plain PyTorch modules (tuples with labels, a DataLoader) and on ONNX
files (inputs by position or by name)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speedster_dist.errors import InputError
from speedster_dist.testing.models import tiny_mlp

from .helpers import TOL, SpyExecutor, assert_round_trip, baseline, eager, optimize

# -- plain PyTorch ------------------------------------------------------------------------------


def test_plain_module_with_tuples_and_labels(tmp_path):
    model = tiny_mlp()
    torch.manual_seed(1)
    data = [((torch.randn(1, 16),), torch.tensor([i % 4])) for i in range(10)]
    learner = optimize(model, data)
    baseline(learner)
    assert learner.io.input_names == ("input",)
    assert learner.io.keyword is False
    x = torch.randn(1, 16)
    out = learner(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, eager(model, x), **TOL)
    torch.testing.assert_close(learner(input=x), out)  # by name, like the original
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


def test_plain_module_with_a_dataloader(tmp_path):
    model = tiny_mlp()
    torch.manual_seed(2)
    loader = DataLoader(
        TensorDataset(torch.randn(20, 16), torch.randint(0, 4, (20,))), batch_size=4
    )
    learner = optimize(model, loader, metric="accuracy", metric_drop_ths=0)
    baseline(learner)
    assert all(r.metric_drop == 0.0 for r in learner.results if r.ok)
    assert "Candidates judged by metric 'accuracy'" in learner.summary
    x = torch.randn(4, 16)
    torch.testing.assert_close(learner(x), eager(model, x), **TOL)
    # Batches of 4: the summary reports samples per second (of the confirmed figure).
    (winner,) = learner.entries.values()
    assert f"{4 / winner.metrics['confirmed_baseline_p50_s']:.1f}" in learner.summary
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


# -- ONNX files -----------------------------------------------------------------------------------


def _export(model, args, path, input_names, output_names=("y",)):
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=False,
        input_names=list(input_names),
        output_names=list(output_names),
    )
    return path


def test_onnx_path(tmp_path):
    model = tiny_mlp()
    path = _export(model, (torch.randn(1, 16),), tmp_path / "mlp.onnx", ["x"])
    data = [((torch.randn(1, 16),), i % 4) for i in range(5)]
    learner = optimize(str(path), data, ignore_compilers=["openvino"])
    baseline(learner, backend="onnxruntime")
    assert {r.candidate.backend for r in learner.results} == {"onnxruntime"}
    assert learner.io.input_names == ("x",)
    x = torch.randn(1, 16)
    out = learner(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, eager(model, x), **TOL)
    assert_round_trip(learner, tmp_path, lambda lrn: lrn(x))


class _AffineTwo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(4, 3))

    def forward(self, a, b):
        return a @ self.weight + b


def test_onnx_path_with_dicts_maps_values_by_name(tmp_path):
    """Dict keys in another order than the graph's inputs still reach the right input."""
    model = _AffineTwo().eval()
    path = _export(model, (torch.randn(1, 4), torch.randn(1, 3)), tmp_path / "two.onnx", ["a", "b"])
    data = [{"b": torch.randn(1, 3), "a": torch.randn(1, 4)} for _ in range(3)]
    learner = optimize(path, data, ignore_compilers=["openvino"])
    baseline(learner, backend="onnxruntime")
    assert learner.io.input_names == ("a", "b")
    a, b = torch.randn(1, 4), torch.randn(1, 3)
    torch.testing.assert_close(learner(b=b, a=a), eager(model, a, b), **TOL)
    torch.testing.assert_close(learner(a, b), eager(model, a, b), **TOL)


def test_onnx_path_with_dicts_of_other_names(tmp_path):
    path = _export(
        _AffineTwo().eval(),
        (torch.randn(1, 4), torch.randn(1, 3)),
        tmp_path / "two.onnx",
        ["a", "b"],
    )
    spy = SpyExecutor()
    with pytest.raises(InputError, match=r"takes inputs \['a', 'b'\].*keys \['a', 'c'\]"):
        optimize(path, [{"a": torch.randn(1, 4), "c": torch.randn(1, 3)}], executor=spy)
    assert spy.calls == []
