"""``speedster-dist rebench LEARNERS_DIR --history DIR``: the nightly fleet re-benchmark.

For every saved learner: re-measure each hardware type's winner and its baseline on that
type (when the cluster has it tonight), search the hardware types that have no winner yet
and add their winners to the learner, append every trial to the history; then judge every
re-measured figure against its trailing median. Exit 3 when anything regressed, so that a
scheduler alerts; exit 1 when a learner could not be re-measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REGRESSION,
    CliError,
    connect_cluster,
)
from speedster_dist.fleet import (
    LearnerRebench,
    NightlySettings,
    document,
    find_learners,
    path_text,
    rebench_all,
    rebench_rows,
)
from speedster_dist.present import is_terminal, ms, render_table, say

__all__ = ["add_parser", "exit_code", "format_comparisons", "judged_line"]


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "rebench",
        help="nightly: re-measure saved learners on every hardware type, flag regressions",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("learners", type=Path, help="a saved learner, or a folder of them")
    parser.add_argument("--history", type=Path, required=True, help="the trial history")
    parser.add_argument(
        "--threshold", type=float, default=0.2, help="p50 slow-down flagged (default 0.2)"
    )
    parser.add_argument(
        "--tail-threshold", type=float, default=0.5, help="the same for p90 (default 0.5)"
    )
    parser.add_argument("--window", type=int, default=7, help="trailing runs in the median")
    parser.add_argument(
        "--min-history", type=int, default=3, help="earlier runs needed to judge latency"
    )
    parser.add_argument(
        "--drop-tolerance", type=float, default=0.01, help="metric drop increase flagged"
    )
    parser.add_argument("--no-search", action="store_true", help="do not search new hardware")
    parser.add_argument("--search-time", help="budget of each new-hardware search")
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="allow kits whose original model is a program (TorchScript, .pt2) to be loaded",
    )
    parser.add_argument("--trial-timeout", type=float, default=900.0, help="seconds per trial")
    parser.add_argument(
        "--json",
        metavar="FILE|-",
        help="also write the verdicts as one JSON document to FILE; '-': print it on stdout "
        "instead of the tables (docs/cli.md)",
    )
    parser.add_argument("--report", type=Path, help="also write the HTML report here")
    parser.set_defaults(run=run)


def _fmt(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    if figure == "throughput":  # inferences a second at the operating point
        return f"{value:.4g}/s"
    return ms(value) if figure.startswith("latency") else f"{value:.3g}"


def judged_line(comparisons: list[Any], min_history: int) -> str:
    """``N of M figures judged (needs 3 nights)``: how much the verdicts say."""
    judged = sum(1 for c in comparisons if c.judged)
    return f"{judged} of {len(comparisons)} figures judged (needs {min_history} nights)"


def format_comparisons(comparisons: list[Any], styled: bool = False) -> str:
    """The verdict table printed at the end of a rebench: a figure with too little history
    is ``not judged``, never ``ok``."""
    rows = [
        [
            c.learner,
            c.hardware_type,
            c.role,
            c.figure,
            _fmt(c.figure, c.value),
            f"{_fmt(c.figure, c.median)} (n={c.history})",
            "" if c.change is None else f"{c.change:+.0%}",
            c.verdict,
            c.note,
        ]
        for c in comparisons
    ]
    headers = ["learner", "hardware", "role", "figure", "now", "median", "change", "verdict"]
    styles = {"REGRESSION": "bold red", "ok": "green", "not judged": "yellow"}
    return render_table([*headers, "note"], rows, styled=styled, styles=styles)


def exit_code(regressions: int, errors: int) -> int:
    """3 when anything regressed (whatever else happened), 1 on errors only, else 0."""
    if regressions:
        return EXIT_REGRESSION
    return EXIT_FAILED if errors else EXIT_OK


def _run_learners(args: argparse.Namespace, settings: NightlySettings) -> list[LearnerRebench]:
    from speedster_dist.runtime.ray import RayExecutor

    learners = find_learners(args.learners)
    if not learners:
        raise CliError(f"no saved learner (manifest.json) under {args.learners}")

    def make() -> RayExecutor:
        return RayExecutor(trial_timeout_s=args.trial_timeout)

    def error(name: str, exc: BaseException) -> None:
        if args.debug:
            traceback.print_exception(exc)

    return rebench_all(learners, make, settings, on_error=error)


def run(args: argparse.Namespace) -> int:
    from speedster_dist.results import RegressionSettings, compare_run, new_run_id

    if not args.learners.is_dir():
        raise CliError(f"{args.learners} is not a folder")
    try:
        verdict = RegressionSettings(
            args.threshold, args.window, args.min_history, args.drop_tolerance, args.tail_threshold
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    settings = NightlySettings(
        args.history,
        new_run_id(),
        not args.no_search,
        args.search_time,
        args.quick_measure,
        trust_code=args.trust_code,
    )
    connect_cluster(args.cluster or "auto")
    say(f"rebench run {settings.run_id}")
    reports = _run_learners(args, settings)
    rows = rebench_rows(args.history)
    comparisons = compare_run(rows, settings.run_id, verdict)
    regressions = [c for c in comparisons if c.regressed]
    errors = [r for r in reports if r.error]
    print(f"\nRebench run {settings.run_id}")
    for r in reports:
        added = f", added {', '.join(r.added)}" if r.added else ""
        absent = f", not in the cluster: {', '.join(r.absent)}" if r.absent else ""
        state = f"ERROR: {r.error}" if r.error else f"{r.remeasured} re-measured{added}{absent}"
        print(f"  {r.name}: {state}")
    if comparisons:
        print("\n" + format_comparisons(comparisons, styled=is_terminal(sys.stdout)))
    print(f"\n{judged_line(comparisons, verdict.min_history)}")
    print(f"{len(regressions)} regressions, {len(errors)} learners with errors")
    code = exit_code(len(regressions), len(errors))
    args.document.update(_verdicts(settings.run_id, reports, comparisons))
    args.document["paths"] = {"history": str(args.history), "report": path_text(args.report)}
    if args.json and args.json != "-":  # a file; "-": the CLI prints the document
        _write_json(Path(args.json), code, args.document)
    if args.report and rows:
        from speedster_dist.results import write_report

        say(f"report written to {write_report(args.history, args.report, settings=verdict)}")
    _compact(args.history)
    return code


def _compact(history: Path) -> None:
    """Tonight's and earlier trial files merged per partition (atomic; docs/nightly.md)."""
    from speedster_dist.results import compact_history

    if history.is_dir():
        stats = compact_history(history)
        say(f"history compacted: {stats.files_merged} files into {stats.partitions}")


def _verdicts(run_id: str, reports: list[LearnerRebench], comparisons: list[Any]) -> dict[str, Any]:
    """The night as JSON: each learner's report and every figure's verdict."""
    return {
        "run_id": run_id,
        "learners": [asdict(r) for r in reports],
        "comparisons": [
            {**asdict(c), "change": c.change, "verdict": c.verdict} for c in comparisons
        ],
    }


def _write_json(path: Path, code: int, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document("rebench", code, body), indent=2, default=str))
