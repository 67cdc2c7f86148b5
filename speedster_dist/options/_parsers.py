"""How each keyword of ``optimize_model`` is checked: one parser per setting, called with the
keyword (for its message) and the value; each raises :class:`InputError` saying what to
change, or returns the setting. :class:`~speedster_dist.options.RunOptions` names the parser
of each of its fields."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from speedster_dist.backends import BASELINE_BACKEND, resolve_backend_name
from speedster_dist.cost import PriceTable, load_prices, parse_prices
from speedster_dist.errors import InputError, PriceError
from speedster_dist.measure import MeasureSettings, MetricFn, check_percentile, resolve_metric
from speedster_dist.naming import parse_group_names
from speedster_dist.records import DeviceKind
from speedster_dist.search import (
    Budget,
    StudyStorage,
    StudyStorageError,
    check_storage,
    parse_optimization_time,
)

if TYPE_CHECKING:
    from speedster_dist.results import HistoryTarget

__all__ = [
    "COMPRESSORS",
    "SEARCHERS",
    "HistoryLocation",
    "Parser",
    "RuntimeEnv",
    "check_output_folder",
]

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
SEARCHERS = ("optuna", "exhaustive")

# None, "package" (ship this speedster_dist to the nodes) or a Ray runtime environment.
RuntimeEnv = Literal["package"] | dict[str, Any] | None
# A history folder, or a HistoryTarget (a folder plus where this run's rows go).
HistoryLocation = Union[str, Path, "HistoryTarget"]
# Validates one keyword's value (InputError says what to change) and returns the setting.
Parser = Callable[[str, Any], Any]


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def threshold(keyword: str, value: Any) -> float | None:
    """None, or a finite real number >= 0: NaN makes every comparison false and infinity
    accepts anything, so either would switch the accuracy guard off."""
    if value is None:
        return None
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise InputError(
            f"{keyword} must be None or a number >= 0, got {value!r}; give a finite "
            "number such as 0.05 (NaN or infinity would accept any candidate)"
        )
    return float(value)


def budget(keyword: str, value: Any) -> Budget:
    try:
        return parse_optimization_time(value)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def metric(keyword: str, value: Any) -> MetricFn:
    try:
        return resolve_metric(value)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def positive(keyword: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise InputError(f"{keyword} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def at_least(least: int) -> Parser:
    def parse(keyword: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InputError(f"{keyword} must be an integer >= {least}, got {value!r}")
        return value

    return parse


def flag(keyword: str, value: Any) -> bool:
    return bool(value)


def boolean(keyword: str, value: Any) -> bool:
    """True or False and nothing else: a setting that lets code run or the network in must
    never be switched on by a value that only looks false ("false", "no", 0.0)."""
    if not isinstance(value, bool):
        raise InputError(f"{keyword} must be True or False, got {value!r}")
    return value


def optional_flag(keyword: str, value: Any) -> bool | None:
    """True, False, or None (not said: the default decides). Nothing else: a "false" string
    is not False."""
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"{keyword} must be True, False or None, got {value!r}")


def name_list(keyword: str, value: Any) -> list[str]:
    """A list of names; one string is one name (never split into its letters)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise InputError(f"{keyword} must be a list of names, got {value!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise InputError(f"{keyword} must hold names (strings), got {bad!r}")
    return names


def ignored_backends(keyword: str, value: Any) -> frozenset[str]:
    ignored = set()
    for name in name_list(keyword, value):
        try:
            resolved = resolve_backend_name(name)
        except ValueError as exc:
            raise InputError(f"{keyword}: {exc}") from exc
        if resolved == BASELINE_BACKEND:
            raise InputError(f"{keyword} cannot remove 'torch': it is the baseline")
        if resolved is not None:
            ignored.add(resolved)
    return frozenset(ignored)


def ignored_compressors(keyword: str, value: Any) -> frozenset[str]:
    given = {c.strip().lower() for c in name_list(keyword, value)}
    bad = given - COMPRESSORS - _SPEEDSTER_COMPRESSORS
    if bad:
        raise InputError(f"{keyword}: unknown {sorted(bad)}; valid names are {sorted(COMPRESSORS)}")
    return frozenset(given)


def devices(keyword: str, device: Any) -> frozenset[DeviceKind]:
    """None (every kind), ``"cpu"``, or a GPU: ``"gpu"``, ``"cuda"``, ``"cuda:N"``. Ray gives
    each trial a GPU of its node, so ``N`` only has to name a GPU this machine has, when it
    has any (a driver without GPU may search a cluster's GPU nodes: the search then refuses
    a cluster with none before any trial)."""
    if device is None:
        return frozenset(DeviceKind)
    name = device.strip().lower() if isinstance(device, str) else None
    if name == "cpu":
        return frozenset({DeviceKind.CPU})
    if name in ("gpu", "cuda"):
        return frozenset({DeviceKind.GPU})
    if name is not None and name.startswith("cuda:"):
        _check_gpu_index(keyword, device, name.removeprefix("cuda:"))
        return frozenset({DeviceKind.GPU})
    raise InputError(f"{keyword} must be None, 'cpu', 'gpu', 'cuda' or 'cuda:N', got {device!r}")


def _check_gpu_index(keyword: str, device: str, index: str) -> None:
    if not index.isdigit() or not index.isascii():
        raise InputError(
            f"{keyword}={device!r}: the GPU index must be a whole number >= 0, as in 'cuda:0'; "
            "or give 'cuda' (any GPU)"
        )
    import torch  # the caller's model is a torch model: torch is loaded already

    count = torch.cuda.device_count()
    if count and int(index) >= count:
        raise InputError(
            f"{keyword}={device!r}: this machine has {count} GPU(s), cuda:0 to "
            f"cuda:{count - 1}; give one of those, or 'cuda' (any GPU)"
        )


def check_local_gpu() -> None:
    """InputError when this machine has no GPU torch can use (a GPU search on it alone)."""
    import torch

    if not torch.cuda.device_count():
        raise InputError(
            "device asks for a GPU and cluster='local' searches this machine only, which "
            "has no GPU torch can use (torch.cuda.device_count() is 0): give device='cpu' "
            "or None, or a cluster with GPU nodes (cluster=<address>)"
        )


def cluster(keyword: str, cluster: Any) -> str:
    if cluster is None:
        return "auto"
    if not isinstance(cluster, str) or not cluster.strip():
        raise InputError(
            f"{keyword} must be 'auto' or an address (host:port, ray://host:port), got {cluster!r}"
        )
    return cluster.strip()


def runtime_env(keyword: str, value: Any) -> RuntimeEnv:
    if value is None or value == "package":
        return value
    if isinstance(value, Mapping):
        return dict(value)
    raise InputError(f"{keyword} must be None, 'package' or a dict, got {value!r}")


def choice(choices: tuple[str, ...]) -> Parser:
    def parse(keyword: str, value: Any) -> str:
        if value not in choices:
            raise InputError(f"{keyword} must be one of {list(choices)}, got {value!r}")
        return str(value)

    return parse


# ``optimize_model(task=...)``: "" (None) decides from the model (docs/generation.md).
TASKS = ("text-generation", "text2text-generation", "forward")


def task(keyword: str, value: Any) -> str:
    """None (""): decided by the model; else one of :data:`TASKS`."""
    if value is None or value == "":
        return ""
    return choice(TASKS)(keyword, value)


def seed(keyword: str, seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"{keyword} must be an int, got {seed!r}")
    return seed


def _is_path(value: Any) -> bool:
    return isinstance(value, str | os.PathLike)


def study_storage(keyword: str, value: Any) -> StudyStorage:
    """None (the cache folder), a storage URL, a journal file, a folder or an Optuna storage
    (search/_storage.py checks it without touching anything)."""
    try:
        return check_storage(value)
    except StudyStorageError as exc:
        raise InputError(str(exc)) from None


def history(keyword: str, value: Any) -> HistoryLocation | None:
    """None, a folder (a str or a path) or a HistoryTarget; the folder must be one this
    process can create or write in (checked now: found after the search, it would lose
    what the search measured)."""
    if value is None:
        return value
    if isinstance(value, str | os.PathLike):
        check_output_folder(keyword, value)
        return value if isinstance(value, str | Path) else Path(value)
    from speedster_dist.results import HistoryTarget  # pyarrow: one was built already

    if not isinstance(value, HistoryTarget):
        raise InputError(f"{keyword} must be a folder or a HistoryTarget, got {value!r}")
    check_output_folder(keyword, value.root)
    return value


def check_output_folder(keyword: str, value: str | os.PathLike[str]) -> Path:
    """``value`` as a folder that can be written later: an existing folder this process may
    write in, or a missing one whose nearest existing parent is such a folder. Nothing is
    created. InputError says what is in the way (a file, a read-only place)."""
    path = Path(value).expanduser()
    if not str(value).strip():
        raise InputError(f"{keyword} is empty: give a folder")
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{keyword}={str(value)!r} is a file, not a folder: give a folder (created when "
            "missing) and move the file aside, or pick another name"
        )
    parent = path
    while not parent.exists():  # the nearest part of the path that exists
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(
            f"{keyword}={str(value)!r} cannot be created: {str(parent)!r} is a file, not a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or _read_only_mount(parent):
        raise InputError(
            f"{keyword}={str(value)!r} cannot be written: {str(parent)!r} is read-only for "
            "this process; give a folder you can write in"
        )
    return path


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): os.access decided
        return False


def measure(keyword: str, value: Any) -> MeasureSettings:
    if value is None:
        return MeasureSettings()
    if not isinstance(value, MeasureSettings):
        raise InputError(f"{keyword} must be a MeasureSettings, got {value!r}")
    return value


def node_groups(keyword: str, value: Any) -> tuple[str, ...] | str | None:
    """None (the cluster's own groups), group names, or a cluster YAML declaring them."""
    if value is None:
        return None
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        return value
    try:
        return parse_group_names(name_list(keyword, value))
    except ValueError as exc:
        raise InputError(f"{keyword}: {exc}") from exc


def prices(keyword: str, value: Any) -> PriceTable | None:
    """None, a PriceTable, a mapping, or the path of a prices.yaml."""
    if value is None or isinstance(value, PriceTable):
        return value
    try:
        if isinstance(value, Mapping):
            return parse_prices(value, keyword)
        return load_prices(value)
    except PriceError as exc:
        raise InputError(f"{keyword}: {exc}") from exc


def sizes(keyword: str, value: Any) -> tuple[int, ...] | None:
    """None (the default points), or whole numbers >= 1 (one number is a list of one):
    ``batch_sizes`` and ``concurrency``."""
    if value is None:
        return None
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__iter__"):
        raise InputError(f"{keyword} must be a list of whole numbers >= 1, got {value!r}")
    values = list(values)
    if not values:
        raise InputError(
            f"{keyword} is empty: give at least one whole number >= 1, such as [1, 8, 32], "
            "or leave it out for the default"
        )
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise InputError(f"{keyword} must hold whole numbers >= 1, got {bad!r}")
    return tuple(sorted(set(values)))


def limit(keyword: str, value: Any) -> float | None:
    """None (no limit) or a finite number > 0: ``latency_budget_ms``, ``max_memory_mb``."""
    if value is None:
        return None
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise InputError(f"{keyword} must be None or a number > 0, got {value!r}")
    return float(value)


def percentile(keyword: str, value: Any) -> float:
    try:
        return check_percentile(value)
    except ValueError:
        raise InputError(f"{keyword} must be in (0, 100], got {value!r}") from None
