"""What runs where: the winner of each model x learner x hardware type, read from the history.

A winner is the fastest complete candidate (by p50) of the latest search of its hardware type
(an ``optimize``, a ``sweep`` job, or a nightly search of a type that joined): the rule the
driver uses to pick it; for a throughput or cost search, its feasible load point serving the
most (complete rows are the feasible ones). When that search re-timed its best candidates and
the baseline side by side (role ``confirmed``), the confirmed fastest wins and its confirmed
figures are shown, as in the learner. The nightly ``rebench`` re-measures it (role
``winner``); its latest night gives the figures shown, and whether they confirm the search.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from speedster_dist.results._regress import Comparison

__all__ = ["Winner", "confirmed_range", "find_winners", "search_groups"]

Row = Mapping[str, Any]
Key = tuple[str, str, str]  # model name, learner, hardware type
_SEARCH_ROLES = ("candidate", "baseline")


@dataclass(frozen=True)
class Winner:
    """One line of the winners table."""

    model: str
    learner: str
    hardware_type: str
    row: Row  # the figures shown: the latest complete measurement of the winner
    baseline: Row | None  # the baseline measured in the same run, when there was one
    nightly: bool  # the figures come from a nightly re-measure (else from the search)
    # "confirmed", "regressed", "failed", "not judged" (nightly), "re-timed" (side by side
    # after the search, not re-measured at night), "not re-measured"
    state: str
    detail: str  # the confirmation column's text

    @property
    def speedup(self) -> float | None:
        """Over the baseline: the ratio of throughputs at load points (a throughput or cost
        search: each at its own point), else of p50s."""
        if self.row.get("load_batch_size") is not None and self.baseline is not None:
            mine, theirs = self.row.get("throughput"), self.baseline.get("throughput")
            return mine / theirs if mine and theirs else None
        base = self.baseline["latency_p50_s"] if self.baseline else None
        p50 = self.row["latency_p50_s"]
        return base / p50 if base and p50 else None

    @property
    def retimed(self) -> bool:
        """The figures are the search's confirmation (re-timed side by side with the baseline)."""
        return self.row["role"] == "confirmed"

    @property
    def speedup_range(self) -> tuple[float, float] | None:
        """The lowest and highest speed-up over the confirmation's rounds (each round pairs
        the baseline and the winner timed moments apart); None when not re-timed."""
        return confirmed_range(self.row, self.baseline)


def _rounds(row: Row) -> list[float]:
    return [float(v) for v in json.loads(row.get("confirm_round_p50s") or "[]")]


def confirmed_range(row: Row, base: Row | None) -> tuple[float, float] | None:
    """(lowest, highest) per-round ratio of the baseline's confirmed p50 over ``row``'s."""
    if base is None or row.get("role") != "confirmed" or base.get("role") != "confirmed":
        return None
    ratios = [b / c for b, c in zip(_rounds(base), _rounds(row), strict=False) if b and c]
    return (min(ratios), max(ratios)) if ratios else None


def _key(row: Row) -> Key:
    return (str(row["model_name"]), str(row["learner"] or ""), str(row["hardware_type"]))


