"""The live table of a sweep: model x hardware type, each with its status and best so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speedster_dist.present._format import ms, render_table

__all__ = ["SweepBoard"]


@dataclass
class _Cell:
    trials: int = 0
    best_s: float | None = None
    best_label: str = ""
    status: str = "searching"


class SweepBoard:
    """What every job of a sweep has done so far (fed with the jobs' events)."""

    def __init__(self, jobs: list[str]) -> None:
        self.jobs: dict[str, str] = {name: "queued" for name in jobs}
        self.cells: dict[tuple[str, str], _Cell] = {}
        self.version = 0  # bumped on every change, so that a printer knows when to print

    def job(self, name: str, status: str) -> None:
        self.jobs[name] = status
        if status != "running":  # the job ended: its cells end with it
            for (job, _), cell in self.cells.items():
                if job == name and cell.status == "searching":
                    cell.status = status if status != "done" else "no winner"
        self.version += 1

    def event(self, name: str, event: dict[str, Any]) -> None:
        """A ``trial`` or ``done`` event of job ``name`` (see fleet/_sweep_child.py: a trial's
        and the winners' fields are those of their ``--json`` documents)."""
        if event.get("event") == "trial":
            cell = self.cells.setdefault((name, str(event["hardware_type"])), _Cell())
            cell.trials += 1
            p50 = event.get("latency_p50_s") if event.get("status") == "complete" else None
            if p50 is not None and (cell.best_s is None or float(p50) < cell.best_s):
                cell.best_s, cell.best_label = float(p50), str(event["label"])
        elif event.get("event") == "done":
            for winner in event.get("winners") or []:
                cell = self.cells.setdefault((name, str(winner["hardware_type"])), _Cell())
                cell.status = "done"
                p50 = winner.get("latency_p50_s")
                if p50 is not None:
                    cell.best_s, cell.best_label = float(p50), str(winner["label"])
        self.version += 1

    def rows(self) -> list[list[str]]:
        rows = []
        for name, status in self.jobs.items():
            mine = sorted((k, c) for (job, k), c in self.cells.items() if job == name)
            if not mine:
                rows.append([name, "-", status, "0", "-"])
            for key, cell in mine:
                best = f"{ms(cell.best_s)} {cell.best_label}" if cell.best_s else "-"
                rows.append([name, key, cell.status, str(cell.trials), best])
        return rows

    def render(self, styled: bool = False) -> str:
        """The table: ``styled`` for a terminal, else plain ASCII (one row per line)."""
        headers = ["model", "hardware type", "status", "trials", "best so far (p50)"]
        return render_table(headers, self.rows(), styled=styled)
