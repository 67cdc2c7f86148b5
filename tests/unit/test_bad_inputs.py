"""docs/bad-inputs.md is the truth: every row raises its error before any trial."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist import optimize_model
from speedster_dist.errors import InputError
from speedster_dist.runtime import InlineExecutor
from speedster_dist.testing.models import tiny_mlp

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-inputs.md"
_SPECIAL = {"nan": math.nan, "inf": math.inf}
_ROW = re.compile(r"^\| `(\w+)` \| `(.+)` \| `(.+)` \|$")


def _rows() -> list[tuple[str, Any, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            argument, value, message = match.groups()
            rows.append((argument, _SPECIAL.get(value) or ast.literal_eval(value), message))
    return rows


class _Spy(InlineExecutor):
    def discover(self) -> Any:
        raise AssertionError("a trial was about to be scheduled for bad input")


def test_the_table_has_its_rows():
    assert len(_rows()) >= 25


@pytest.mark.parametrize(("argument", "value", "message"), _rows())
def test_each_documented_bad_input_fails_with_its_message(argument, value, message):
    kwargs: dict[str, Any] = {
        "model": tiny_mlp(),
        "input_data": [((torch.randn(1, 16),), 0) for _ in range(5)],
        "executor": _Spy(),
        "progress": False,
        argument: value,
    }
    with pytest.raises(InputError) as info:
        optimize_model(**kwargs)
    assert message in str(info.value)


def test_a_model_with_nan_outputs_is_refused_naming_the_sample():
    class Nan(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=1, keepdim=True) * float("nan") if x[0, 0] > 100 else x

    data = [((torch.randn(1, 4),), 0) for _ in range(4)] + [((torch.full((1, 4), 500.0),), 0)]
    with pytest.raises(InputError, match="output 0 on sample 4 holds NaN or infinity"):
        optimize_model(Nan(), data, executor=_Spy(), progress=False)


def test_one_string_is_one_name(monkeypatch):
    from speedster_dist.options import parse_run_options

    options = parse_run_options(ignore_compilers="onnxruntime", ignore_compressors="int8")
    assert options.ignored_backends == {"onnxruntime"}
    assert options.ignored_compressors == {"int8"}
