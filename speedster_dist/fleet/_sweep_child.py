"""One sweep job in its own driver process (``python -m speedster_dist.fleet._sweep_child``).

The parent (:func:`speedster_dist.fleet.run_sweep`) writes the job as JSON to this process's
stdin; the process joins the parent's Ray cluster, runs the job (learner, kit, history) and
reports on stdout, one event per line, prefixed with :data:`EVENT_PREFIX`: every trial as it
finishes (``trial``, with :func:`~speedster_dist.fleet.trial_json`'s fields), then ``done``
with the winners (:func:`~speedster_dist.fleet.winner_json` documents), or ``failed`` with
the error. Its logs go to stderr at the sweep's ``-v`` level. Any other output
(the search summary) is passed on by the parent. A crash here (a segfault, ``os._exit``)
ends this job only.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from speedster_dist.fleet._documents import trial_json, winner_json
from speedster_dist.fleet._jobs import JobSpec, run_job
from speedster_dist.present import configure_logging
from speedster_dist.records import TrialResult

__all__ = ["EVENT_PREFIX", "job_from_json", "job_to_json", "main"]

EVENT_PREFIX = "@speedster-dist-event "
_PATH_FIELDS = frozenset({"model", "inputs", "tokenizer", "out", "prices"})
_TUPLE_FIELDS = frozenset(
    {"ignore_compilers", "ignore_compressors", "node_groups", "batch_sizes", "concurrency"}
)


def job_to_json(spec: JobSpec) -> dict[str, Any]:
    """``spec`` as plain JSON values."""
    out: dict[str, Any] = {}
    for f in fields(JobSpec):
        value = getattr(spec, f.name)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def job_from_json(raw: dict[str, Any]) -> JobSpec:
    values = {}
    for f in fields(JobSpec):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.name in _PATH_FIELDS and value is not None:
            value = Path(value)
        elif f.name in _TUPLE_FIELDS:
            value = tuple(value)
        values[f.name] = value
    return JobSpec(**values)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def main() -> int:
    request = json.loads(sys.stdin.read())
    spec = job_from_json(request["spec"])
    from speedster_dist.runtime.ray import connect

    configure_logging(request.get("verbosity", 0), request.get("debug", False))  # the sweep's -v

    try:
        connect(request["cluster"])
        history = Path(request["history"]) if request.get("history") else None
        learner = run_job(spec, history, "sweep", request["quick"], False, _emit_trial)
    except Exception as exc:  # reported to the parent, which goes on with the other jobs
        _emit({"event": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return 1
    winners = [winner_json(key, entry) for key, entry in learner.entries.items()]
    _emit({"event": "done", "winners": winners})
    return 0


def _emit_trial(result: TrialResult) -> None:
    _emit({"event": "trial", **trial_json(result)})


if __name__ == "__main__":
    sys.exit(main())
