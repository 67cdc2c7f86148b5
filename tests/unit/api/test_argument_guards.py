"""Arguments refused before any trial (issue 20, item 6), and the caller's module left as it
was: thresholds that would accept anything, empty samples, GPU indexes, output folders in
the way, nondeterministic models, training flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.errors import InputError
from speedster_dist.options import parse_run_options
from speedster_dist.testing.models import tiny_mlp

from .helpers import SpyExecutor, baseline, optimize


def _data(count: int = 5, rows: int = 1) -> list:
    return [((torch.randn(rows, 16),), 0) for _ in range(count)]


def _refused(match: str, model=None, input_data=None, **kwargs) -> SpyExecutor:
    """``optimize_model`` raises InputError matching ``match``, and no trial was asked for
    (nothing prepared, nothing submitted)."""
    spy = SpyExecutor()
    with pytest.raises(InputError, match=match):
        optimize_model(
            model if model is not None else tiny_mlp(),
            input_data if input_data is not None else _data(),
            executor=spy,
            progress=False,
            **kwargs,
        )
    assert [c for c in spy.calls if c != "discover"] == []
    return spy


@pytest.mark.parametrize(
    ("metric", "value", "bound"),
    [
        (None, 1e308, "2"),
        ("numeric_precision", 2, "2"),
        ("cosine", 2.0, "2"),
        ("cosine", 1e308, "2"),
        ("accuracy", 1.0, "1"),
        ("agreement", 5, "1"),
    ],
)
def test_a_threshold_that_accepts_every_candidate_is_refused(metric, value, bound):
    spy = _refused(
        rf"would accept any candidate: the \w+ drop is never above {bound}\. Give the drop "
        rf"you accept, below {bound}",
        metric=metric,
        metric_drop_ths=value,
    )
    assert spy.calls == []  # refused with the settings: not even the cluster was asked


def test_the_bounds_are_the_metrics_ceilings():
    from speedster_dist.measure import DROP_BOUNDS, resolve_metric

    original = [(torch.tensor([[1.0, 2.0, 3.0]]),)]
    opposite = [(-original[0][0],)]  # as far as finite outputs get from the original
    labels = [torch.tensor([2])]
    for name, bound in DROP_BOUNDS.items():
        drop = resolve_metric(name)(original, opposite, labels)
        assert 0.99 * bound <= drop <= bound, (name, drop)


def test_thresholds_below_the_bound_and_a_custom_metrics_own_scale_are_kept():
    assert parse_run_options(metric="cosine", metric_drop_ths=1.99).metric_drop_ths == 1.99
    assert parse_run_options(metric="accuracy", metric_drop_ths=0.5).metric_drop_ths == 0.5

    def custom(original, optimized, labels):
        return 0.0

    # A callable sets its own scale: any finite threshold (its NaN or inf drop never passes).
    assert parse_run_options(metric=custom, metric_drop_ths=1e6).metric_drop_ths == 1e6


def test_a_sentence_model_keeps_the_bound_of_the_cosine_metric_it_is_given():
    from dataclasses import replace

    from speedster_dist.measure import resolve_metric

    # Checked again whenever the settings change (optimize_model gives a sentence model
    # the cosine metric after parsing).
    options = parse_run_options(metric_drop_ths=0.5, metric="accuracy")
    with pytest.raises(InputError, match="the accuracy drop is never above 1"):
        replace(options, metric_drop_ths=1.0)
    options = parse_run_options(metric_drop_ths=1.5)
    assert replace(options, metric=resolve_metric("cosine")).metric_drop_ths == 1.5
    with pytest.raises(InputError, match="the agreement drop is never above 1"):
        replace(options, metric=resolve_metric("agreement"))


@pytest.mark.parametrize(
    ("input_data", "where"),
    [
        ([((torch.randn(0, 16),), 0) for _ in range(5)], r"sample 0 input 0 is empty \(shape"),
        ([*_data(4), ((torch.randn(1, 0),), 0)], r"sample 4 input 0 is empty \(shape \(1, 0\)\)"),
        ([np.zeros((0, 16), dtype=np.float32)] * 5, r"sample 0 input 0 is empty \(shape \(0, 16"),
        ([{"x": torch.randn(0, 16)}] * 5, r"sample 0 key 'x' is empty"),
    ],
)
def test_zero_row_samples_are_refused(input_data, where):
    _refused(where + r".*every sample needs at least one row", input_data=input_data)


def test_empty_texts_are_refused_before_the_tokenizer_runs(tokenizer):
    texts = ["one text", "two", "   ", "four", "", "six"]
    _refused(
        r"input_data text 2 is empty or only spaces \(2 of 6 texts are\)",
        input_data=texts,
        tokenizer=tokenizer,
    )


@pytest.mark.parametrize("device", ["cuda:x", "cuda:-1", "cuda:1.0", "cuda: 1", "cuda:"])
def test_a_gpu_index_must_be_a_whole_number(device):
    spy = _refused(r"the GPU index must be a whole number >= 0, as in 'cuda:0'", device=device)
    assert spy.calls == []


def test_a_gpu_this_machine_or_the_cluster_does_not_have_is_refused_before_any_trial():
    count = torch.cuda.device_count()
    if count:  # checked with the settings, against this machine's GPUs
        spy = _refused(
            rf"this machine has {count} GPU\(s\), cuda:0 to cuda:{count - 1}",
            device=f"cuda:{count}",
        )
        assert spy.calls == []
    else:  # a driver without GPU may search GPU nodes: refused once the cluster is seen
        spy = _refused(
            r"the cluster has no gpu node to optimize for \(its hardware types: cpu-.*\)\. "
            r"Give device=None .* or connect to a cluster with gpu nodes",
            device="cuda:99",
        )
        assert spy.calls == ["discover", "discover"]


def test_a_gpu_search_of_this_machine_alone_needs_a_gpu_here():
    if torch.cuda.device_count():  # this machine can: the settings are taken
        assert parse_run_options(device="cuda:0", extras={"cluster": "local"}).devices
        return
    for device in ("gpu", "cuda", "cuda:0", "cuda:99"):
        spy = _refused(
            r"cluster='local' searches this machine only, which has no GPU torch can use",
            device=device,
            cluster="local",
        )
        assert spy.calls == []


def test_a_history_folder_in_the_way_is_refused_before_the_search(tmp_path):
    taken = tmp_path / "history.parquet"
    taken.write_bytes(b"not a folder")
    spy = _refused(r"history='.*history.parquet' is a file, not a folder", history=taken)
    assert spy.calls == []
    _refused(
        r"history='.*/sub' cannot be created: '.*history.parquet' is a file",
        history=str(taken / "sub"),
    )
    assert taken.read_bytes() == b"not a folder"  # nothing written, nothing moved


def test_a_history_on_a_read_only_place_is_refused(tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)  # read-only for a user; root writes anywhere but in /proc/sys
    place = next(p for p in (locked, Path("/proc/sys")) if not os.access(p, os.W_OK))
    _refused(
        r"history='.*/history' cannot be written: .* is read-only for this process",
        history=place / "history",
    )


class _Noisy(torch.nn.Module):
    """Random noise in forward: two identical calls differ (in eval mode too)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.rand(x.shape[0], 4)


