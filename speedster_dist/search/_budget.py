"""``optimization_time``: Speedster's "constrained" / "unconstrained", or seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CONSTRAINED_BUDGET_S", "Budget", "parse_optimization_time"]

# A constrained search (every backend with its default knobs) ends within this many seconds;
# what is running when it expires is cancelled and recorded as failed ("budget exhausted").
CONSTRAINED_BUDGET_S = 600.0


@dataclass(frozen=True)
class Budget:
    """How long the whole search may run, and whether backend knobs are tuned."""

    seconds: float
    tune_knobs: bool
    label: str

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.seconds)


def parse_optimization_time(value: str | float | int) -> Budget:
    """Validate and interpret the user's ``optimization_time``."""
    if isinstance(value, bool):
        raise ValueError("optimization_time must be 'constrained', 'unconstrained' or seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"optimization_time in seconds must be positive and finite, got {value}"
            )
        return Budget(float(value), tune_knobs=False, label=f"{value:g}s")
    if value == "constrained":
        return Budget(CONSTRAINED_BUDGET_S, tune_knobs=False, label="constrained")
    if value == "unconstrained":
        return Budget(math.inf, tune_knobs=True, label="unconstrained")
    raise ValueError(
        f"invalid optimization_time {value!r}: use 'constrained', 'unconstrained' "
        "or a number of seconds"
    )
