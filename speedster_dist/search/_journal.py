"""Optuna journal files: repaired when a killed run tore their last record, refused with a
clear error when damaged anywhere else (imports optuna lazily).

A journal is one JSON record per line, appended by every process that writes the study.
Optuna skips a torn last line when reading, but raises a bare ``JSONDecodeError`` for a bad
line anywhere before the end, and the next record appended to a torn tail would make that
line (and every later read) invalid.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedster_dist.errors import StudyStorageError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = ["StudyStorageError", "check_journal", "open_journal", "repair_journal"]


def repair_journal(path: Path) -> bool:
    """Drop a torn last record of an Optuna journal file (a process killed mid-write);
    True when one was dropped."""
    from optuna.storages.journal import JournalFileOpenLock

    if not path.is_file() or path.stat().st_size == 0:
        return False
    lock = JournalFileOpenLock(str(path))
    lock.acquire()  # the lock Optuna's writers take: nobody appends while we cut
    try:
        data = path.read_bytes()
        keep = _complete_prefix(data)
        if keep == len(data):
            return False
        with open(path, "r+b") as handle:
            handle.truncate(keep)
    finally:
        lock.release()
    warnings.warn(
        f"the study journal {path} ended with a torn record (a run killed while writing): "
        f"dropped its last {len(data) - keep} bytes and resumed from the rest",
        stacklevel=3,
    )
    return True


def _complete_prefix(data: bytes) -> int:
    """Length of ``data`` up to its last complete, valid JSON line."""
    end = len(data)
    while end > 0:
        if data[end - 1 : end] != b"\n":  # an unterminated tail: cut back to the last newline
            end = data.rfind(b"\n", 0, end) + 1
            continue
        start = data.rfind(b"\n", 0, end - 1) + 1
        if _parse(data[start:end])[1] is None:
            return end
        end = start  # a terminated but garbled record: cut it too
    return 0


# Optuna's records nest a few levels; deeper lines are refused before json.loads, whose
# recursion would reach the interpreter's limit (and run finalizers at that depth).
_MAX_DEPTH = 64
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = frozenset(b"[{"), frozenset(b"]}"), ord('"'), ord("\\")


def _depth(line: bytes) -> int:
    """How deep the arrays and objects of ``line`` nest (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if escaped:
            escaped = False
        elif in_string:
            escaped = byte == _BACKSLASH
            in_string = byte != _QUOTE
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def _parse(line: bytes) -> tuple[Any, str | None]:
    """The JSON value of ``line``, or why it is not one."""
    # Counting brackets is fast; the exact depth is only worked out for lines with many.
    if line.count(b"[") + line.count(b"{") > _MAX_DEPTH and _depth(line) > _MAX_DEPTH:
        return None, f"nested more than {_MAX_DEPTH} levels deep"
    try:
        return json.loads(line), None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, a number too long to read
        return None, f"not JSON: {exc}"


def _record_problem(line: bytes) -> str | None:
    """Why ``line`` is not an Optuna journal record; None when it is one."""
    record, problem = _parse(line)
    if problem is None and (not isinstance(record, dict) or "op_code" not in record):
        return "JSON, but not an Optuna journal record (no op_code)"
    return problem


def check_journal(path: Path) -> None:
    """Raise :class:`StudyStorageError` naming the first line of ``path`` that is not a
    journal record (after :func:`repair_journal` has dropped a torn tail)."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            problem = _record_problem(line)
            if problem is not None:
                raise StudyStorageError(
                    f"the Optuna journal {path} is damaged at line {number} ({problem[:200]}); "
                    "Optuna cannot read the studies it holds past that line. Move the file "
                    f"aside to start fresh (mv '{path}' '{path}.damaged'), or give another "
                    "study_storage (--study-storage)"
                )


def open_journal(path: Path) -> BaseStorage:
    """The Optuna storage of the journal file ``path`` (created with its folder when missing),
    repaired or refused first."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    check_journal(path)
    return JournalStorage(JournalFileBackend(str(path)))
