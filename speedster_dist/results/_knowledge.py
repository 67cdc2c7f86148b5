"""What the history teaches a new search: measured speedups and earlier winners, per hardware
type (plain dicts: the search layer turns them into its best-first order and warm start)."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["WARM_START_WINNERS", "history_knowledge", "knowledge_from_rows"]

# How many earlier winners of a hardware type are enqueued first in a new search.
WARM_START_WINNERS = 3
_SEARCH_KINDS = ("optimize", "sweep")


def _runs(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Rows grouped by (run id, hardware type): a speedup is only read within one run."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(str(row.get("run_id")), str(row.get("hardware_type")))].append(row)
    return grouped


def _p50(row: Mapping[str, Any]) -> float | None:
    value = row.get("latency_p50_s")
    if row.get("status") != "complete" or not isinstance(value, int | float) or value <= 0:
        return None
    if row.get("load_batch_size") is not None:  # per request under load: not one call's
        return None
    return float(value)


def _config(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        knobs = json.loads(row.get("knobs") or "{}")
    except ValueError:
        knobs = {}
    return {
        "backend": row.get("backend"),
        "precision": row.get("precision"),
        "technique": row.get("technique") or "",
        "knobs": knobs if isinstance(knobs, dict) else {},
    }


def _confirmed_winner(
    run: list[Mapping[str, Any]],
) -> tuple[bool, tuple[float, Mapping[str, Any]] | None]:
    """Whether a search run was confirmed, and then (confirmed speedup, row) of its confirmed
    fastest: None when the baseline itself won (a baseline is never a warm-start winner)."""
    confirmed = [
        (p50, r)
        for r in run
        if r.get("role") == "confirmed" and r.get("run_kind") in _SEARCH_KINDS
        if (p50 := _p50(r)) is not None
    ]
    base = next((p for p, r in confirmed if r.get("is_baseline")), None)
    if base is None or len(confirmed) < 2:
        return False, None
    p50, row = min(confirmed, key=lambda pr: pr[0])
    return True, None if row.get("is_baseline") else (base / p50, row)


def knowledge_from_rows(
    rows: Iterable[Mapping[str, Any]], top: int = WARM_START_WINNERS
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[dict[str, Any], ...]]]:
    """``(speedups, winners)`` per hardware type from history rows.

    ``speedups[key]["backend/precision"]``: the median, over the runs that measured it on
    hardware type ``key``, of the run's baseline p50 over the arm's best complete p50 in that
    run. ``winners[key]``: the configs that were fastest in a search run (not a rebench) of
    ``key`` (confirmed fastest, when the run re-timed its best side by side), most wins
    first, then fastest; at most ``top``.
    """
    ratios: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    wins: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    configs: dict[str, dict[str, Any]] = {}
    for (_, key), run in _runs(rows).items():
        # A search's confirmation re-times trials of the run (role "confirmed"): they pick its
        # winner, as they did the learner's, but are not more trials of their arms.
        trials = [r for r in run if r.get("role") != "confirmed"]
        base = min((p for r in trials if r.get("is_baseline") and (p := _p50(r))), default=None)
        if base is None:
            continue
        best: dict[str, float] = {}
        winner: tuple[float, Mapping[str, Any]] | None = None
        for row in trials:
            p50 = _p50(row)
            if p50 is None or row.get("is_baseline"):
                continue
            arm = f"{row.get('backend')}/{row.get('precision')}"
            best[arm] = min(best.get(arm, p50), p50)
            if row.get("run_kind") in _SEARCH_KINDS and (winner is None or p50 < winner[0]):
                winner = (p50, row)
        for arm, p50 in best.items():
            ratios[key][arm].append(base / p50)
        confirmed, won = _confirmed_winner(run)
        if not confirmed and winner is not None:
            won = (base / winner[0], winner[1])
        if won is not None:
            config = _config(won[1])
            ident = json.dumps(config, sort_keys=True, default=str)
            configs[ident] = config
            wins[key][ident].append(won[0])
    speedups = {
        key: {arm: statistics.median(values) for arm, values in arms.items()}
        for key, arms in ratios.items()
    }
    winners = {
        key: tuple(
            configs[ident]
            for ident, _ in sorted(
                found.items(), key=lambda kv: (-len(kv[1]), -statistics.median(kv[1]))
            )[:top]
        )
        for key, found in wins.items()
    }
    return speedups, winners


def history_knowledge(
    root: str | Path, top: int = WARM_START_WINNERS
) -> tuple[dict[str, dict[str, float]], dict[str, tuple[dict[str, Any], ...]]]:
    """:func:`knowledge_from_rows` over the history at ``root`` (empty when there is none)."""
    from speedster_dist.results._history import read_history

    folder = Path(root)
    if not folder.is_dir():
        return {}, {}
    columns = [
        "run_id",
        "run_kind",
        "role",
        "hardware_type",
        "backend",
        "precision",
        "technique",
        "knobs",
        "is_baseline",
        "status",
        "latency_p50_s",
    ]
    return knowledge_from_rows(read_history(folder).select(columns).to_pylist(), top)
