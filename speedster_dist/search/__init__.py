"""Search: what to try next and when to stop. Never imports torch or a backend library.

Optuna is imported only when an :class:`OptunaSearcher` is created.
"""

from speedster_dist.search._backoff import MIN_PROGRESS, AccuracyBackoff
from speedster_dist.search._budget import (
    BUDGET_EXHAUSTED,
    CONSTRAINED_BUDGET_S,
    DEFAULT_CONFIRM_ROUNDS,
    DEFAULT_CONFIRM_TOP,
    DEFAULT_GROUP_WAIT_S,
    Budget,
    parse_optimization_time,
)
from speedster_dist.search._journal import StudyStorageError, check_journal, repair_journal
from speedster_dist.search._objective import (
    constraint_values,
    infeasibility,
    objective_value,
    tail_s,
)
from speedster_dist.search._optuna import (
    DEFAULT_SEED,
    FILL_IN_AFTER,
    MAX_CONSECUTIVE_DUPLICATES,
    PATIENCE,
    PRUNE_MARGIN,
    OptunaSearcher,
    optuna_searcher_factory,
)
from speedster_dist.search._prior import SearchHistory, default_gain, expected_gain
from speedster_dist.search._searcher import ExhaustiveSearcher, Searcher, SearcherFactory
from speedster_dist.search._space import (
    Arm,
    SearchSpace,
    SpaceSettings,
    allowed_precisions,
    capped_choices,
    derive_candidates,
    derive_space,
)
from speedster_dist.search._storage import StudyStorage, anchor_storage, check_storage
from speedster_dist.search._study import METRIC_NAMES, open_study, study_name

__all__ = [
    "BUDGET_EXHAUSTED",
    "CONSTRAINED_BUDGET_S",
    "DEFAULT_CONFIRM_ROUNDS",
    "DEFAULT_CONFIRM_TOP",
    "DEFAULT_GROUP_WAIT_S",
    "DEFAULT_SEED",
    "FILL_IN_AFTER",
    "MAX_CONSECUTIVE_DUPLICATES",
    "METRIC_NAMES",
    "MIN_PROGRESS",
    "PATIENCE",
    "PRUNE_MARGIN",
    "AccuracyBackoff",
    "Arm",
    "Budget",
    "ExhaustiveSearcher",
    "OptunaSearcher",
    "SearchHistory",
    "SearchSpace",
    "Searcher",
    "SearcherFactory",
    "SpaceSettings",
    "StudyStorage",
    "StudyStorageError",
    "allowed_precisions",
    "anchor_storage",
    "capped_choices",
    "check_journal",
    "check_storage",
    "constraint_values",
    "default_gain",
    "derive_candidates",
    "derive_space",
    "expected_gain",
    "infeasibility",
    "objective_value",
    "open_study",
    "optuna_searcher_factory",
    "parse_optimization_time",
    "repair_journal",
    "study_name",
    "tail_s",
]
