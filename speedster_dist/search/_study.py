"""Where a search's Optuna study lives and what it is called (imports optuna lazily).

One study per (model, hardware type, settings): the name is derived from the model's
fingerprint, the hardware-type key and a hash of the settings that change what "best" means,
so that a resumed search finds its own study and a different search never mixes into it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

__all__ = ["StudyStorage", "open_study", "repair_journal", "study_name"]

# None: in memory (not resumable); a URL Optuna accepts ("sqlite:///x.db", "postgresql://...");
# a path: a directory (one journal file per study), "*.db"/"*.sqlite" (SQLite) or any other
# file (one Optuna journal file shared by studies); or an Optuna storage object.
StudyStorage = Union[str, "os.PathLike[str]", "BaseStorage", None]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")


def study_name(model_fingerprint: str, hardware_key: str, settings: Mapping[str, Any]) -> str:
    """``<fingerprint>-<hardware key>-<settings hash>``; the settings are JSON-encoded, sorted."""
    encoded = json.dumps(dict(settings), sort_keys=True, default=str)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:12]
    return f"{model_fingerprint[:16] or 'model'}-{hardware_key}-{digest}"


def repair_journal(path: Path) -> bool:
    """Drop a torn last record of an Optuna journal file (a process killed mid-write);
    True when one was dropped. Optuna skips a torn tail when reading, but the next record
    would be appended to it, making the line (and every later read) invalid."""
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
        try:
            json.loads(data[start:end])
            return end
        except ValueError:  # a terminated but garbled record: cut it too
            end = start
    return 0


def _journal(path: Path) -> BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    return JournalStorage(JournalFileBackend(str(path)))


def _fresh_name(name: str) -> str:
    """A new study name of the family ``name``: later ones sort after earlier ones."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{name}~{stamp}-{uuid.uuid4().hex[:4]}"


def _family(names: Iterable[str], name: str) -> list[str]:
    """The studies of family ``name`` (``name`` itself and its fresh variants), oldest first."""
    return sorted(n for n in names if n == name or n.startswith(f"{name}~"))


def _directory_storage(folder: Path, name: str, resume: bool) -> tuple[BaseStorage, str]:
    """One journal file per study in ``folder``: the latest of the family to resume, else a
    new file (the family's first, or a fresh variant)."""
    safe = _UNSAFE.sub("_", name)
    existing = _family((p.stem for p in folder.glob(f"{safe}*.journal")), safe)
    if resume and existing:
        latest = existing[-1]
        storage = _journal(folder / f"{latest}.journal")
        import optuna

        names = optuna.study.get_all_study_names(storage)
        return storage, names[-1] if names else name
    chosen = name if not existing else _fresh_name(name)
    return _journal(folder / f"{_UNSAFE.sub('_', chosen)}.journal"), chosen


def _resolve(storage: StudyStorage, name: str, resume: bool) -> tuple[BaseStorage | str, str]:
    """The storage, and the name of the study to open in it."""
    from optuna.storages import BaseStorage, InMemoryStorage

    if storage is None:
        return InMemoryStorage(), name
    if isinstance(storage, BaseStorage):
        return storage, _pick(storage, name, resume)
    text = os.fspath(storage)
    if "://" in text:
        return text, _pick(text, name, resume)
    path = Path(text).expanduser()
    if path.suffix in _SQLITE_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
        return url, _pick(url, name, resume)
    if path.suffix and not path.is_dir():
        journal = _journal(path)
        return journal, _pick(journal, name, resume)
    return _directory_storage(path, name, resume)


def _pick(storage: BaseStorage | str, name: str, resume: bool) -> str:
    """In a shared storage: the latest study of the family to resume, else a new name."""
    import optuna

    family = _family(optuna.study.get_all_study_names(storage), name)
    if resume and family:
        return family[-1]
    return name if not family else _fresh_name(name)


def open_study(
    name: str,
    storage: StudyStorage,
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
    attrs: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Open a study of family ``name`` (minimising latency) in ``storage``.

    ``resume`` True continues the latest study of the family when there is one. False starts
    a new study: ``name`` itself the first time, then ``name~<UTC time>-<random>``; nothing
    stored is ever deleted, so two runs of one model at once never destroy each other's
    study. A journal whose last record was torn by a killed process is repaired first (the
    torn record dropped, with a warning). ``attrs`` are written as the study's user
    attributes (for people reading it).
    """
    import optuna

    resolved, chosen = _resolve(storage, name, resume)
    for _ in range(3):
        try:
            study = optuna.create_study(
                storage=resolved,
                sampler=sampler,
                study_name=chosen,
                direction="minimize",
                load_if_exists=resume,
            )
            break
        except optuna.exceptions.DuplicatedStudyError:  # a neighbour took the name just now
            chosen = _fresh_name(name)
    else:  # pragma: no cover - three fresh names in a row cannot all be taken
        raise RuntimeError(f"could not create a study named after {name!r}")
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    return study
