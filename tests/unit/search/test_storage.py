"""What ``study_storage`` may be (checked before any trial), how each kind is opened and
resumed, readable study names with their metric named, and damaged journals refused."""

import json
import sys
from typing import Any

import optuna
import pytest

from speedster_dist.search import (
    METRIC_NAMES,
    OptunaSearcher,
    StudyStorageError,
    anchor_storage,
    check_journal,
    check_storage,
    optuna_searcher_factory,
    study_name,
)

from .test_optuna import HW, drive, space


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "study_storage must be a URL, a path or None, got 5"),
        (object(), "study_storage must be a URL, a path or None"),
        ("", "study_storage must not be empty"),
        ("mongodb://localhost/studies", "Optuna cannot open a 'mongodb' URL"),
        ("redis://localhost:6379", "give a database URL (sqlite:///studies.db"),
        ("sqlite:/x.db", "lost its slashes; write it as Optuna does, e.g. sqlite:///studies.db"),
        ("postgresql:x", "lost its slashes; write it as Optuna does, e.g. postgresql://user@"),
    ],
)
def test_a_bad_storage_is_refused_saying_what_to_give(value, message):
    with pytest.raises(StudyStorageError) as info:
        check_storage(value)
    assert message in str(info.value)


def test_a_database_without_its_driver_is_refused_before_any_trial(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    url = "postgresql+psycopg://user:secret@db.example:5432/optuna"
    with pytest.raises(StudyStorageError, match="needs the database driver 'psycopg'") as info:
        check_storage(url)
    assert "secret" not in str(info.value)  # the password is never printed


@pytest.mark.parametrize(
    "value", [None, "studies", "studies.journal", "x.db", "sqlite:///x.db", "sqlite://"]
)
def test_the_forms_optuna_takes_are_accepted_without_touching_anything(tmp_path, value):
    assert check_storage(value) == value
    assert list(tmp_path.iterdir()) == []
    storage = optuna.storages.InMemoryStorage()
    assert check_storage(storage) is storage


def test_a_sweep_reads_paths_next_to_its_file_and_urls_as_written(tmp_path):
    assert anchor_storage("studies", tmp_path) == str(tmp_path / "studies")
    assert anchor_storage("sqlite:///studies.db", tmp_path) == "sqlite:///studies.db"


def test_study_names_are_readable_and_change_with_model_hardware_and_settings():
    identity = {"fingerprint": "abc123", "metric_drop_ths": 0.05, "metric": "numeric"}
    name = study_name("org/tiny-bert", HW.key, identity)
    assert name.startswith("org/tiny-bert-cpu-test-2c-") and len(name.rsplit("-", 1)[1]) == 8
    assert name == study_name("org/tiny-bert", HW.key, dict(reversed(identity.items())))
    for other in (
        study_name("org/other", HW.key, identity),
        study_name("org/tiny-bert", "cpu-other", identity),
        study_name("org/tiny-bert", HW.key, {**identity, "fingerprint": "abc124"}),
        study_name("org/tiny-bert", HW.key, {**identity, "metric_drop_ths": 0.01}),
    ):
        assert other != name
    # "~" marks a fresh study of a family; a name is never blank
    assert study_name("a~b c", HW.key, {}).startswith("a-b-c-")
    assert study_name("", HW.key, {}).startswith("model-")


def _factory_study(storage, resume=False):
    make = optuna_searcher_factory(
        storage, "f" * 16, {"metric": "cosine"}, model_name="org/tiny-bert", resume=resume
    )
    return make(HW, space())


@pytest.mark.parametrize("kind", ["sqlite-url", "sqlite-file", "journal-file", "object"])
def test_each_storage_kind_is_read_back_by_optuna_and_resumes(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "all.journal"))
    kinds: dict[str, tuple[Any, Any]] = {
        "sqlite-url": ("sqlite:///runs/tmp.db", "sqlite:///runs/tmp.db"),  # folder made
        "sqlite-file": (tmp_path / "studies.sqlite", f"sqlite:///{tmp_path}/studies.sqlite"),
        "journal-file": (tmp_path / "all.journal", optuna.storages.JournalStorage(journal)),
        "object": (optuna.storages.JournalStorage(journal),) * 2,
    }
    storage, readable = kinds[kind]
    searcher = _factory_study(storage)
    results = drive(searcher, max_tells=3)
    (name,) = optuna.get_all_study_names(readable)
    assert name == searcher.study.study_name and name.startswith(f"org/tiny-bert-{HW.key}-")
    study = optuna.load_study(study_name=name, storage=readable)
    assert study.metric_names == list(METRIC_NAMES) == ["p50_latency_s"]
    assert study.user_attrs["model"] == "org/tiny-bert"
    assert study.user_attrs["hardware"] == HW.key and study.user_attrs["metric"] == "cosine"
    assert len(study.trials) == 3
    assert study.best_value == min(r.latency.p50 for r in results if r.ok)
    assert _factory_study(storage, resume=True).resumed == 3
    fresh = _factory_study(storage)  # resume=False: a new study beside the stored one
    assert fresh.resumed == 0 and fresh.study.study_name.startswith(f"{name}~")


