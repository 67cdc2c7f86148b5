import json
import threading
import warnings
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from speedster_dist.records import TrialResult, TrialStatus
from speedster_dist.results import (
    HISTORY_SCHEMA,
    LOAD_COLUMNS,
    TRIAL_SCHEMA,
    HistoryTarget,
    RunInfo,
    describe_model,
    library_versions,
    new_run_id,
    open_history,
    read_history,
)
from speedster_dist.testing.models import tiny_bert

from .conftest import DAY0, confirm, run, trial

CPU, GPU = "cpu-intel-xeon-avx512vnni-8c", "gpu-nvidia-l4-24gb-sm89"


def test_two_runs_are_written_partitioned_and_read_back_in_time_order(history):
    first = run(history, "run-1", batch=4)
    first.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    minute = timedelta(minutes=1)
    first.append(
        trial(
            "onnxruntime", "int8", CPU, 0.004, drop=0.012, technique="dynamic", when=DAY0 + minute
        )
    )
    first.append(
        trial(
            "openvino", "int8", CPU, status=TrialStatus.REJECTED, drop=0.3, when=DAY0 + 2 * minute
        )
    )
    second = run(history, "run-2", kind="rebench")
    later = DAY0 + timedelta(days=1)
    second.append(trial("tensorrt", "fp16", GPU, when=later, reason="RuntimeError: no GPU"))
    second.append(
        trial(
            "onnxruntime",
            "int8",
            CPU,
            0.005,
            when=later + timedelta(minutes=1),
            knobs={"threads": 4},
        ),
        "winner",
    )

    rows = read_history(history).to_pylist()
    assert [r["run_id"] for r in rows] == ["run-1"] * 3 + ["run-2"] * 2
    base, int8, rejected, failed, winner = rows
    assert base["role"] == "baseline" and base["is_baseline"] and base["backend"] == "torch"
    assert base["latency_p50_s"] == 0.010 and base["latency_count"] == 64
    assert base["latency_p90_s"] == pytest.approx(0.011)
    assert base["throughput"] == pytest.approx(4 / 0.010)  # batch 4 per call
    assert int8["technique"] == "dynamic" and int8["metric_drop"] == 0.012
    assert rejected["status"] == "rejected" and rejected["latency_p50_s"] is None
    assert rejected["metric_drop"] == 0.3 and rejected["role"] == "candidate"
    assert failed["reason"] == "RuntimeError: no GPU" and failed["hardware_type"] == GPU
    assert winner["role"] == "winner" and json.loads(winner["knobs"]) == {"threads": 4}
    assert (base["date"], failed["date"]) == ("2024-03-01", "2024-03-02")
    assert base["time"] == DAY0 and base["model_name"] == "bert-base"
    assert base["build_s"] == 1.5 and base["artifact_mb"] == 12.0
    assert json.loads(base["settings"]) == {"metric_drop_ths": 0.05}
    assert json.loads(base["versions"])["python"]
    folders = sorted(p.relative_to(history).as_posix() for p in history.glob("*/*"))
    assert folders == [
        f"date=2024-03-01/hardware_type={CPU}",
        f"date=2024-03-02/hardware_type={CPU}",
        f"date=2024-03-02/hardware_type={GPU}",
    ]


