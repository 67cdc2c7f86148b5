"""The settings of a search, one field each: :class:`RunOptions` and the function that
builds them, :func:`parse_run_options` (see the package's docstring)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from speedster_dist.backends import BASELINE_BACKEND, GENERATION_BASELINE, SourceModel
from speedster_dist.cache import cache_root, private_dir
from speedster_dist.cost import PriceTable
from speedster_dist.errors import InputError
from speedster_dist.measure import (
    BUILTIN_METRICS,
    DROP_BOUNDS,
    MeasureSettings,
    MetricFn,
    resolve_metric,
)
from speedster_dist.options import _parsers as parse
from speedster_dist.options._parsers import SEARCHERS, HistoryLocation, Parser, RuntimeEnv
from speedster_dist.records import DeviceKind
from speedster_dist.search import (
    DEFAULT_CONFIRM_ROUNDS,
    DEFAULT_CONFIRM_TOP,
    DEFAULT_GROUP_WAIT_S,
    DEFAULT_SEED,
    Budget,
    ExhaustiveSearcher,
    SearcherFactory,
    SearchHistory,
    SpaceSettings,
    StudyStorage,
    optuna_searcher_factory,
    parse_optimization_time,
)
from speedster_dist.serving import OBJECTIVES, Objective

__all__ = [
    "DEFAULT_TRIAL_TIMEOUT_S",
    "EXTRA_KWARGS",
    "SPEEDSTER_ARGS",
    "RunOptions",
    "parse_run_options",
]

DEFAULT_TRIAL_TIMEOUT_S = 900.0


def _extra(keyword: str, parse: Parser) -> dict[str, Any]:
    """The metadata of a field set by ``optimize_model``'s keyword extra ``keyword``, whose
    value ``parse(keyword, value)`` validates."""
    return {"keyword": keyword, "parse": parse, "extra": True}


def _speedster(keyword: str, parse: Parser) -> dict[str, Any]:
    """The same for one of Speedster's own arguments of ``optimize_model``."""
    return {"keyword": keyword, "parse": parse, "extra": False}


