"""Batches of requests tiled from the samples: shapes, values and refusals."""

from __future__ import annotations

import pytest
import torch

from speedster_dist.measure import BatchError, batch_rows, tile_batch

NAMES = ("input_ids", "attention_mask")


def _sample(value: int, rows: int = 1, length: int = 4) -> tuple[torch.Tensor, ...]:
    ids = torch.full((rows, length), value, dtype=torch.int64)
    return ids, torch.ones(rows, length, dtype=torch.int64)


def test_samples_are_taken_in_turn_along_the_batch_axis():
    samples = [_sample(10), _sample(11), _sample(12)]
    ids, mask = tile_batch(samples, NAMES, 8)
    assert ids.shape == mask.shape == (8, 4)
    assert ids[:, 0].tolist() == [10, 11, 12, 10, 11, 12, 10, 11]
    assert ids.dtype == torch.int64 and ids.is_contiguous()
    assert bool((mask == 1).all())


def test_a_batch_of_one_is_the_first_sample():
    samples = [_sample(7), _sample(8)]
    batch = tile_batch(samples, NAMES, 1)
    assert all(torch.equal(a, b) for a, b in zip(batch, samples[0], strict=True))


def test_samples_of_several_rows_stay_whole_requests():
    samples = [_sample(1, rows=2), _sample(2, rows=3)]
    ids, _ = tile_batch(samples, NAMES, 3)
    assert ids[:, 0].tolist() == [1, 1, 2, 2, 2, 1, 1]
    assert batch_rows(samples, 3) == 7


def test_float_features_tile_too():
    samples = [(torch.arange(4.0).reshape(1, 4),), (torch.arange(4.0, 8.0).reshape(1, 4),)]
    (x,) = tile_batch(samples, ("x",), 3)
    assert x.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


def test_samples_of_other_lengths_cannot_be_batched_and_the_error_says_why():
    samples = [_sample(1, length=4), _sample(2, length=6)]
    with pytest.raises(BatchError, match=r"'input_ids' differs between samples.*pad the samples"):
        tile_batch(samples, NAMES, 2)
    # Only the samples a batch uses must agree: batch 1 takes the first alone.
    assert tile_batch(samples, NAMES, 1)[0].shape == (1, 4)


@pytest.mark.parametrize("size", [0, -1, 2.5, float("nan"), True, "8"])
def test_bad_batch_sizes_are_refused(size):
    with pytest.raises(BatchError, match="batch_size must be a whole number >= 1"):
        tile_batch([_sample(1)], NAMES, size)


def test_no_samples_wrong_input_count_and_scalars_are_refused():
    with pytest.raises(BatchError, match="at least one sample"):
        tile_batch([], NAMES, 2)
    with pytest.raises(BatchError, match="sample 0 has 1 inputs, the model 2"):
        tile_batch([(torch.ones(1, 4),)], NAMES, 2)
    with pytest.raises(BatchError, match="'x' of sample 0 is a scalar"):
        tile_batch([(torch.tensor(1.0),)], ("x",), 2)
