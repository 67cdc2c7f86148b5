"""What a search is asked to do, as one frozen record: :func:`~._driver.run_search`'s input."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from speedster_dist.records import DeviceKind, HardwareType, TrialResult
from speedster_dist.runtime._confirm import DEFAULT_CONFIRM_TOP
from speedster_dist.runtime._protocol import NO_DEMAND, Cluster, Demand
from speedster_dist.runtime._trial import TrialPayload
from speedster_dist.search import (
    Budget,
    ExhaustiveSearcher,
    Searcher,
    SearcherFactory,
    SearchSpace,
    SpaceSettings,
)

__all__ = ["SearchHooks", "SearchRequest"]


def _ignore_result(result: TrialResult) -> None:
    return None


def _ignore_plan(hardware_key: str, planned: int) -> None:
    return None


def _exhaustive(hardware: HardwareType, space: SearchSpace) -> Searcher:
    """Every config of the space, in order (the default searcher)."""
    return ExhaustiveSearcher(space)


@dataclass(frozen=True)
class SearchHooks:
    """What the caller hears during a search, from the driver's thread.

    ``on_result(result)``: every trial's outcome as soon as it arrives (complete, rejected,
    pruned, failed), so that nothing measured is lost when something later fails.
    ``on_plan(hardware_key, planned)``: once per hardware type before its first trial (a
    type that joins mid-search too), ``planned`` being the configs of its space.
    """

    on_result: Callable[[TrialResult], Any] = _ignore_result
    on_plan: Callable[[str, int], Any] = _ignore_plan


@dataclass(frozen=True, kw_only=True)
class SearchRequest:
    """A search of every hardware type the cluster has (of ``devices``), within ``budget``.

    ``make_searcher`` gives each hardware type its searcher over the space derived for it
    from ``settings``; every non-baseline trial is submitted with its searcher's
    ``prune_bar(candidate)``. ``confirm_rounds`` > 0: after the search, the baseline and the
    ``confirm_top`` fastest candidates of each type are re-timed side by side over that many
    rounds (the executor's ``confirm``), and the confirmed fastest wins. ``demand`` (the
    executor's ``group_demand``) asks an autoscaler for node groups for the length of the
    search: the search goes on, idle if need be, until every group is up or its wait is
    over. ``cluster`` (default: the executor) decides which hardware types the search sees,
    e.g. :class:`~._rebench.OnlyTypes` to search some of them only. ``poll_s``: how long
    the driver waits for an outcome before it looks at the cluster again.
    """

    payload: TrialPayload
    settings: SpaceSettings
    budget: Budget
    devices: frozenset[DeviceKind] = frozenset(DeviceKind)
    make_searcher: SearcherFactory = _exhaustive
    hooks: SearchHooks = field(default_factory=SearchHooks)
    confirm_rounds: int = 0
    confirm_top: int = DEFAULT_CONFIRM_TOP
    demand: Demand = NO_DEMAND
    cluster: Cluster | None = None
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.devices:
            raise ValueError("devices must name at least one device kind")
        if self.confirm_rounds < 0 or self.confirm_top < 1:
            raise ValueError(
                f"confirm_rounds must be >= 0 and confirm_top >= 1, got "
                f"{self.confirm_rounds} and {self.confirm_top}"
            )
        if not (math.isfinite(self.poll_s) and self.poll_s >= 0):
            raise ValueError(f"poll_s must be a number of seconds >= 0, got {self.poll_s}")
        if self.settings.objective != self.payload.objective:
            raise ValueError(
                "the search space and the trials must share one objective: settings.objective "
                f"is {self.settings.objective}, payload.objective {self.payload.objective}"
            )

    @property
    def kept_contenders(self) -> int:
        """Candidates each hardware type holds for the confirmation (0: no confirmation)."""
        return self.confirm_top if self.confirm_rounds > 0 else 0