# -- the settings ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The validated settings of one search (see ``optimize_model`` for their meaning).

    Built by :func:`parse_run_options`; a field's metadata names the keyword that sets it
    and the parser that checks it, its default is the keyword's default.
    """

    # Speedster's own arguments.
    budget: Budget = field(
        default=parse_optimization_time("constrained"),
        metadata=_speedster("optimization_time", parse.budget),
    )
    metric: MetricFn = field(
        default=resolve_metric(None), metadata=_speedster("metric", parse.metric)
    )
    metric_drop_ths: float | None = field(
        default=None, metadata=_speedster("metric_drop_ths", parse.threshold)
    )
    ignored_backends: frozenset[str] = field(
        default=frozenset(), metadata=_speedster("ignore_compilers", parse.ignored_backends)
    )
    ignored_compressors: frozenset[str] = field(
        default=frozenset(), metadata=_speedster("ignore_compressors", parse.ignored_compressors)
    )
    devices: frozenset[DeviceKind] = field(
        default=frozenset(DeviceKind), metadata=_speedster("device", parse.devices)
    )
    # The keyword extras.
    cluster: str = field(default="auto", metadata=_extra("cluster", parse.cluster))
    trial_timeout_s: float = field(
        default=DEFAULT_TRIAL_TIMEOUT_S, metadata=_extra("trial_timeout", parse.positive)
    )
    runtime_env: RuntimeEnv = field(default=None, metadata=_extra("runtime_env", parse.runtime_env))
    searcher: str = field(default="optuna", metadata=_extra("searcher", parse.choice(SEARCHERS)))
    search_seed: int = field(default=DEFAULT_SEED, metadata=_extra("search_seed", parse.seed))
    # None: ~/.cache/speedster-dist/studies
    study_storage: StudyStorage = field(  # search/_storage.py
        default=None, metadata=_extra("study_storage", parse.study_storage)
    )
    resume: bool = field(default=False, metadata=_extra("resume", parse.flag))
    batch_size: int = field(default=1, metadata=_extra("batch_size", parse.at_least(1)))
    measure: MeasureSettings = field(
        default_factory=MeasureSettings, metadata=_extra("measure_settings", parse.measure)
    )
    history: HistoryLocation | None = field(default=None, metadata=_extra("history", parse.history))
    node_groups: tuple[str, ...] | str | None = field(
        default=None, metadata=_extra("node_groups", parse.node_groups)
    )
    group_wait_s: float = field(
        default=DEFAULT_GROUP_WAIT_S, metadata=_extra("group_wait", parse.positive)
    )
    # Cost per 1M inferences in the summary when given.
    prices: PriceTable | None = field(default=None, metadata=_extra("prices", parse.prices))
    # A model given by name (hub.py): fetched from the Hub only when allowed, its own code
    # run only when trusted.
    allow_download: bool = field(default=False, metadata=_extra("allow_download", parse.boolean))
    trust_remote_code: bool = field(
        default=False, metadata=_extra("trust_remote_code", parse.boolean)
    )
    progress: bool = field(default=True, metadata=_extra("progress", parse.flag))
    # None: the summary (and progress, see ``progress``); True: every trial too; False: nothing.
    verbose: bool | None = field(default=None, metadata=_extra("verbose", parse.optional_flag))
    confirm_rounds: int = field(  # 0: the search's figures, not re-timed
        default=DEFAULT_CONFIRM_ROUNDS, metadata=_extra("confirm_rounds", parse.at_least(0))
    )
    confirm_top: int = field(
        default=DEFAULT_CONFIRM_TOP, metadata=_extra("confirm_top", parse.at_least(1))
    )
    # What "best" means and the constraints (docs/throughput.md): see ``serving_objective``.
    objective: str = field(
        default="latency", metadata=_extra("objective", parse.choice(OBJECTIVES))
    )
    batch_sizes: tuple[int, ...] | None = field(
        default=None, metadata=_extra("batch_sizes", parse.sizes)
    )
    concurrency: tuple[int, ...] | None = field(
        default=None, metadata=_extra("concurrency", parse.sizes)
    )
    latency_budget_ms: float | None = field(
        default=None, metadata=_extra("latency_budget_ms", parse.limit)
    )
    latency_percentile: float = field(
        default=99.0, metadata=_extra("latency_percentile", parse.percentile)
    )
    max_memory_mb: float | None = field(default=None, metadata=_extra("max_memory_mb", parse.limit))
    # Generation (docs/generation.md): "" decides from the model (a causal LM generates).
    task: str = field(default="", metadata=_extra("task", parse.task))
    max_new_tokens: int = field(default=32, metadata=_extra("max_new_tokens", parse.at_least(1)))

    def __post_init__(self) -> None:
        """A GPU search on this machine alone (``cluster="local"``) needs a GPU here. The
        threshold must keep the guard on under this metric: a built-in metric's drop
        never reaches its bound (:data:`~speedster_dist.measure.DROP_BOUNDS`), so a
        threshold there accepts every candidate (a callable metric sets its own scale: any
        finite threshold; the NaN or infinite drop it may return is never accepted)."""
        if self.cluster == "local" and self.devices == {DeviceKind.GPU}:
            parse.check_local_gpu()  # the search runs on this machine only
        bound = DROP_BOUNDS.get(self.metric_name)
        if bound is not None and self.metric_drop_ths is not None and self.metric_drop_ths >= bound:
            raise InputError(
                f"metric_drop_ths={self.metric_drop_ths!r} would accept any candidate: the "
                f"{self.metric_name} drop is never above {bound:g}. Give the drop you accept, "
                f"below {bound:g}, such as 0.05 (None or 0: no precision reduction)"
            )

    @property
    def serving_objective(self) -> Objective:
        """The objective and constraints as one record (search and trials read it);
        InputError when the settings contradict each other (see :func:`parse_run_options`)."""
        try:
            objective = Objective(
                self.objective,
                self.batch_sizes or (),
                self.concurrency or (),
                self.latency_budget_ms,
                self.latency_percentile,
                self.max_memory_mb,
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if objective.kind == "cost" and self.prices is None:
            raise InputError(
                "objective='cost' needs prices: give prices= (a prices.yaml, or a mapping of "
                "node group or hardware type -> price per hour), or use objective='throughput'"
            )
        return objective

    @property
    def metric_name(self) -> str:
        """A built-in metric's name, or "custom"."""
        return next((name for name, fn in BUILTIN_METRICS.items() if fn is self.metric), "custom")

    def space_settings(
        self, source: SourceModel, budget: Budget | None = None, held_in: int | None = None
    ) -> SpaceSettings:
        """The settings that shape the search space of ``source`` (``budget`` overrides the
        search's own, e.g. the nightly budget for a hardware type that joined; ``held_in``,
        the number of calibration samples, caps the knobs that count samples)."""
        return SpaceSettings(
            metric_drop_ths=self.metric_drop_ths,
            source_format=source.source_format,
            ignored_backends=self.ignored_backends,
            ignored_compressors=self.ignored_compressors,
            tune_knobs=(budget or self.budget).tune_knobs,
            baseline_backend=_baseline(source),
            held_in=held_in,
            metric=self.metric_name,
            history=self.search_history(),
            objective=self.serving_objective,
        )

    def search_history(self) -> SearchHistory | None:
        """What the ``history`` folder teaches this search (best-first order, warm start);
        None without a history. Read when the search starts (pyarrow imported then)."""
        if self.history is None:
            return None
        from speedster_dist.results import HistoryTarget, history_knowledge

        target = self.history
        root = target.root if isinstance(target, HistoryTarget) else target
        try:
            speedups, winners = history_knowledge(root)
        except (OSError, ValueError) as exc:  # an unreadable history must not stop a search
            warnings.warn(f"the history {root} is unreadable ({exc}); searching cold", stacklevel=2)
            return None
        return SearchHistory(speedups, winners)

    def history_settings(self) -> dict[str, Any]:
        """The settings recorded with every trial of the history."""
        return {**self._identity(), "devices": sorted(d.value for d in self.devices)}

    def _identity(self) -> dict[str, Any]:
        """The settings that change what "best" means (the latency objective adds nothing:
        its studies keep the names they had before objectives)."""
        return {
            "metric_drop_ths": self.metric_drop_ths,
            "metric": self.metric_name,
            "optimization_time": self.budget.label,
            "ignored_backends": sorted(self.ignored_backends),
            **self.serving_objective.identity(),
        }

    def searcher_factory(self, model_fingerprint: str, model_name: str = "") -> SearcherFactory:
        """One searcher per hardware type: an Optuna study named after the model (``model_name``
        for people, the fingerprint for identity) and the settings that change what "best"
        means, or the exhaustive searcher."""
        if self.searcher == "exhaustive":
            return lambda hardware, space: ExhaustiveSearcher(space)
        identity = {**self._identity(), "ignored_compressors": sorted(self.ignored_compressors)}
        storage: StudyStorage = self.study_storage or private_dir(cache_root() / "studies")
        return optuna_searcher_factory(
            storage,
            model_fingerprint,
            identity,
            model_name=model_name,
            resume=self.resume,
            seed=self.search_seed,
        )


