"""The metrics users mean: cosine similarity and top-1 agreement, with attention masks."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from speedster_dist.measure import (
    BUILTIN_METRICS,
    agreement_drop,
    cosine_drop,
    metric_drop,
    resolve_metric,
    sample_masks,
)
from speedster_dist.records import Precision
from speedster_dist.search import allowed_precisions


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_cosine_is_one_minus_the_mean_row_cosine():
    original = [(t([[1.0, 0.0], [0.0, 1.0]]),)]
    candidate = [(t([[2.0, 0.0], [1.0, 1.0]]),)]  # cosines 1 and 1/sqrt(2)
    expected = 1 - (1 + 1 / math.sqrt(2)) / 2
    assert cosine_drop(original, candidate) == pytest.approx(expected)
    assert resolve_metric("cosine") is cosine_drop


def test_cosine_averages_rows_over_samples_and_takes_the_worst_output():
    same = t([[1.0, 2.0]])
    orthogonal = t([[-2.0, 1.0]])
    original = [(same, same), (same, same)]
    # output 1: cosines 0 (sample 0) and 1 (sample 1) -> mean 0.5; output 0 is exact
    candidate = [(same, orthogonal), (same, same)]
    assert cosine_drop(original, candidate) == pytest.approx(0.5)


def test_cosine_leaves_out_masked_positions_of_per_token_outputs():
    hidden = t([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # [batch 1, seq 3, hidden 2]
    wrong_pad = t([[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])  # the padded token is reversed
    pooled = t([[3.0, 4.0]])  # [batch, hidden]: the mask does not apply to it
    mask = torch.tensor([[1, 1, 0]])
    original, candidate = [(hidden, pooled)], [(wrong_pad, pooled)]
    assert cosine_drop(original, candidate, None, [mask]) == pytest.approx(0.0)
    assert cosine_drop(original, candidate) == pytest.approx(1 - (1 + 1 - 1) / 3)
    # through metric_drop the masks reach the built-in metric
    assert metric_drop(cosine_drop, original, candidate, None, [mask]) == pytest.approx(0.0)


def test_cosine_never_lets_zeros_or_nan_pass():
    x = t([[1.0, 2.0, 3.0]])
    assert cosine_drop([(x,)], [(torch.zeros_like(x),)]) == pytest.approx(1.0)
    assert cosine_drop([(x,)], [(-x,)]) == pytest.approx(2.0)
    assert cosine_drop([(torch.zeros(1, 3),)], [(torch.zeros(1, 3),)]) == 0.0
    nan = x.clone()
    nan[0, 1] = float("nan")
    assert cosine_drop([(x,)], [(nan,)]) == math.inf
    inf = x.clone()
    inf[0, 0] = float("inf")
    assert cosine_drop([(x,)], [(inf,)]) == math.inf


def test_cosine_checks_shapes_and_counts():
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_drop([(torch.ones(1, 2),)], [(torch.ones(1, 3),)])
    with pytest.raises(ValueError, match="outputs"):
        cosine_drop([(torch.ones(2), torch.ones(2))], [(torch.ones(2),)])
    with pytest.raises(ValueError, match="samples"):
        cosine_drop([(torch.ones(2),)], [])


def test_cosine_handles_scalars_and_vectors():
    # a 1-d output is one row; a scalar is a one-value row (its sign)
    assert cosine_drop([(t([1.0, 1.0]),)], [(t([1.0, 0.0]),)]) == pytest.approx(
        1 - 1 / math.sqrt(2)
    )
    assert cosine_drop([(t(2.0),)], [(t(-1.0),)]) == pytest.approx(2.0)


def test_agreement_counts_shared_top1_predictions():
    original = [(t([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]),), (t([[0.0, 0.0, 1.0]]),)]
    candidate = [(t([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1]]),), (t([[0.0, 0.1, 0.9]]),)]
    assert agreement_drop(original, candidate) == pytest.approx(1 - 2 / 3)
    assert agreement_drop(original, original) == 0.0
    assert resolve_metric("agreement") is agreement_drop


def test_agreement_uses_output_zero_and_the_mask():
    logits = t([[[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [0.0, 5.0]]])  # [1, seq 4, classes 2]
    flipped_tail = t([[[5.0, 0.0], [0.0, 5.0], [0.0, 5.0], [5.0, 0.0]]])
    other = torch.randn(1, 3)
    mask = torch.tensor([[1, 1, 0, 0]])
    original, candidate = [(logits, other)], [(flipped_tail, -other)]
    assert agreement_drop(original, candidate) == pytest.approx(0.5)
    assert agreement_drop(original, candidate, None, [mask]) == 0.0


def test_agreement_counts_nan_scores_as_disagreement():
    logits = t([[0.0, 1.0]])
    # numpy's argmax would pick the NaN's index 1 and "agree"
    assert agreement_drop([(logits,)], [(t([[0.0, float("nan")]]),)]) == 1.0


def test_custom_metrics_keep_three_arguments_when_masks_exist():
    def custom(original, optimized, labels):
        return 0.125

    assert metric_drop(custom, [], [], None, [torch.ones(1, 2)]) == 0.125


def test_sample_masks_takes_the_attention_mask_input_by_name():
    ids, mask = torch.tensor([[1, 2, 0]]), torch.tensor([[1, 1, 0]])
    masks = sample_masks(("input_ids", "attention_mask"), [(ids, mask)])
    assert masks is not None and torch.equal(masks[0], mask)
    assert sample_masks(("x",), [(ids,)]) is None


def test_builtin_names_and_int8_rule():
    assert {"numeric_precision", "accuracy", "cosine", "agreement"} <= set(BUILTIN_METRICS)
    # Speedster's elementwise metric tries int8 above 0.02 only; cosine/agreement once any
    # drop is accepted (their drops are what the guard checks).
    assert Precision.INT8 not in allowed_precisions(0.01)
    assert Precision.INT8 in allowed_precisions(0.03)
    assert Precision.INT8 in allowed_precisions(0.01, "cosine")
    assert Precision.INT8 in allowed_precisions(0.01, "agreement")
    assert Precision.INT8 not in allowed_precisions(None, "cosine")


_finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    a=arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=_finite),
    data=st.data(),
)
def test_cosine_drop_lies_in_0_2_and_is_0_for_identical_outputs(a, data):
    b = data.draw(arrays(np.float32, a.shape, elements=_finite))
    original, candidate = [(torch.from_numpy(a),)], [(torch.from_numpy(b),)]
    drop = cosine_drop(original, candidate)
    assert 0.0 <= drop <= 2.0
    assert cosine_drop(original, [(torch.from_numpy(a.copy()),)]) == pytest.approx(0, abs=1e-9)
    assert 0.0 <= agreement_drop(original, candidate) <= 1.0
    assert agreement_drop(original, original) == 0.0


# No subnormals: 1e-45 * 0.5 rounds to 0 in float32, and a zero row rightly scores 0 against
# a non-zero one (hypothesis found it); a normal float32 times 0.01 stays non-zero.
_normal = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    a=arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(2, 5)), elements=_normal),
    scale=st.floats(0.01, 100),
)
def test_cosine_ignores_positive_scaling(a, scale):
    original = [(torch.from_numpy(a),)]
    scaled = [(torch.from_numpy(a) * scale,)]
    assert cosine_drop(original, scaled) == pytest.approx(0, abs=1e-6)
