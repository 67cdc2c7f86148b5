"""The sentence encoder around a compiled transformer: a winner built for one batch size and
length gets texts padded to its length, in batches of its size, and encodes the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from speedster_dist.artifacts import LearnerIO
from speedster_dist.modelio import OutputSpec
from speedster_dist.sentence import is_sentence_transformer, split_sentence_transformer
from speedster_dist.testing.models import tiny_bert, tiny_sentence_transformer

pytest.importorskip("sentence_transformers")

NAMES = ("input_ids", "token_type_ids", "attention_mask")
TEXTS = ["One.", "Two words.", "A third, longer text here.", "Four.", "Five and more words."]


@dataclass
class _Fixed:
    """A compiled transformer that takes one shape only, ``takes``; ``fixed_shapes`` is what
    it says of itself (an OpenVINO winner says it; another may leave it to the learner)."""

    module: Any
    takes: tuple[int, int]
    fixed_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(inputs[0].shape))
        assert all(tuple(x.shape) == self.takes for x in inputs)
        with torch.no_grad():
            return self.module(**dict(zip(NAMES, inputs, strict=True)))


@dataclass
class _Runner:
    """What the encoder calls: a learner's entry (its io, its compiled model)."""

    compiled: Any
    io: LearnerIO

    def __call__(self, **kwargs: torch.Tensor) -> torch.Tensor:
        return self.compiled(*(kwargs[n] for n in self.io.input_names))


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return tiny_sentence_transformer(tmp_path_factory.mktemp("st") / "tiny-st")


def test_a_fixed_shape_winner_gets_padded_texts_in_batches_of_its_size(tiny_st):
    module, encoder = split_sentence_transformer(tiny_st)
    compiled = _Fixed(module, (2, 24), {"input_ids": (2, 24), "attention_mask": (2, 24)})
    runner = _Runner(compiled, LearnerIO(NAMES, True, OutputSpec("tensor", ("output_0",))))
    got = encoder.encode(runner, TEXTS, batch_size=4)  # the winner's batch of 2 wins
    assert compiled.shapes == [(2, 24)] * 3  # 5 texts: the last batch is filled up
    np.testing.assert_allclose(got, tiny_st.encode(TEXTS), rtol=1e-4, atol=1e-5)
    with pytest.warns(UserWarning, match="truncated to 24"):
        encoder.encode(runner, ["word " * 40])


def test_a_learner_built_for_the_samples_shape_takes_texts_that_way(tiny_st):
    module, encoder = split_sentence_transformer(tiny_st)
    compiled = _Fixed(module, (1, 16))  # says nothing: the learner's shapes decide
    shapes = ((1, 16), (1, 16), (1, 16))  # the learner's own shapes (no axis dynamic)
    io = LearnerIO(NAMES, True, OutputSpec("tensor", ("output_0",)), input_shapes=shapes)
    runner = _Runner(compiled, io)
    got = encoder.encode(runner, TEXTS[:3], convert_to_tensor=True)
    assert compiled.shapes == [(1, 16)] * 3
    torch.testing.assert_close(got, tiny_st.encode(TEXTS[:3], convert_to_tensor=True))


def test_what_is_a_sentence_transformer(tiny_st):
    assert is_sentence_transformer(tiny_st)
    assert not is_sentence_transformer(tiny_bert()) and not is_sentence_transformer("org/name")
