import numpy as np
import pytest
import torch

from speedster_dist.measure import (
    accuracy_drop,
    metric_drop,
    numeric_precision_drop,
    resolve_metric,
)


def test_numeric_precision_is_speedsters_relative_difference():
    a = torch.tensor([1.0, 2.0, 4.0])
    b = torch.tensor([1.0, 2.2, 3.0])
    expected = np.mean([0.0, 0.2 / (2.2 + 1e-5), 1.0 / (4.0 + 1e-5)])
    assert numeric_precision_drop([(a,)], [(b,)]) == pytest.approx(expected)


def test_numeric_precision_takes_max_over_outputs_and_mean_over_samples():
    same = torch.ones(3)
    half = torch.full((3,), 0.5)
    drop = numeric_precision_drop([(same, same), (same, same)], [(same, half), (same, same)])
    assert drop == pytest.approx((0.5 / (1 + 1e-5) + 0.0) / 2)


def test_identical_outputs_have_zero_drop_and_nan_is_infinite():
    t = torch.randn(4, 5)
    assert numeric_precision_drop([(t,)], [(t.clone(),)]) == 0.0
    assert numeric_precision_drop([(t,)], [(torch.full_like(t, float("nan")),)]) == float("inf")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        numeric_precision_drop([(torch.ones(2),)], [(torch.ones(3),)])
    with pytest.raises(ValueError, match="outputs"):
        numeric_precision_drop([(torch.ones(2), torch.ones(2))], [(torch.ones(2),)])


def test_accuracy_drop_compares_argmax_with_labels():
    good = [(torch.tensor([[0.1, 0.9]]),), (torch.tensor([[0.8, 0.2]]),)]
    bad = [(torch.tensor([[0.9, 0.1]]),), (torch.tensor([[0.8, 0.2]]),)]
    labels = [torch.tensor([1]), torch.tensor([0])]
    assert accuracy_drop(good, bad, labels) == pytest.approx(0.5)
    assert accuracy_drop(good, good, labels) == 0.0


def test_accuracy_needs_labels():
    with pytest.raises(ValueError, match="label"):
        accuracy_drop([(torch.ones(1, 2),)], [(torch.ones(1, 2),)], None)


def test_resolve_metric():
    assert resolve_metric(None) is numeric_precision_drop
    assert resolve_metric("accuracy") is accuracy_drop

    def custom(o, p, labels):
        return 0.25

    assert resolve_metric(custom) is custom
    assert metric_drop(custom, [], [], None) == 0.25
    with pytest.raises(ValueError, match="unknown metric"):
        resolve_metric("f1")
    with pytest.raises(ValueError, match="NaN"):
        metric_drop(lambda o, p, labels: float("nan"), [], [], None)
