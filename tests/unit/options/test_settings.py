"""RunOptions is the one list of settings: the keyword extras, the defaults and the checks are
derived from its fields, so that a setting added there is accepted, defaulted and validated."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import pytest

from speedster_dist import optimize_model
from speedster_dist.errors import InputError
from speedster_dist.measure import MeasureSettings
from speedster_dist.options import EXTRA_KWARGS, SPEEDSTER_ARGS, RunOptions, parse_run_options

FIELDS = dataclasses.fields(RunOptions)


def test_every_field_names_its_keyword_and_its_parser():
    keywords = [f.metadata["keyword"] for f in FIELDS]
    assert len(keywords) == len(set(keywords))  # one keyword sets one field
    assert all(callable(f.metadata["parse"]) for f in FIELDS)
    assert EXTRA_KWARGS | set(SPEEDSTER_ARGS) == set(keywords)
    assert not EXTRA_KWARGS & set(SPEEDSTER_ARGS)


def test_speedsters_arguments_are_the_parsers_and_optimize_models_parameters():
    parser = inspect.signature(parse_run_options).parameters
    assert set(parser) - {"extras"} == set(SPEEDSTER_ARGS)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parser.values())
    assert set(SPEEDSTER_ARGS) <= set(inspect.signature(optimize_model).parameters)
    # Every keyword extra is one optimize_model takes through **kwargs, not a parameter.
    assert not EXTRA_KWARGS & set(inspect.signature(optimize_model).parameters)


def test_no_keyword_gives_every_default_and_the_defaults_pass_their_own_checks():
    options = parse_run_options()
    for setting in FIELDS:
        value = getattr(options, setting.name)
        factory: Any = setting.default_factory  # MISSING unless the default is made
        default = factory() if callable(factory) else setting.default
        assert value == default, setting.name
        if setting.metadata["extra"]:  # an extra given its default is parsed to it
            keyword = setting.metadata["keyword"]
            assert setting.metadata["parse"](keyword, default) == default, keyword
    assert options.budget.label == "constrained" and options.metric_name == "numeric_precision"
    assert options.trial_timeout_s == 900 and options.confirm_rounds == 5


def test_each_extra_reaches_its_field_through_its_parser():
    options = parse_run_options(
        extras={
            "trial_timeout": 30,
            "group_wait": 5,
            "confirm_top": 2,
            "cluster": "  ray://head:10001 ",
            "measure_settings": None,
            "node_groups": ["a", "b", "a"],
            "runtime_env": {"pip": ["x"]},
        }
    )
    assert options.trial_timeout_s == 30.0 and isinstance(options.trial_timeout_s, float)
    assert options.group_wait_s == 5.0 and options.confirm_top == 2
    assert options.cluster == "ray://head:10001"
    assert options.measure == MeasureSettings()
    assert options.node_groups == ("a", "b")
    assert options.runtime_env == {"pip": ["x"]}


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("trial_timeout", math.inf, "trial_timeout must be a finite number of seconds > 0"),
        ("group_wait", 0, "group_wait must be a finite number of seconds > 0"),
        ("confirm_top", 0, "confirm_top must be an integer >= 1, got 0"),
        ("confirm_rounds", True, "confirm_rounds must be an integer >= 0, got True"),
        ("batch_size", 1.5, "batch_size must be an integer >= 1, got 1.5"),
        ("searcher", "random", "searcher must be one of ['optuna', 'exhaustive']"),
        ("search_seed", "1", "search_seed must be an int"),
        ("runtime_env", ["pip"], "runtime_env must be None, 'package' or a dict"),
        ("history", 3, "history must be a folder or a HistoryTarget, got 3"),
        ("study_storage", 3, "study_storage must be a URL, a path or None, got 3"),
        ("measure_settings", {}, "measure_settings must be a MeasureSettings"),
        ("cluster", "", "cluster must be 'auto' or an address"),
    ],
)
def test_a_wrong_extra_is_refused_naming_its_keyword(keyword, value, message):
    with pytest.raises(InputError) as info:
        parse_run_options(extras={keyword: value})
    assert message in str(info.value)


def test_options_are_built_by_keyword_and_never_change():
    with pytest.raises(TypeError):
        parse_run_options(None)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RunOptions(None)  # type: ignore[call-arg, arg-type]
    options = RunOptions(batch_size=4)
    assert options.batch_size == 4 and options.cluster == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.batch_size = 2  # type: ignore[misc]
