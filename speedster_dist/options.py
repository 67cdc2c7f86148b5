"""Every setting of a search, parsed and validated once: :class:`RunOptions`.

``optimize_model``'s arguments and keyword extras, and the settings a rebench kit recorded,
go through :func:`parse_run_options` before any model is touched or any Ray is started.
Each wrong value raises :class:`InputError` saying what was wrong and how to fix it; no
value (NaN and infinity included) can switch the accuracy guard off.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from speedster_dist.backends import BASELINE_BACKEND, SourceModel, resolve_backend_name
from speedster_dist.cache import cache_root, private_dir
from speedster_dist.cost import PriceError, PriceTable, load_prices, parse_prices
from speedster_dist.inputs import InputError
from speedster_dist.measure import BUILTIN_METRICS, MeasureSettings, MetricFn, resolve_metric
from speedster_dist.records import DeviceKind
from speedster_dist.runtime import DEFAULT_CONFIRM_ROUNDS, DEFAULT_CONFIRM_TOP
from speedster_dist.search import (
    DEFAULT_SEED,
    Budget,
    ExhaustiveSearcher,
    SearcherFactory,
    SearchHistory,
    SpaceSettings,
    StudyStorageError,
    check_storage,
    optuna_searcher_factory,
    parse_optimization_time,
)

if TYPE_CHECKING:
    from speedster_dist.search import StudyStorage

__all__ = ["COMPRESSORS", "EXTRA_KWARGS", "SEARCHERS", "RunOptions", "parse_run_options"]

# Names ``ignore_compressors`` accepts (Speedster's and ours)...
COMPRESSORS = frozenset(
    {
        "fp16",
        "bf16",
        "tf32",
        "int8",
        "int8_dynamic",
        "int8_static",
        "half_precision",
        "dynamic_quantization",
        "static_quantization",
    }
)
# ...and Speedster's that are not shipped here: ignoring them is a no-op.
_SPEEDSTER_COMPRESSORS = frozenset({"sparseml", "intel_pruning"})
# ``optimize_model``'s keyword extras, beyond Speedster's signature.
EXTRA_KWARGS = frozenset(
    {
        "cluster",
        "trial_timeout",
        "verbose",
        "batch_size",
        "measure_settings",
        "executor",
        "progress",
        "runtime_env",
        "study_storage",
        "resume",
        "searcher",
        "search_seed",
        "history",
        "confirm_rounds",
        "confirm_top",
        "node_groups",
        "group_wait",
        "prices",
    }
)
SEARCHERS = ("optuna", "exhaustive")
DEFAULT_TRIAL_TIMEOUT_S = 900.0
DEFAULT_GROUP_WAIT_S = 600.0  # how long a search waits for a node group to come up


@dataclass(frozen=True)
class RunOptions:
    """The validated settings of one search (see ``optimize_model`` for their meaning)."""

    budget: Budget
    metric: MetricFn
    metric_name: str  # a built-in metric's name, or "custom"
    metric_drop_ths: float | None
    ignored_backends: frozenset[str] = frozenset()
    ignored_compressors: frozenset[str] = frozenset()
    devices: frozenset[DeviceKind] = frozenset(DeviceKind)
    cluster: str = "auto"
    trial_timeout_s: float = DEFAULT_TRIAL_TIMEOUT_S
    runtime_env: Any = None  # None, "package" or a Ray runtime environment dict
    searcher: str = "optuna"
    search_seed: int = DEFAULT_SEED
    study_storage: Any = None  # None: ~/.cache/speedster-dist/studies (search/_storage.py)
    resume: bool = False
    batch_size: int = 1
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    executor: Any = None  # an executor given by the caller (tests, benchmarks)
    history: Any = None  # a folder or a HistoryTarget
    node_groups: tuple[str, ...] | str | None = None  # names, a cluster YAML, None: the cluster's
    group_wait_s: float = DEFAULT_GROUP_WAIT_S
    prices: PriceTable | None = None  # cost per 1M inferences in the summary when given
    progress: bool = True
    verbose: bool = False
    confirm_rounds: int = DEFAULT_CONFIRM_ROUNDS  # 0: the search's figures, not re-timed
    confirm_top: int = DEFAULT_CONFIRM_TOP

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
            baseline_backend=BASELINE_BACKEND if source.module is not None else "onnxruntime",
            held_in=held_in,
            metric=self.metric_name,
            history=self.search_history(),
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
        return {
            "metric_drop_ths": self.metric_drop_ths,
            "metric": self.metric_name,
            "optimization_time": self.budget.label,
            "ignored_backends": sorted(self.ignored_backends),
            "devices": sorted(d.value for d in self.devices),
        }

    def searcher_factory(self, model_fingerprint: str, model_name: str = "") -> SearcherFactory:
        """One searcher per hardware type: an Optuna study named after the model (``model_name``
        for people, the fingerprint for identity) and the settings that change what "best"
        means, or the exhaustive searcher."""
        if self.searcher == "exhaustive":
            return lambda hardware, space: ExhaustiveSearcher(space)
        identity = {
            "metric_drop_ths": self.metric_drop_ths,
            "metric": self.metric_name,
            "optimization_time": self.budget.label,
            "ignored_backends": sorted(self.ignored_backends),
            "ignored_compressors": sorted(self.ignored_compressors),
        }
        storage: StudyStorage = self.study_storage or private_dir(cache_root() / "studies")
        return optuna_searcher_factory(
            storage,
            model_fingerprint,
            identity,
            model_name=model_name,
            resume=self.resume,
            seed=self.search_seed,
        )


def parse_run_options(
    metric_drop_ths: Any = None,
    metric: Any = None,
    optimization_time: Any = "constrained",
    ignore_compilers: Any = None,
    ignore_compressors: Any = None,
    device: Any = None,
    extras: Mapping[str, Any] | None = None,
) -> RunOptions:
    """Validate ``optimize_model``'s settings; raises :class:`InputError` (or TypeError for
    an unknown keyword, like any Python call) saying what to change."""
    extras = dict(extras or {})
    unknown = set(extras) - EXTRA_KWARGS
    if unknown:
        raise TypeError(
            f"optimize_model got unexpected arguments {sorted(unknown)}; "
            f"accepted extras are {sorted(EXTRA_KWARGS)}"
        )
    try:
        budget = parse_optimization_time(optimization_time)
        metric_fn = resolve_metric(metric)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return RunOptions(
        budget=budget,
        metric=metric_fn,
        metric_name=_metric_name(metric_fn),
        metric_drop_ths=_threshold(metric_drop_ths),
        ignored_backends=_ignored_backends(ignore_compilers),
        ignored_compressors=_ignored_compressors(ignore_compressors),
        devices=_devices(device),
        cluster=_cluster(extras.get("cluster", "auto")),
        trial_timeout_s=_positive(
            "trial_timeout", extras.get("trial_timeout", DEFAULT_TRIAL_TIMEOUT_S)
        ),
        runtime_env=_runtime_env(extras.get("runtime_env")),
        searcher=_searcher(extras.get("searcher", "optuna")),
        search_seed=_seed(extras.get("search_seed", DEFAULT_SEED)),
        study_storage=_study_storage(extras.get("study_storage")),
        resume=bool(extras.get("resume", False)),
        batch_size=_batch_size(extras.get("batch_size", 1)),
        measure=_measure(extras.get("measure_settings")),
        executor=extras.get("executor"),
        history=extras.get("history"),
        node_groups=_node_groups(extras.get("node_groups")),
        group_wait_s=_positive("group_wait", extras.get("group_wait", DEFAULT_GROUP_WAIT_S)),
        prices=_prices(extras.get("prices")),
        progress=bool(extras.get("progress", True)),
        verbose=bool(extras.get("verbose", False)),
        confirm_rounds=_count(
            "confirm_rounds", extras.get("confirm_rounds", DEFAULT_CONFIRM_ROUNDS), 0
        ),
        confirm_top=_count("confirm_top", extras.get("confirm_top", DEFAULT_CONFIRM_TOP), 1),
    )


def _metric_name(metric: MetricFn) -> str:
    return next((name for name, fn in BUILTIN_METRICS.items() if fn is metric), "custom")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _threshold(value: Any) -> float | None:
    """None, or a finite real number >= 0: NaN makes every comparison false and infinity
    accepts anything, so either would switch the accuracy guard off."""
    if value is None:
        return None
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise InputError(
            f"metric_drop_ths must be None or a number >= 0, got {value!r}; give a finite "
            "number such as 0.05 (NaN or infinity would accept any candidate)"
        )
    return float(value)


def _study_storage(value: Any) -> Any:
    try:
        return check_storage(value)
    except StudyStorageError as exc:
        raise InputError(str(exc)) from None


def _positive(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise InputError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _names(argument: str, value: Any) -> list[str]:
    """A list of names; one string is one name (never split into its letters)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise InputError(f"{argument} must be a list of names, got {value!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise InputError(f"{argument} must hold names (strings), got {bad!r}")
    return names


def _ignored_backends(value: Any) -> frozenset[str]:
    ignored = set()
    for name in _names("ignore_compilers", value):
        try:
            resolved = resolve_backend_name(name)
        except ValueError as exc:
            raise InputError(f"ignore_compilers: {exc}") from exc
        if resolved == BASELINE_BACKEND:
            raise InputError("ignore_compilers cannot remove 'torch': it is the baseline")
        if resolved is not None:
            ignored.add(resolved)
    return frozenset(ignored)


def _ignored_compressors(value: Any) -> frozenset[str]:
    names = {c.strip().lower() for c in _names("ignore_compressors", value)}
    bad = names - COMPRESSORS - _SPEEDSTER_COMPRESSORS
    if bad:
        raise InputError(
            f"ignore_compressors: unknown {sorted(bad)}; valid names are {sorted(COMPRESSORS)}"
        )
    return frozenset(names)


def _devices(device: Any) -> frozenset[DeviceKind]:
    if device is None:
        return frozenset(DeviceKind)
    name = device.strip().lower() if isinstance(device, str) else None
    if name == "cpu":
        return frozenset({DeviceKind.CPU})
    if name in ("gpu", "cuda") or (name or "").startswith("cuda:"):
        return frozenset({DeviceKind.GPU})
    raise InputError(f"device must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got {device!r}")


def _cluster(cluster: Any) -> str:
    if cluster is None:
        return "auto"
    if not isinstance(cluster, str) or not cluster.strip():
        raise InputError(
            f"cluster must be 'auto' or an address (host:port, ray://host:port), got {cluster!r}"
        )
    return cluster.strip()


def _runtime_env(value: Any) -> Any:
    if value is None or value == "package":
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise InputError(f"runtime_env must be None, 'package' or a dict, got {value!r}")


def _searcher(kind: Any) -> str:
    if kind not in SEARCHERS:
        raise InputError(f"searcher must be one of {list(SEARCHERS)}, got {kind!r}")
    return str(kind)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"search_seed must be an int, got {seed!r}")
    return seed


def _count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _batch_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {value!r}")
    return value


def _measure(value: Any) -> MeasureSettings:
    if value is None:
        return MeasureSettings()
    if not isinstance(value, MeasureSettings):
        raise InputError(f"measure_settings must be a MeasureSettings, got {value!r}")
    return value


def _node_groups(value: Any) -> tuple[str, ...] | str | None:
    """None (the cluster's own groups), group names, or a cluster YAML declaring them."""
    if value is None:
        return None
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        return value
    names = _names("node_groups", value)
    from speedster_dist.runtime._demand import parse_group_names  # no Ray imported

    try:
        return parse_group_names(names)
    except ValueError as exc:
        raise InputError(f"node_groups: {exc}") from exc


def _prices(value: Any) -> PriceTable | None:
    """None, a PriceTable, a mapping, or the path of a prices.yaml."""
    if value is None or isinstance(value, PriceTable):
        return value
    try:
        if isinstance(value, Mapping):
            return parse_prices(value, "prices")
        return load_prices(value)
    except PriceError as exc:
        raise InputError(f"prices: {exc}") from exc
