from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from speedster_dist.backends.generate import _greedy


def _scripted(tokens: list[list[int]], vocab: int = 10) -> _greedy.Step:
    """A step whose argmax follows ``tokens`` (one list per row); records what it was fed."""
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def step(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        index = len(calls)
        calls.append((ids, mask, positions))
        logits = torch.zeros(len(tokens), vocab)
        for row, script in enumerate(tokens):
            logits[row, script[index]] = 1.0
        return logits

    step.calls = calls  # type: ignore[attr-defined]
    return step


def test_eos_outside_the_vocabulary_is_ignored() -> None:
    config = SimpleNamespace(eos_token_id=50256, pad_token_id=None)
    out = _greedy.decode(_scripted([[4, 5, 6, 7]]), torch.tensor([[1, 2]]), None, 4, config)
    assert out.tolist() == [[1, 2, 4, 5, 6, 7]]


def test_finished_rows_get_the_pad_and_the_loop_stops_when_all_are_done() -> None:
    config = SimpleNamespace(eos_token_id=3, pad_token_id=0)
    step = _scripted([[3, 5, 5, 5], [4, 3, 6, 6]])
    out = _greedy.decode(step, torch.tensor([[1], [2]]), None, 4, config)
    assert out.tolist() == [[1, 3, 0], [2, 4, 3]]
    assert len(step.calls) == 2  # type: ignore[attr-defined]


def test_positions_and_masks_follow_left_padding() -> None:
    config = SimpleNamespace(eos_token_id=None, pad_token_id=None)
    step = _scripted([[4, 5, 6], [7, 8, 9]])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    _greedy.decode(step, torch.tensor([[0, 1, 2], [3, 4, 5]]), mask, 3, config)
    calls = step.calls  # type: ignore[attr-defined]
    assert calls[0][2].tolist() == [[1, 0, 1], [0, 1, 2]]
    assert calls[1][1].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    assert calls[1][2].tolist() == [[2], [3]]
    assert calls[2][2].tolist() == [[3], [4]]


def test_top_k_one_sampling_is_greedy_and_unknown_arguments_fail() -> None:
    logits = torch.tensor([[0.1, 2.0, 0.3], [1.5, 0.2, 0.1]])
    rng = torch.Generator().manual_seed(0)
    sampled = _greedy.next_token(logits, {"do_sample": True, "top_k": 1, "generator": rng})
    assert sampled.tolist() == [1, 0]
    top_p = _greedy.next_token(logits * 10, {"do_sample": True, "top_p": 0.5, "generator": rng})
    assert top_p.tolist() == [1, 0]
    with pytest.raises(ValueError, match="num_beams"):
        _greedy.check_sampling({"num_beams": 2})
