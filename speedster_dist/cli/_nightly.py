"""One saved learner's nightly re-benchmark: re-measure, search new hardware, update.

Called by ``speedster-dist rebench`` for each learner, with a fresh executor each time (an
executor's state, such as the search's shared ONNX export, belongs to one model).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.cli._common import EXIT_FAILED, CliError, measure_settings, say
from speedster_dist.cli._kit import KIT_DIR, Kit, read_kit
from speedster_dist.cli._loading import load_inputs, load_model
from speedster_dist.cli._optimize import optimization_time
from speedster_dist.records import DeviceKind, TrialResult

__all__ = ["LearnerRebench", "NightlySettings", "find_learners", "rebench_learner"]


@dataclass(frozen=True)
class NightlySettings:
    """What the command line decides for every learner of the night."""

    history: Path
    run_id: str
    search_new: bool = True
    search_time: str | float | None = None  # None: the learner's own optimization_time
    quick: bool = False


@dataclass
class LearnerRebench:
    """What happened to one learner tonight."""

    name: str
    remeasured: int = 0
    added: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # its hardware types not in the cluster
    error: str = ""


def find_learners(root: Path) -> list[tuple[str, Path]]:
    """Every saved learner under ``root`` (``root`` itself, or folders below it), by name."""
    if (root / "manifest.json").is_file():
        return [(root.name, root)]
    found = sorted(p.parent for p in root.rglob("manifest.json"))
    # A manifest inside a learner's rebench kit (a model folder's own file) is not a learner.
    found = [p for p in found if KIT_DIR not in p.relative_to(root).parts]
    return [(p.relative_to(root).as_posix(), p) for p in found]


def _space_settings(kit: Kit, payload: Any) -> Any:
    from speedster_dist.backends import BASELINE_BACKEND, resolve_backend_name
    from speedster_dist.search import SpaceSettings

    options = kit.options
    ignored = {resolve_backend_name(n) for n in options.get("ignore_compilers", [])}
    return SpaceSettings(
        metric_drop_ths=options.get("metric_drop_ths"),
        source_format=payload.source.source_format,
        ignored_backends=frozenset(n for n in ignored if n is not None),
        ignored_compressors=frozenset(c.lower() for c in options.get("ignore_compressors", [])),
        baseline_backend=BASELINE_BACKEND if payload.source.module is not None else "onnxruntime",
    )


def _groups(executor: Any, device: str | None) -> list[Any]:
    groups = executor.discover()
    if device in ("cpu", "gpu"):
        return [g for g in groups if g.hardware.device is DeviceKind(device)]
    return list(groups)


def _show(name: str, role: str, result: TrialResult) -> None:
    detail = f"{result.latency.p50 * 1e3:.3g} ms" if result.latency else result.reason[:70]
    say(
        f"{name}: {result.candidate.hardware_key} {role} {result.candidate.label}: "
        f"{result.status.value} {detail}"
    )


@dataclass(frozen=True)
class _Learner:
    """A learner opened for tonight: its kit's model as a payload, and its history writer."""

    name: str
    path: Path
    entries: dict[str, Any]
    kit: Kit
    payload: Any
    space: Any
    writer: Any


def _open(name: str, path: Path, settings: NightlySettings) -> _Learner:
    from speedster_dist.api import prepare_payload
    from speedster_dist.learner import LearnerMetadata
    from speedster_dist.results import HistoryTarget, open_history

    entries = LearnerMetadata.read(path).manifest["entries"]
    kit = read_kit(path)
    say(f"{name}: loading {kit.model.kind} model {kit.model_name} from its rebench kit")
    model = load_model(kit.model)
    input_data, tokenizer, tokenizer_args = load_inputs(kit.inputs)
    options = kit.options
    payload, batch = prepare_payload(
        model,
        input_data,
        options.get("metric_drop_ths"),
        options.get("metric"),
        tokenizer,
        tokenizer_args,
        kit.inputs.batch_size,
        measure_settings(settings.quick),
    )
    target = HistoryTarget(settings.history, settings.run_id, "rebench", kit.model_name, name)
    writer = open_history(target, model, payload.source.fingerprint, batch, options)
    space = _space_settings(kit, payload)
    return _Learner(name, path, dict(entries), kit, payload, space, writer)