def test_a_folder_holds_one_journal_file_per_study_named_after_it(tmp_path):
    drive(_factory_study(tmp_path), max_tells=2)
    (path,) = tmp_path.glob("*.journal")
    assert path.name.startswith(f"org_tiny-bert-{HW.key}-")
    stored = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    (study,) = optuna.get_all_study_summaries(stored)
    assert study.study_name.startswith("org/tiny-bert-") and len(study.user_attrs) > 2
    assert _factory_study(tmp_path, resume=True).resumed == 2


def test_an_unreachable_database_is_a_storage_error_naming_it(tmp_path):
    (tmp_path / "x.db").write_text("this is not a database\n" * 200)
    with pytest.raises(StudyStorageError, match=r"cannot open the study storage 'sqlite:///"):
        OptunaSearcher(space(), storage=tmp_path / "x.db", name="s")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"op_code": 5, "worker_id": "w", "tri\n', "not JSON"),
        (b"\xff\xfe garbage\n", "not JSON"),
        (b"[1, 2, 3]\n", "JSON, but not an Optuna journal record"),
        (b"[" * 100_000 + b"\n", "nested more than 64 levels deep"),
    ],
)
def test_a_journal_damaged_in_the_middle_names_its_file_and_line(tmp_path, line, problem):
    path = tmp_path / "studies.journal"
    drive(OptunaSearcher(space(), storage=path, name="s"), max_tells=3)
    records = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*records[:2], line, *records[2:]]))
    with pytest.raises(StudyStorageError) as info:
        OptunaSearcher(space(), storage=path, name="s", resume=True)
    message = str(info.value)
    assert f"the Optuna journal {path} is damaged at line 3 ({problem}" in message
    assert f"mv '{path}' '{path}.damaged'" in message  # how to start fresh
    check_journal(tmp_path / "missing.journal")  # nothing to check: no error


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    path = tmp_path / "studies.journal"
    drive(OptunaSearcher(space(), storage=path, name="s"), max_tells=1)
    # a record whose user attribute is text full of brackets (and escaped quotes): valid
    text = '[{\\"' * 200
    record = {"op_code": 8, "worker_id": "w", "trial_id": 0, "user_attr": {"reason": text}}
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    check_journal(path)
    deep = len(path.read_bytes().splitlines()) + 1
    with path.open("a") as handle:  # one object nested 65 deep, as a whole line
        handle.write('{"a": ' * 65 + "1" + "}" * 65 + "\n")
        handle.write(json.dumps(record) + "\n")
    with pytest.raises(StudyStorageError) as info:
        check_journal(path)
    assert f"at line {deep} (nested more than 64 levels deep)" in str(info.value)