def test_plain_pyarrow_reads_the_dataset(history):
    writer = run(history, "run-1")
    writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    writer.append(trial("torch", "fp32", GPU, 0.002, baseline=True))
    table = ds.dataset(history, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 2
    assert sorted(table.column("hardware_type").to_pylist()) == [CPU, GPU]
    assert pq.read_table(history).num_rows == 2
    one = next(history.rglob("*.parquet"))
    assert pq.read_schema(one).metadata[b"speedster_dist.history_schema"] == b"5"
    assert set(pq.read_schema(one).names) == set(TRIAL_SCHEMA.names)
    assert set(HISTORY_SCHEMA.names) == set(TRIAL_SCHEMA.names) | {"date", "hardware_type"}


def test_a_file_left_by_a_killed_write_is_ignored(history):
    writer = run(history, "run-1")
    path = writer.append(trial("torch", "fp32", CPU, 0.010, baseline=True))
    torn = path.parent / ".20240301T020000-run-1-00009.parquet.tmp"
    torn.write_bytes(b"PAR1 torn")
    assert read_history(history).num_rows == 1
    assert pq.read_table(history).num_rows == 1
    assert [p.name for p in history.rglob(".*")] == [torn.name]  # the writer left none


def test_odd_hardware_keys_round_trip_through_folder_names(history):
    key = "cpu-x86/64-custom=1%"
    run(history, "run-1").append(trial("torch", "fp32", key, 0.01, baseline=True))
    assert read_history(history).column("hardware_type").to_pylist() == [key]
    assert "/" not in next(history.glob("*/*")).name.removeprefix("hardware_type=")


def test_concurrent_appends_never_collide(history):
    writer = run(history, "run-1")

    def append(i):
        writer.append(trial("fake", "fp32", CPU, 0.001 * (i + 1), knobs={"i": i}))

    threads = [threading.Thread(target=append, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_history(history).to_pylist()
    assert sorted(json.loads(r["knobs"])["i"] for r in rows) == list(range(16))
    assert writer.written == 16 and writer.failures == 0


def test_a_write_failure_warns_and_never_raises(history):
    writer = run(history, "run-1")
    (history / "date=2024-03-01").write_text("a file where a folder should be")
    seen: list[TrialResult] = []
    writer.on_write = seen.append
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert writer.append(trial("torch", "fp32", CPU, 0.01)) is None
    assert writer.failures == 1 and "could not write a trial" in str(caught[0].message)
    assert len(seen) == 1  # progress displays still hear about the trial


def test_older_files_without_a_new_column_read_with_nulls(history):
    folder = history / "date=2024-03-01" / f"hardware_type={CPU}"
    folder.mkdir(parents=True)
    old = TRIAL_SCHEMA.remove(TRIAL_SCHEMA.get_field_index("host"))
    row = {name: None for name in old.names} | {"run_id": "old", "time": DAY0, "status": "failed"}
    pq.write_table(pa.Table.from_pylist([row], schema=old), folder / "old.parquet")
    run(history, "new").append(trial("torch", "fp32", CPU, 0.01, when=DAY0 + timedelta(hours=1)))
    rows = read_history(history).to_pylist()
    assert [r["run_id"] for r in rows] == ["old", "new"]
    assert rows[0]["host"] is None and rows[1]["host"]


def test_the_machine_load_of_each_trial_is_kept_and_version_1_files_read_as_null(history):
    folder = history / "date=2024-03-01" / f"hardware_type={CPU}"
    folder.mkdir(parents=True)
    v1 = pa.schema([f for f in TRIAL_SCHEMA if f.name not in LOAD_COLUMNS])
    row = {name: None for name in v1.names} | {"run_id": "v1", "time": DAY0, "status": "failed"}
    pq.write_table(pa.Table.from_pylist([row], schema=v1), folder / "v1.parquet")
    load = (("loadavg_before", 1.5), ("loadavg_after", 2.25), ("others_cpu_share", 0.4))
    measured = replace(
        trial("torch", "fp32", CPU, 0.01, when=DAY0 + timedelta(hours=1)), extra=load
    )
    run(history, "v2").append(measured)
    rows = read_history(history).to_pylist()
    assert [r["run_id"] for r in rows] == ["v1", "v2"]
    assert all(rows[0][name] is None for name in LOAD_COLUMNS)
    assert (rows[1]["loadavg_before"], rows[1]["loadavg_after"]) == (1.5, 2.25)
    assert rows[1]["others_cpu_share"] == 0.4
    assert rows[1]["steal_share"] is None  # not measured (no /proc/stat): null, never 0


def test_missing_history_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trial history"):
        read_history(tmp_path / "nothing")


def test_open_history_names_the_run(tmp_path):
    model = tiny_bert()
    writer = open_history(tmp_path / "h", model, "abc", 2, {"metric": "numeric_precision"})
    assert writer.run.kind == "optimize" and writer.run.model_name == "BertModel"
    assert writer.run.model_fingerprint == "abc" and writer.run.batch_size == 2
    target = HistoryTarget(
        tmp_path / "h", run_id="night-1", kind="rebench", model_name="m", learner="l"
    )
    named = open_history(target, model, "abc", 1, {})
    assert (named.run.run_id, named.run.kind, named.run.learner) == ("night-1", "rebench", "l")
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not really onnx, but bytes to hash")
    from_file = open_history(tmp_path / "h", onnx, "", 1, {})
    assert from_file.run.model_name == "model.onnx" and len(from_file.run.model_fingerprint) == 16


def test_describe_model_prefers_the_hugging_face_name():
    class Named:
        name_or_path = "/models/minilm-l6"

    assert describe_model(Named()) == "minilm-l6"
    assert describe_model(Path("/x/model.onnx")) == "model.onnx"
    assert describe_model(object()) == "object"


def test_run_info_is_validated_and_ids_sort_by_time():
    with pytest.raises(ValueError, match="run kind"):
        RunInfo("r", "nightly", "m")
    with pytest.raises(ValueError, match="batch_size"):
        RunInfo("r", "optimize", "m", batch_size=0)
    assert new_run_id(DAY0) < new_run_id(DAY0 + timedelta(seconds=1))
    assert "torch" in library_versions() and "pyarrow" not in library_versions()


def test_a_confirmation_is_one_row_per_re_timed_trial_next_to_it(history):
    writer = run(history, "run-1", batch=4)
    base = trial("torch", "fp32", CPU, 0.010, baseline=True)
    best = trial("onnxruntime", "int8", CPU, 0.004, technique="dynamic", knobs={"threads": 2})
    writer.append(base)
    writer.append(best)
    seen: list[TrialResult] = []
    writer.on_write = seen.append
    paths = confirm(writer, [(base, [0.011, 0.009, 0.010]), (best, [0.005, 0.003, 0.004])])
    assert len(paths) == 2 and seen == []  # not trials: no progress callback
    rows = read_history(history).to_pylist()
    trials = {r["backend"]: r for r in rows if r["role"] != "confirmed"}
    confirmed = {r["backend"]: r for r in rows if r["role"] == "confirmed"}
    assert set(confirmed) == {"torch", "onnxruntime"} and confirmed["torch"]["is_baseline"]
    mine, searched = confirmed["onnxruntime"], trials["onnxruntime"]
    same = ("run_id", "run_kind", "hardware_type", "precision", "technique", "knobs", "metric_drop")
    assert all(mine[k] == searched[k] for k in same)
    assert (mine["latency_p50_s"], mine["confirm_low_s"], mine["confirm_high_s"]) == (
        0.004,
        0.003,
        0.005,
    )
    assert mine["confirm_rounds"] == 3 and json.loads(mine["confirm_round_p50s"]) == [
        0.005,
        0.003,
        0.004,
    ]
    assert mine["throughput"] == 4 / 0.004 and mine["latency_p90_s"] is None
    assert (mine["node_id"], mine["steal_share"], mine["loadavg_before"]) == (
        "node-confirm",
        0.01,
        None,
    )
    assert searched["confirm_rounds"] is None and searched["confirm_round_p50s"] is None


def test_a_confirmed_contender_without_its_trial_is_left_out(history):
    writer = run(history, "run-1")
    base = trial("torch", "fp32", CPU, 0.010, baseline=True)
    failed = trial("openvino", "int8", CPU)  # never completed: nothing it could confirm
    assert len(confirm(writer, [(base, [0.01]), (failed, [0.02])])) == 1
