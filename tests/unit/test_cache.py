"""Cache entries: reused only when this user's, private and unchanged; never deleted."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from speedster_dist import cache
from speedster_dist.cache import (
    CACHE_ENV,
    ENTRY_RECORD,
    cache_dir,
    entry_problem,
    file_sha256,
    find_entry,
    publish_entry,
)

KEY = "model-abc-opset17"
ROOT_ONLY = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root"
)
OTHER_UID = 54321


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return cache_dir("onnx")


def _write(content: bytes = b"graph") -> Callable[[Path], None]:
    def fill(files: Path) -> None:
        (files / "model.onnx").write_bytes(content)
        (files / "sub").mkdir()
        (files / "sub" / "weights.bin").write_bytes(b"w" * 100)

    return fill


def test_an_entry_is_written_whole_with_its_checksums_and_found_again(folder: Path) -> None:
    files = publish_entry(folder, KEY, _write())
    assert files == folder / KEY / "files"
    record = json.loads((folder / KEY / ENTRY_RECORD).read_text())["files"]
    assert record == {
        "model.onnx": file_sha256(files / "model.onnx"),
        "sub/weights.bin": file_sha256(files / "sub" / "weights.bin"),
    }
    assert (folder / KEY).stat().st_mode & 0o777 == 0o700
    assert find_entry(folder, KEY) == files
    assert [p.name for p in folder.iterdir()] == [KEY], "no staging folder is left"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda e: (e / "files/model.onnx").write_bytes(b"planted"), id="altered"),
        pytest.param(lambda e: (e / "files/extra.onnx").write_bytes(b"x"), id="extra-file"),
        pytest.param(lambda e: (e / "files/sub/weights.bin").unlink(), id="missing-file"),
        pytest.param(lambda e: e.chmod(0o777), id="entry-0777"),
        pytest.param(lambda e: (e / "files").chmod(0o777), id="files-0777"),
        pytest.param(lambda e: (e / "files/model.onnx").chmod(0o666), id="file-0666"),
        pytest.param(lambda e: (e / ENTRY_RECORD).unlink(), id="no-record"),
        pytest.param(lambda e: (e / ENTRY_RECORD).write_text("[1]"), id="bad-record"),
        pytest.param(
            lambda e: (e / "files/link.onnx").symlink_to(e / "files/model.onnx"), id="link"
        ),
    ],
)
def test_a_damaged_or_planted_entry_is_not_reused_nor_deleted(
    folder: Path, tamper: Callable[[Path], object], caplog: pytest.LogCaptureFixture
) -> None:
    publish_entry(folder, KEY, _write())
    planted = folder / KEY
    tamper(planted)
    before = sorted(p.relative_to(planted).as_posix() for p in planted.rglob("*"))
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        assert find_entry(folder, KEY) is None
    assert "cache entry not reused" in caplog.text
    fresh = publish_entry(folder, KEY, _write())
    assert fresh == folder / f"{KEY}~1" / "files"  # a fresh folder beside it
    assert find_entry(folder, KEY) == fresh
    assert sorted(p.relative_to(planted).as_posix() for p in planted.rglob("*")) == before


@ROOT_ONLY
@pytest.mark.parametrize("what", ["", "files", "files/model.onnx", ENTRY_RECORD])
def test_an_entry_owned_by_another_user_is_not_reused(folder: Path, what: str) -> None:
    publish_entry(folder, KEY, _write())
    os.chown(folder / KEY / what, OTHER_UID, OTHER_UID)
    problem = entry_problem(folder / KEY)
    assert problem is not None and f"belongs to another user (uid {OTHER_UID})" in problem
    assert find_entry(folder, KEY) is None
    assert publish_entry(folder, KEY, _write()) == folder / f"{KEY}~1" / "files"


def test_an_entry_published_first_by_another_process_is_used(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fill_while_another_publishes(files: Path) -> None:
        _write()(files)
        other = files.parent.parent / KEY
        other.mkdir(mode=0o700)
        (other / "files").mkdir(mode=0o700)
        _write()(other / "files")
        cache._record(other)

    assert publish_entry(folder, KEY, fill_while_another_publishes) == folder / KEY / "files"
    assert [p.name for p in folder.iterdir()] == [KEY], "our staging copy is removed"


def test_no_free_name_is_an_oserror(folder: Path) -> None:
    for name in [KEY, *(f"{KEY}~{n}" for n in range(1, 8))]:
        (folder / name).mkdir()
        (folder / name / "x").write_text("planted")
    with pytest.raises(OSError, match="no free name left"):
        publish_entry(folder, KEY, _write())
    assert len(list(folder.iterdir())) == 8


def test_a_failing_writer_leaves_nothing(folder: Path) -> None:
    def broken(files: Path) -> None:
        (files / "half.onnx").write_bytes(b"half")
        raise RuntimeError("exporter failed")

    with pytest.raises(RuntimeError, match="exporter failed"):
        publish_entry(folder, KEY, broken)
    assert list(folder.iterdir()) == []


def test_a_cache_others_may_write_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shared"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    monkeypatch.setenv(CACHE_ENV, str(root))
    with pytest.raises(PermissionError, match="writable by other users"):
        cache_dir("onnx")