class _AlwaysDropout(_Noisy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(self.linear(x), p=0.5, training=True)


@pytest.mark.parametrize("model", [_Noisy(), _AlwaysDropout()])
def test_a_nondeterministic_model_is_refused_saying_so(model):
    _refused(
        r"the model is not deterministic: called twice in eval mode on sample 4, its output 0 "
        r"differed.*remove the random operations",
        model=model,
    )


class _Jitter(_Noisy):
    """Noise a million times smaller than its outputs: what threads summing in another
    order could do, far below what a candidate may differ by."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + 1e-7 * torch.rand(x.shape[0], 4)


def test_differences_below_the_fp32_tolerance_are_not_nondeterminism():
    from speedster_dist.prepare import prepare

    prepared = prepare(_Jitter(), _data(), parse_run_options())
    assert len(prepared.payload.reference_outputs) == 1


class _Trained(torch.nn.Module):
    """Dropout and batch norm: what eval mode changes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)
        self.norm = torch.nn.BatchNorm1d(16)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.norm(self.linear(x))))


def test_the_callers_module_keeps_its_training_flags():
    torch.manual_seed(0)
    model = _Trained().train()
    model.head.eval()  # a mix: every submodule's own flag must come back as it was
    before = {name: m.training for name, m in model.named_modules()}
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data(6, rows=4)
    learner = optimize(model, data)
    baseline(learner)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    # The learner is the model in eval mode (dropout off, running statistics), as Speedster's.
    x = data[0][0][0]
    model.eval()
    with torch.inference_mode():
        expected = model(x)
    torch.testing.assert_close(learner(x), expected, rtol=1e-4, atol=1e-4)


def test_a_module_in_eval_mode_is_searched_as_it_is():
    from speedster_dist.prepare import eval_model

    model = tiny_mlp().eval()
    assert eval_model(model) is model
    trained = tiny_mlp().train()
    copied = eval_model(trained)
    assert copied is not trained and not copied.training and trained.training
