"""The ``speedster-dist`` command: optimize, sweep, rebench, report, cluster.

Exit codes: 0 success; 1 the work failed (no winner, a sweep job or a learner failed);
2 wrong arguments or unreadable inputs; 3 ``rebench`` found a regression; 130 interrupted.
See docs/cli.md and docs/nightly.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from speedster_dist.cli import _inspect, _optimize, _rebench, _sweep
from speedster_dist.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    CliError,
    add_shared_options,
)
from speedster_dist.cli._json_output import print_document, stdout_to_stderr, wants_json
from speedster_dist.errors import ArtifactError, InputError
from speedster_dist.present import configure_logging

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXIT_USAGE",
    "build_parser",
    "main",
]


# The shared options each command uses (every command also takes --quiet, -v and --debug):
# a command lists only what it acts on, so ``report --help`` offers no --cluster.
_SHARED_OPTIONS: dict[str, tuple[str, ...]] = {
    "optimize": ("cluster", "quick_measure"),
    "sweep": ("cluster", "quick_measure"),
    "rebench": ("cluster", "quick_measure"),
    "report": (),
    "cluster": ("cluster",),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speedster-dist",
        description="Optimize models for every hardware type of a Ray cluster, and keep "
        "watching them: trial history, nightly re-benchmarks, reports.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _optimize.add_parser(sub)
    _sweep.add_parser(sub)
    _rebench.add_parser(sub)
    _inspect.add_parsers(sub)
    for name, command in sub.choices.items():
        add_shared_options(command, *_SHARED_OPTIONS.get(name, ()))
    return parser


def _fail(message: str, code: int) -> tuple[int, str]:
    print(f"speedster-dist: error: {message}", file=sys.stderr, flush=True)
    return code, message


def _run(args: argparse.Namespace) -> tuple[int, str | None]:
    """The command's exit code and, when it failed, the message it printed."""
    try:
        code: int = args.run(args)
        return code, None
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ArtifactError as exc:  # a damaged learner or kit: the work cannot be done
        return _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted; every trial that finished is in the history", EXIT_INTERRUPTED)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        code = EXIT_USAGE if isinstance(exc, InputError) else EXIT_FAILED
        return _fail(f"{type(exc).__name__}: {exc}" if code == EXIT_FAILED else str(exc), code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the console script exits with it).

    Logs and warnings go to stderr (``-v``, ``--debug``); with ``--json`` stdout holds one
    JSON document and nothing else (docs/cli.md)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args.document = {}  # what --json prints: each command fills it in as it goes
    undo = configure_logging(args.verbose, args.debug)
    try:
        if not wants_json(args):
            return _run(args)[0]
        with stdout_to_stderr():
            code, error = _run(args)
        print_document(args, code, args.document, error)
        return code
    finally:
        undo()
