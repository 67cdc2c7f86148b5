"""serve_requests: requests batched in order, split back, a call's error raised."""

from __future__ import annotations

import pytest
import torch

from speedster_dist.backends import pad_rows, serve_requests, split_rows
from speedster_dist.errors import ShapeError


class _Recorder:
    """Doubles its input; records each call's rows (calls may come from several threads)."""

    def __init__(self, fail_at=-1):
        self.rows = []
        self._fail_at = fail_at

    def __call__(self, x):
        if len(self.rows) == self._fail_at:
            self.rows.append(-1)
            raise RuntimeError("planted")
        self.rows.append(int(x.shape[0]))
        return (x * 2, x.sum(dim=1, keepdim=True))


def test_requests_are_batched_in_order_and_split_back():
    model = _Recorder()
    requests = [(torch.full((1, 3), float(i)),) for i in range(7)]
    served = serve_requests(model, requests, batch_size=3, concurrency=2)
    assert sorted(model.rows) == [1, 3, 3]
    for i, outputs in enumerate(served):
        torch.testing.assert_close(outputs[0], torch.full((1, 3), 2.0 * i))
        torch.testing.assert_close(outputs[1], torch.full((1, 1), 3.0 * i))


def test_a_call_holds_only_requests_of_one_shape_beyond_the_batch_axis():
    model = _Recorder()
    shapes = [(1, 3), (1, 3), (1, 5), (2, 5), (1, 3)]
    served = serve_requests(model, [(torch.ones(s),) for s in shapes], 4, 1)
    assert model.rows == [2, 3, 1]  # (1,3)+(1,3); (1,5)+(2,5); (1,3)
    assert [tuple(o[0].shape) for o in served] == shapes


def test_a_calls_error_is_raised():
    with pytest.raises(RuntimeError, match="planted"):
        serve_requests(_Recorder(fail_at=1), [(torch.ones(1, 3),)] * 6, 2, 1)


def test_outputs_not_batched_along_axis_0_cannot_be_split():
    with pytest.raises(ShapeError, match="not batched along axis 0"):
        serve_requests(lambda x: (x.sum(),), [(torch.ones(1, 3),)] * 2, 2, 1)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        serve_requests(_Recorder(), [(torch.ones(1, 3),)], 0, 1)
    with pytest.raises(ValueError, match="concurrency"):
        serve_requests(_Recorder(), [(torch.ones(1, 3),)], 1, 0)


def test_padding_repeats_the_rows_and_splitting_drops_them():
    batch = (torch.arange(6.0).reshape(3, 2),)
    padded = pad_rows(batch, 5)
    assert padded[0][:, 0].tolist() == [0.0, 2.0, 4.0, 0.0, 2.0]
    pieces = split_rows(padded, [1, 2])
    assert [p[0].shape[0] for p in pieces] == [1, 2]
