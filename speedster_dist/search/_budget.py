"""``optimization_time``: Speedster's "constrained" / "unconstrained", or seconds; and the time
the confirmation of the winners takes after it."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BUDGET_EXHAUSTED",
    "CONSTRAINED_BUDGET_S",
    "DEFAULT_CONFIRM_ROUNDS",
    "DEFAULT_CONFIRM_TOP",
    "DEFAULT_GROUP_WAIT_S",
    "Budget",
    "parse_optimization_time",
]

# A constrained search (every backend with its default knobs) ends within this many seconds;
# what is running when it expires is cancelled and recorded as failed ("budget exhausted").
CONSTRAINED_BUDGET_S = 600.0

# The reason of a trial cancelled when the budget ran out: not a verdict on the candidate, so
# a resumed search measures it again.
BUDGET_EXHAUSTED = "cancelled: the optimization_time budget ran out while it was running"

# After the budget: the baseline and this many of a hardware type's best candidates are
# re-timed side by side over this many rounds (``optimize_model``'s ``confirm_top`` and
# ``confirm_rounds``; options.py parses them, the runtime's confirmation runs them).
DEFAULT_CONFIRM_ROUNDS = 5
DEFAULT_CONFIRM_TOP = 3
# How long a search waits for a declared node group to come up (``group_wait``).
DEFAULT_GROUP_WAIT_S = 600.0


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
    """Validate and interpret the user's ``optimization_time``.

    A number of seconds up to :data:`CONSTRAINED_BUDGET_S` is a constrained search with that
    budget (default knobs only); a larger number also tunes the knobs, default configs first.
    """
    if isinstance(value, bool):
        raise ValueError("optimization_time must be 'constrained', 'unconstrained' or seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"optimization_time in seconds must be positive and finite, got {value}"
            )
        tune = value > CONSTRAINED_BUDGET_S
        return Budget(float(value), tune_knobs=tune, label=f"{value:g}s")
    if value == "constrained":
        return Budget(CONSTRAINED_BUDGET_S, tune_knobs=False, label="constrained")
    if value == "unconstrained":
        return Budget(math.inf, tune_knobs=True, label="unconstrained")
    raise ValueError(
        f"invalid optimization_time {value!r}: use 'constrained', 'unconstrained' "
        "or a number of seconds"
    )
