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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

__all__ = ["StudyStorage", "open_study", "study_name"]

# None: in memory (not resumable); a URL Optuna accepts ("sqlite:///x.db", "postgresql://...");
# a path: a directory (one journal file per study), "*.db"/"*.sqlite" (SQLite) or any other
# file (one Optuna journal file shared by studies); or an Optuna storage object.
StudyStorage = Union[str, "os.PathLike[str]", "BaseStorage", None]

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def study_name(model_fingerprint: str, hardware_key: str, settings: Mapping[str, Any]) -> str:
    """``<fingerprint>-<hardware key>-<settings hash>``; the settings are JSON-encoded, sorted."""
    encoded = json.dumps(dict(settings), sort_keys=True, default=str)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:12]
    return f"{model_fingerprint[:16] or 'model'}-{hardware_key}-{digest}"


def _journal(path: Path) -> BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _resolve(storage: StudyStorage, name: str, resume: bool) -> BaseStorage | str:
    from optuna.storages import BaseStorage, InMemoryStorage

    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        return storage
    text = os.fspath(storage)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.suffix in _SQLITE_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if path.suffix and not path.is_dir():
        return _journal(path)
    study_file = path / f"{_UNSAFE.sub('_', name)}.journal"
    if not resume:
        study_file.unlink(missing_ok=True)  # starting over: the old log is not replayed
    return _journal(study_file)


def open_study(
    name: str,
    storage: StudyStorage,
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
    attrs: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Open study ``name`` (minimising latency) in ``storage``.

    ``resume`` True continues a study of that name when there is one; False deletes it and
    starts over. ``attrs`` are written as the study's user attributes (for people reading it).
    """
    import optuna

    resolved = _resolve(storage, name, resume)
    if not resume and name in optuna.study.get_all_study_names(resolved):
        optuna.delete_study(study_name=name, storage=resolved)
    study = optuna.create_study(
        storage=resolved,
        sampler=sampler,
        study_name=name,
        direction="minimize",
        load_if_exists=True,
    )
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    return study
