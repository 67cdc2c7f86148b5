"""A job records its model under the name users chose: the sweep job's, not its learner's."""

from __future__ import annotations

import json

import pytest

from speedster_dist import api
from speedster_dist.fleet import JobSpec, run_job


@pytest.mark.parametrize(("model_name", "recorded"), [("bert", "bert"), ("", "bert-exact")])
def test_the_history_names_the_model_after_the_job(
    bert_dir, tmp_path, monkeypatch, model_name, recorded
):
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps([f"text {i}" for i in range(6)]))
    seen = {}

    def fake_optimize(model, input_data, **kwargs):
        seen.update(kwargs)
        return "learner"

    monkeypatch.setattr(api, "optimize_model", fake_optimize)
    spec = JobSpec(name="bert-exact", model=bert_dir, inputs=texts, model_name=model_name)
    assert run_job(spec, tmp_path / "history", progress=False) == "learner"
    target = seen["history"]
    assert (target.model_name, target.kind) == (recorded, "optimize")
