"""``--json``: one JSON document on stdout, everything else on stderr.

While a command runs with ``--json``, whatever would reach stdout (the summary, the tables,
the prints of a library) goes to stderr: ``sys.stdout`` is redirected, and so is file
descriptor 1 (where a C library or a child process writes). When the
command ends, the CLI prints its document (:func:`speedster_dist.fleet.document`) on the
real stdout, also when it failed (with the error): a script reads one document either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from speedster_dist.fleet import document

__all__ = ["print_document", "stdout_to_stderr", "wants_json"]


def wants_json(args: argparse.Namespace) -> bool:
    """``--json`` (``optimize``, ``sweep``, ``cluster``) or ``--json -`` (``rebench``)."""
    value = getattr(args, "json", None)
    return value is True or value == "-"


def _flush() -> None:
    for stream in (sys.stdout, sys.__stdout__, sys.stderr, sys.__stderr__):
        if stream is not None:
            stream.flush()


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to stdout inside goes to stderr: ``sys.stdout``, and file
    descriptor 1 (a C library's or a child process's writes) onto descriptor 2. Both are as
    before after."""
    _flush()
    saved = os.dup(1) if _open(1) and _open(2) else None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def print_document(
    args: argparse.Namespace, code: int, body: dict[str, Any], error: str | None
) -> None:
    """The command's document on stdout (one JSON object, then a newline)."""
    text = json.dumps(document(args.command, code, body, error), indent=2, default=str)
    print(text, flush=True)
