"""Search: what to try next and when to stop. Never imports torch or a backend library."""

from speedster_dist.search._budget import CONSTRAINED_BUDGET_S, Budget, parse_optimization_time
from speedster_dist.search._searcher import ExhaustiveSearcher, Searcher
from speedster_dist.search._space import (
    BackendInfo,
    CapabilityInfo,
    KnobInfo,
    SpaceSettings,
    allowed_precisions,
    derive_candidates,
)

__all__ = [
    "CONSTRAINED_BUDGET_S",
    "BackendInfo",
    "Budget",
    "CapabilityInfo",
    "ExhaustiveSearcher",
    "KnobInfo",
    "Searcher",
    "SpaceSettings",
    "allowed_precisions",
    "derive_candidates",
    "parse_optimization_time",
]