def search_groups(rows: Sequence[Row]) -> dict[Key, dict[str, list[Row]]]:
    """Search trials by key, then by run id (in time order).

    A nightly run re-measures a winner with its baseline (role ``baseline`` too): those
    are not a search; a nightly search of a type that joined has no ``winner`` row.
    """
    remeasured = {(_key(r), r["run_id"]) for r in rows if r["role"] == "winner"}
    groups: dict[Key, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["role"] in _SEARCH_ROLES and (_key(row), row["run_id"]) not in remeasured:
            groups[_key(row)][row["run_id"]].append(row)
    return {k: dict(v) for k, v in groups.items()}


def _complete(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == "complete" and r["latency_p50_s"] is not None]


def _best(complete: Sequence[Row]) -> Row:
    """The driver's rule: the feasible load point serving the most when the search measured
    load points (a throughput or cost objective), else the lowest p50."""
    loaded = [r for r in complete if r.get("load_batch_size") is not None and r.get("throughput")]
    if loaded:
        return max(loaded, key=lambda r: r["throughput"])
    return min(complete, key=lambda r: r["latency_p50_s"])


def _confirmations(rows: Sequence[Row]) -> dict[tuple[Key, str], list[Row]]:
    """The confirmation rows of each search, by key and run id."""
    found: dict[tuple[Key, str], list[Row]] = defaultdict(list)
    for row in rows:
        if row["role"] == "confirmed":
            found[(_key(row), row["run_id"])].append(row)
    return dict(found)


def _confirmed(rows: Sequence[Row]) -> tuple[Row, Row] | None:
    """The confirmed fastest and the confirmed baseline of one run, when it has both."""
    complete = _complete(rows)
    base = next((r for r in complete if r["is_baseline"]), None)
    if base is None or len(complete) < 2:
        return None
    # The baseline is a contender too: it wins when nothing beat it once re-timed.
    return min(complete, key=lambda r: r["latency_p50_s"]), base


def _latest_search(
    runs: Mapping[str, list[Row]], confirmed: Mapping[str, list[Row]]
) -> tuple[Row, Row | None] | None:
    """The winner and the baseline of the latest run that completed something: its
    confirmed figures (``confirmed``: rows by run id) when it re-timed them side by side."""
    ordered = sorted(runs.values(), key=lambda rs: max(r["time"] for r in rs), reverse=True)
    for run in ordered:
        complete = _complete(run)
        if complete:
            retimed = _confirmed(confirmed.get(run[0]["run_id"], []))
            if retimed is not None:  # the learner's rule: the confirmed fastest wins
                return retimed
            base = next((r for r in complete if r["is_baseline"]), None)
            return _best(complete), base
    return None


def _retimed_detail(winner: Row, base: Row | None) -> str:
    spread = confirmed_range(winner, base)
    rounds = f"{winner['confirm_rounds']} rounds" if winner.get("confirm_rounds") else "rounds"
    span = f" ({spread[0]:.2f}-{spread[1]:.2f}x)" if spread else ""
    return f"re-timed side by side: {rounds}{span}; not re-measured at night"


def _nights(rows: Sequence[Row]) -> dict[Key, dict[str, list[Row]]]:
    nights: dict[Key, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["run_kind"] == "rebench" and row["role"] in ("winner", "baseline"):
            nights[_key(row)][row["run_id"]].append(row)
    return {k: dict(v) for k, v in nights.items()}


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _judge(
    key: Key, night: Row, count: int, verdicts: Sequence[Comparison], min_history: int
) -> tuple[str, str]:
    mine = [
        c
        for c in verdicts
        if (c.model_name, c.learner, c.hardware_type) == key and c.role == "winner"
    ]
    when = _day(night["time"])
    if any(c.regressed for c in mine):
        return "regressed", f"REGRESSED on {when}"
    if night["status"] != "complete":
        return "failed", f"re-measure {night['status']} on {when}"
    if mine and all(c.judged for c in mine):
        return "confirmed", f"confirmed: {count} nights, latest {when}"
    return "not judged", f"re-measured {count}x, not judged yet (needs {min_history} nights)"


def find_winners(
    rows: Sequence[Row], verdicts: Mapping[str, Sequence[Comparison]], min_history: int
) -> list[Winner]:
    """Every key's winner; ``verdicts`` are the regression verdicts of each nightly run id."""
    searches, nights, confirmations = search_groups(rows), _nights(rows), _confirmations(rows)
    found = []
    for key in sorted(set(searches) | set(nights)):
        runs_of = searches.get(key, {})
        confirmed = {run: confirmations.get((key, run), []) for run in runs_of}
        searched = _latest_search(runs_of, confirmed)
        since = searched[0]["time"] if searched else None
        runs = [
            run
            for run in nights.get(key, {}).values()
            if since is None or max(r["time"] for r in run) > since
        ]
        runs.sort(key=lambda run: max(r["time"] for r in run))
        measured = [r for run in runs for r in run if r["role"] == "winner"]
        if not measured:
            if searched and searched[0]["role"] == "confirmed":
                detail = _retimed_detail(*searched)
                found.append(Winner(*key, *searched, False, "re-timed", detail))
            elif searched:
                found.append(Winner(*key, *searched, False, "not re-measured", "not re-measured"))
            continue
        latest_run = runs[-1]
        night = next((r for r in latest_run if r["role"] == "winner"), measured[-1])
        count = sum(1 for r in measured if r["status"] == "complete")
        state, detail = _judge(key, night, count, verdicts.get(night["run_id"], ()), min_history)
        figures = _complete(measured)
        if night["status"] == "complete" or not searched:
            shown = night if night["status"] == "complete" else (figures or [night])[-1]
            run_of = [r for run in runs for r in run if r["run_id"] == shown["run_id"]]
            base = next((r for r in _complete(run_of) if r["role"] == "baseline"), None)
            found.append(Winner(*key, shown, base, True, state, detail))
        else:
            found.append(Winner(*key, *searched, False, state, detail))
    return found