def rebench_learner(
    name: str,
    path: Path,
    make_executor: Callable[[], Any],
    settings: NightlySettings,
) -> LearnerRebench:
    """Re-measure ``path``'s winners and baselines where their hardware type is present,
    search the types that have no winner yet, and append every trial to the history."""
    learner = _open(name, path, settings)
    executor = make_executor()
    groups = _groups(executor, learner.kit.options.get("device"))
    report = LearnerRebench(name, remeasured=_remeasure(learner, executor, groups))
    report.absent = sorted(set(learner.entries) - {g.hardware.key for g in groups})
    missing = [g for g in groups if g.hardware.key not in learner.entries]
    if missing and settings.search_new:
        report.added = _search_new(learner, executor, missing, settings.search_time)
    return report


def _remeasure(learner: _Learner, executor: Any, groups: list[Any]) -> int:
    from speedster_dist.runtime._rebench import (
        FixedTrial,
        baseline_candidate,
        run_fixed_trials,
        winner_candidate,
    )

    trials = []
    for group in groups:
        entry = learner.entries.get(group.hardware.key)
        if entry is None:
            continue
        base = baseline_candidate(group, learner.space)
        if base is not None:
            trials.append(FixedTrial(base, group.hardware, "baseline"))
        winner = winner_candidate(entry, group.hardware.key)
        trials.append(FixedTrial(winner, group.hardware, "winner"))

    def measured(trial: FixedTrial, result: TrialResult) -> None:
        learner.writer.append(result, trial.role)
        _show(learner.name, trial.role, result)

    return len(run_fixed_trials(executor, learner.payload, trials, measured))


def _search_new(
    learner: _Learner, executor: Any, missing: list[Any], search_time: str | float | None
) -> list[str]:
    from speedster_dist.runtime import run_search
    from speedster_dist.runtime._rebench import OnlyTypes
    from speedster_dist.search import parse_optimization_time

    keys = [g.hardware.key for g in missing]
    say(f"{learner.name}: no winner yet for {', '.join(keys)}: searching")
    budget_value = search_time or learner.kit.options.get("optimization_time", "constrained")
    budget = parse_optimization_time(optimization_time(budget_value))

    def searched(result: TrialResult) -> None:
        learner.writer.append(result)
        _show(learner.name, "baseline" if result.is_baseline else "candidate", result)

    restricted = OnlyTypes(executor, keys)
    outcome = run_search(restricted, learner.payload, learner.space, budget, on_result=searched)
    for key, why in outcome.no_winner.items():
        say(f"{learner.name}: still no winner for {key}: {why}")
    if outcome.winners:
        _add_winners(learner.path, outcome)
        say(f"{learner.name}: added winners for {', '.join(outcome.winners)} to {learner.path}")
    return sorted(outcome.winners)


def _load_for_update(path: Path) -> Any:
    """The saved learner, loaded on this machine (any entry that loads here will do)."""
    from speedster_dist.learner import ArtifactError, LearnerMetadata

    meta = LearnerMetadata.read(path)
    errors = []
    for key in [None, *meta.hardware_types()]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return meta.load_model(path, key)
        except (ArtifactError, RuntimeError, OSError, ValueError) as exc:
            errors.append(f"{key or 'this machine'}: {exc}")
    raise CliError(f"cannot open {path} to add winners: {'; '.join(errors)}", EXIT_FAILED)


def _add_winners(path: Path, outcome: Any) -> None:
    from speedster_dist.learner import WinnerEntry

    learner = _load_for_update(path)
    for key, result in outcome.winners.items():
        base = outcome.baseline(key)
        c = result.candidate
        metrics = {
            "latency_p50_s": result.latency.p50 if result.latency else None,
            "latency_p90_s": result.latency.p90 if result.latency else None,
            "baseline_p50_s": base.latency.p50 if base and base.latency else None,
            "metric_drop": result.metric_drop,
        }
        learner.entries[key] = WinnerEntry(
            outcome.hardware[key],
            c.backend,
            c.precision.value,
            c.technique,
            c.knob_dict,
            metrics,
            outcome.saved[key],
        )
    learner.save(path)