# ``optimize_model``'s keyword extras, beyond Speedster's signature, and Speedster's own.
EXTRA_KWARGS = frozenset(f.metadata["keyword"] for f in fields(RunOptions) if f.metadata["extra"])
SPEEDSTER_ARGS = tuple(f.metadata["keyword"] for f in fields(RunOptions) if not f.metadata["extra"])


def parse_run_options(
    *,
    metric_drop_ths: Any = None,
    metric: Any = None,
    optimization_time: Any = "constrained",
    ignore_compilers: Any = None,
    ignore_compressors: Any = None,
    device: Any = None,
    extras: Mapping[str, Any] | None = None,
) -> RunOptions:
    """Validate ``optimize_model``'s settings; raises :class:`InputError` (or TypeError for
    an unknown keyword, like any Python call) saying what to change. An extra not given
    keeps its default."""
    extras = dict(extras or {})
    unknown = set(extras) - EXTRA_KWARGS
    if unknown:
        raise TypeError(
            f"optimize_model got unexpected arguments {sorted(unknown)}; "
            f"accepted extras are {sorted(EXTRA_KWARGS)}"
        )
    given = {
        "metric_drop_ths": metric_drop_ths,
        "metric": metric,
        "optimization_time": optimization_time,
        "ignore_compilers": ignore_compilers,
        "ignore_compressors": ignore_compressors,
        "device": device,
        **extras,
    }
    values = {}
    for setting in fields(RunOptions):
        keyword = setting.metadata["keyword"]
        if keyword in given:
            values[setting.name] = setting.metadata["parse"](keyword, given[keyword])
    options = RunOptions(**values)
    options.serving_objective  # noqa: B018 (the settings that depend on each other, checked now)
    return options


def _baseline(source: SourceModel) -> str:
    """What every candidate's speedup is measured against: eager torch (``generate()`` for
    generation), or ONNX Runtime for an ONNX file."""
    if source.task:
        return GENERATION_BASELINE
    return BASELINE_BACKEND if source.module is not None else "onnxruntime"
