"""Where a search's Optuna study lives and what it is called (imports optuna lazily).

One study per (model, hardware type, settings), named for the people and tools that read it
(optuna-dashboard): ``<model name>-<hardware key>-<hash>``, the hash covering the model's
fingerprint and the settings that change what "best" means, so that a resumed search finds its
own study and a different search never mixes into it. What ``study_storage`` may be:
:mod:`._storage`.
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
from typing import TYPE_CHECKING, Any

from speedster_dist.search._journal import StudyStorageError, open_journal
from speedster_dist.search._storage import (
    SQLITE_SUFFIXES,
    StudyStorage,
    check_storage,
    is_url,
    safe_url,
    sqlite_folder,
)

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

__all__ = ["METRIC_NAMES", "open_study", "study_name"]

# What each study minimises, named for optuna-dashboard and ``trials_dataframe``.
METRIC_NAMES = ("p50_latency_s",)
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")  # a study name as a file name
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._/-]+")  # a model name in a study name ("~" is ours)
_MAX_MODEL_NAME = 64


def study_name(model_name: str, hardware_key: str, identity: Mapping[str, Any]) -> str:
    """``<model name>-<hardware key>-<hash>``: 8 hex digits of the SHA-256 of ``identity``
    (the model's fingerprint and the search settings), JSON-encoded with sorted keys."""
    encoded = json.dumps(dict(identity), sort_keys=True, default=str)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:8]
    readable = _NAME_CHARS.sub("-", model_name).strip("-./")[:_MAX_MODEL_NAME] or "model"
    return f"{readable}-{hardware_key}-{digest}"


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
        storage = open_journal(folder / f"{latest}.journal")
        import optuna

        names = optuna.study.get_all_study_names(storage)
        return storage, names[-1] if names else name
    chosen = name if not existing else _fresh_name(name)
    return open_journal(folder / f"{_UNSAFE.sub('_', chosen)}.journal"), chosen


def _database(url: str) -> BaseStorage:
    """Optuna's RDBStorage of ``url`` (an SQLite file's folder is created first)."""
    from optuna.storages import RDBStorage

    folder = sqlite_folder(url)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        return RDBStorage(url)
    except Exception as exc:  # unreachable server, refused login, a file that is no database
        raise StudyStorageError(
            f"cannot open the study storage {safe_url(url)!r}: {type(exc).__name__}: "
            f"{str(exc)[:300]}"
        ) from exc


def _resolve(storage: StudyStorage, name: str, resume: bool) -> tuple[BaseStorage, str]:
    """The storage, and the name of the study to open in it."""
    from optuna.storages import BaseStorage, InMemoryStorage

    if storage is None:
        return InMemoryStorage(), name
    if isinstance(storage, BaseStorage):
        return storage, _pick(storage, name, resume)
    text = os.fspath(storage)
    check_storage(text)  # again: open_study has callers other than optimize_model
    if is_url(text):
        database = _database(text)
        return database, _pick(database, name, resume)
    path = Path(text).expanduser()
    if path.suffix in SQLITE_SUFFIXES:
        database = _database(f"sqlite:///{path}")
        return database, _pick(database, name, resume)
    if path.suffix and not path.is_dir():
        journal = open_journal(path)
        return journal, _pick(journal, name, resume)
    return _directory_storage(path, name, resume)


def _pick(storage: BaseStorage, name: str, resume: bool) -> str:
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
    torn record dropped, with a warning); one damaged anywhere else, a storage that cannot be
    opened, raise :class:`StudyStorageError`. The study's metric is named
    (:data:`METRIC_NAMES`) and ``attrs`` are written as its user attributes (for people and
    optuna-dashboard reading it).
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
    if study.metric_names is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRIC_NAMES))
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    return study
