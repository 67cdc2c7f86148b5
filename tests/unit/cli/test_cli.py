"""The command line without Ray: arguments, files, errors and exit codes."""

import pytest

from speedster_dist.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from speedster_dist.cli._common import CliError
from speedster_dist.cli._rebench import exit_code
from speedster_dist.cli._sweep import load_plan
from speedster_dist.errors import InputError


def test_help_and_usage_errors_have_their_exit_codes(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "optimize" in capsys.readouterr().out
    assert main([]) == EXIT_USAGE
    assert main(["optimize"]) == EXIT_USAGE  # MODEL and --inputs are required
    assert main(["frobnicate"]) == EXIT_USAGE


def test_a_missing_model_fails_before_any_cluster_is_touched(tmp_path, capsys):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray of another test is connected in this process")
    texts = tmp_path / "t.json"
    texts.write_text('["a"]')
    code = main(["optimize", str(tmp_path / "nope"), "--inputs", str(texts)])
    assert code == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_report_errors(tmp_path, capsys):
    assert (
        main(["report", "--history", str(tmp_path / "none"), "--out", str(tmp_path / "r.html")])
        == EXIT_USAGE
    )
    (tmp_path / "empty").mkdir()
    assert (
        main(["report", "--history", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
        == EXIT_FAILED
    )
    assert "holds no trial" in capsys.readouterr().err


def test_rebench_needs_learners(tmp_path, capsys):
    assert main(["rebench", str(tmp_path / "none"), "--history", str(tmp_path / "h")]) == EXIT_USAGE
    assert (
        main(["rebench", str(tmp_path), "--history", str(tmp_path / "h"), "--threshold", "0"])
        == EXIT_USAGE
    )


def test_exit_code_of_a_night():
    assert exit_code(regressions=0, errors=0) == 0
    assert exit_code(regressions=0, errors=2) == 1
    assert exit_code(regressions=1, errors=2) == 3


def test_sweep_plans_expand_jobs_by_settings(tmp_path):
    (tmp_path / "sweep.yaml").write_text(
        """
out: out
history: h
concurrency: 2
defaults: {metric_drop_ths: 0.05, ignore_compilers: [tensorrt]}
jobs:
  - name: bert
    model: models/bert
    inputs: data/t.jsonl
    settings: [{name: exact, metric_drop_ths: 0}, {name: fast, optimization_time: 60}]
  - model: models/resnet.onnx
    inputs: data/x.npz
    batch_size: 4
"""
    )
    plan = load_plan(tmp_path / "sweep.yaml")
    assert [j.name for j in plan.jobs] == ["bert-exact", "bert-fast", "resnet"]
    exact, fast, resnet = plan.jobs
    assert exact.metric_drop_ths == 0.0 and fast.metric_drop_ths == 0.05
    assert fast.optimization_time == 60 and fast.ignore_compilers == ("tensorrt",)
    assert (
        exact.model == tmp_path / "models" / "bert" and exact.out == tmp_path / "out" / "bert-exact"
    )
    assert resnet.batch_size == 4 and plan.history == tmp_path / "h" and plan.concurrency == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs: []", "no job"),
        ("jobz: []", "unknown key 'jobz': did you mean 'jobs'?"),
        ("[1, 2]", "must hold a mapping"),
        ("jobs: [{model: m}]", r"jobs\[0\].inputs is missing"),
        ("jobs: [{model: m, inputs: i, trheshold: 1}]", r"jobs\[0\]: unknown setting 'trheshold'"),
        ("jobs: [{model: m, inputs: i, batch_size: many}]", "batch_size='many' is invalid"),
        ("jobs: [{model: m, inputs: i}, {model: m, inputs: j}]", "must be unique"),
        ("concurrency: 0\njobs: [{model: m, inputs: i}]", "concurrency=0 is invalid"),
        ("jobs: [{name: 'a b', model: m, inputs: i}]", "letters, digits"),
        ("jobs: [{model: m, inputs: i", "not valid YAML"),
    ],
)
def test_sweep_files_are_validated(tmp_path, text, message):
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises((CliError, InputError), match=message):
        load_plan(tmp_path / "s.yaml")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--metric-drop-ths", "nan", "NaN or infinity would accept any candidate"),
        ("--metric-drop-ths", "inf", "NaN or infinity would accept any candidate"),
        ("--trial-timeout", "0", "trial_timeout must be a finite number of seconds > 0"),
        ("--ignore-compilers", "fastest", "unknown backend 'fastest'"),
        ("--study-storage", "mongodb://db/studies", "Optuna cannot open a 'mongodb' URL"),
        ("--study-storage", "sqlite:/studies.db", "looks like a URL that lost its slashes"),
    ],
)
def test_settings_that_would_disable_the_guard_exit_2_before_ray(
    tmp_path, capsys, flag, value, message
):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray of another test is connected in this process")
    argv = ["optimize", str(tmp_path / "m"), "--inputs", str(tmp_path / "t.json"), flag, value]
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()


@pytest.mark.parametrize("value", ["sqlite:///studies.db", "sqlite:////abs/x.db", "studies"])
def test_a_study_storage_reaches_the_search_as_written(value):
    from speedster_dist.cli import build_parser
    from speedster_dist.cli._fleet_options import fleet_settings

    args = build_parser().parse_args(["optimize", "m", "--inputs", "t", "--study-storage", value])
    assert fleet_settings(args)["study_storage"] == value


def test_generation_flags_reach_the_job():
    from speedster_dist.cli import build_parser
    from speedster_dist.cli._optimize import generation_settings

    argv = ["optimize", "m", "--inputs", "t", "--task", "text-generation", "--max-new-tokens", "64"]
    args = build_parser().parse_args(argv)
    settings = generation_settings(args)
    assert settings == {
        "task": "text-generation",
        "max_new_tokens": 64,
        "model_class": "AutoModelForCausalLM",  # what generate() needs, unless told otherwise
    }
    args = build_parser().parse_args(["optimize", "m", "--inputs", "t"])
    assert generation_settings(args) == {"task": "", "max_new_tokens": 32}
    argv = ["optimize", "m", "--inputs", "t", "--task", "text2text-generation"]
    argv += ["--model-class", "T5ForConditionalGeneration"]
    assert "model_class" not in generation_settings(build_parser().parse_args(argv))


def test_a_bad_max_new_tokens_exits_2_before_ray(tmp_path, capsys):
    argv = ["optimize", str(tmp_path / "m"), "--inputs", str(tmp_path / "t.json")]
    assert main([*argv, "--max-new-tokens", "0"]) == EXIT_USAGE
    assert "max_new_tokens must be an integer >= 1" in capsys.readouterr().err
