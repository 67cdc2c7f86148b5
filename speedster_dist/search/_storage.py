"""What ``study_storage`` may be, checked before any trial (imports optuna lazily).

The forms Optuna's users know, plus a folder:

- a database URL, as ``optuna.create_study(storage=...)`` takes it (``sqlite:///studies.db``,
  ``postgresql://user@host/db``, ``mysql+pymysql://...``): an ``optuna.storages.RDBStorage``;
- a file path: a journal file holding every study (``JournalStorage`` with a
  ``JournalFileBackend``), or SQLite for ``*.db`` / ``*.sqlite`` / ``*.sqlite3``;
- a folder (an existing one, or a path without a suffix): one journal file per study;
- an ``optuna.storages.BaseStorage`` object, used as it is.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from speedster_dist.search._journal import StudyStorageError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = [
    "SQLITE_SUFFIXES",
    "StudyStorage",
    "anchor_storage",
    "check_storage",
    "is_url",
    "safe_url",
    "sqlite_folder",
]

# None: in memory (not resumable); see the module's docstring for the rest.
StudyStorage = Union[str, "os.PathLike[str]", "BaseStorage", None]

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_FORMS = (
    "give a database URL (sqlite:///studies.db, postgresql://user@host/db), a journal file "
    "(studies.journal), a folder (one journal file per study) or an optuna.storages object"
)
# "sqlite:/x.db": a URL whose slashes were lost (a path join, a shell), not a relative path.
_MANGLED_URL = re.compile(r"^(sqlite|postgres(ql)?|mysql|mariadb|oracle|mssql)(\+\w+)?:(?!//)")


def is_url(text: str) -> bool:
    """Whether ``text`` is a storage URL rather than a path."""
    return "://" in text


def anchor_storage(value: str, base: Path) -> str:
    """``value`` as given in a file found in ``base`` (a sweep YAML): a relative path is
    relative to ``base``; a URL is kept as written (a relative SQLite path in a URL is
    relative to the working directory, as Optuna reads it)."""
    return value if is_url(value) else str(base / value)


def check_storage(value: Any) -> StudyStorage:
    """``value`` if it is a storage Optuna can open, else :class:`StudyStorageError` saying
    why. Touches nothing: no file is created, no database is connected to."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        if not isinstance(text, str) or not text.strip():
            raise StudyStorageError(f"study_storage must not be empty, got {value!r}; {_FORMS}")
        if is_url(text):
            _check_url(text)
        elif _MANGLED_URL.match(text):
            scheme = text.split(":", 1)[0]
            example = (
                "sqlite:///studies.db (three slashes and a relative path, four for an absolute one)"
                if scheme.startswith("sqlite")
                else f"{scheme}://user@host/database"
            )
            raise StudyStorageError(
                f"study_storage {text!r} looks like a URL that lost its slashes; write it as "
                f"Optuna does, e.g. {example}"
            )
        return value
    optuna = sys.modules.get("optuna")  # a storage object means the caller imported optuna
    if optuna is not None and isinstance(value, optuna.storages.BaseStorage):
        return value
    raise StudyStorageError(f"study_storage must be a URL, a path or None, got {value!r}; {_FORMS}")


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _check_url(url: str) -> None:
    """A URL SQLAlchemy (hence Optuna's RDBStorage) has a dialect and a driver for."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        dialect = make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        raise StudyStorageError(
            f"study_storage {safe_url(url)!r}: Optuna cannot open a {scheme!r} URL ({exc}); "
            f"{_FORMS}"
        ) from None
    # SQLAlchemy 2 loads a dialect's driver with import_dbapi(), 1.4 (Optuna's floor) dbapi().
    load_driver: Any = getattr(dialect, "import_dbapi", None) or dialect.dbapi
    try:
        load_driver()
    except ImportError as exc:
        raise StudyStorageError(
            f"study_storage {safe_url(url)!r} needs the database driver {dialect.driver!r}, "
            f"which is not installed ({exc}); install the package that provides it (for "
            "PostgreSQL: pip install 'psycopg[binary]') or use sqlite:///studies.db"
        ) from None


def sqlite_folder(url: str) -> Path | None:
    """The folder of an SQLite URL's database file (None: another database, or in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):  # sqlite's URI form: leave it to sqlite
        return None
    return Path(database).expanduser().parent
