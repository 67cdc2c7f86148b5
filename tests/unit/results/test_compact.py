"""Compacting the history: one file per partition, and a compaction killed after any of its
steps loses no trial and counts none twice (the next run finishes the job)."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from speedster_dist.results import compact_history, live_files, read_history

from .fleet import fleet


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the step runs (BaseException: no handler eats it)."""


def _key(table):
    rows = table.to_pylist()
    return sorted(
        (r["run_id"], str(r["time"]), r["backend"], r["precision"], r["hardware_type"], r["role"])
        for r in rows
    )


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


def test_each_partition_becomes_one_file_readable_as_one_dataset(tmp_path):
    history = tmp_path / "history"
    fleet(history)
    before = read_history(history)
    files_before = len(_files(history))
    stats = compact_history(history)
    after = read_history(history)
    assert _key(after) == _key(before) and after.num_rows == before.num_rows
    partitions = {f.rsplit("/", 1)[0] for f in _files(history)}
    assert len(_files(history)) == len(partitions) < files_before  # one file per partition
    assert (
        stats.files_merged
        == files_before
        - sum(1 for p in partitions if len([f for f in _files(history) if f.startswith(p)]) == 1)
        or stats.files_merged > 0
    )
    # Plain pyarrow reads the compacted history as one dataset, nothing doubled.
    plain = ds.dataset(history, format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == before.num_rows
    assert compact_history(history).partitions == 0  # nothing left to merge


@pytest.mark.parametrize("kill_at", ["written", "committed", "removed"])
def test_a_compaction_killed_after_any_step_loses_nothing_and_doubles_nothing(tmp_path, kill_at):
    history = tmp_path / "history"
    fleet(history)
    before = _key(read_history(history))

    def step(name, path):
        if name == kill_at:
            raise Killed(f"killed after {name} {path.name}")

    with pytest.raises(Killed):
        compact_history(history, step)
    # Whatever is on disk now (a hidden merge, or a merge next to some of its sources):
    assert _key(read_history(history)) == before
    assert len(live_files(history)) <= len(_files(history))
    # The next run cleans up and finishes; then plain readers see every row exactly once.
    compact_history(history)
    assert _key(read_history(history)) == before
    assert not list(history.rglob(".*.tmp"))
    plain = ds.dataset(history, format="parquet", partitioning="hive").to_table()
    assert _key(plain) == before


def test_trials_appended_after_a_compaction_are_merged_by_the_next(tmp_path):
    from .conftest import run, trial

    history = tmp_path / "history"
    fleet(history)
    compact_history(history)
    writer = run(history, "late-run")
    writer.append(trial("torch", "fp32", "cpu-intel-xeon-avx512vnni-8c", 0.01))
    before = _key(read_history(history))
    compact_history(history)
    assert _key(read_history(history)) == before
    folders = {p.parent for p in history.rglob("*.parquet")}
    assert all(len(list(f.glob("*.parquet"))) == 1 for f in folders)
