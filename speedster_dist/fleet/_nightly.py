"""The nightly fleet re-benchmark of saved learners.

For every saved learner: re-measure each hardware type's winner and its baseline on that
type (when the cluster has it tonight; a winner chosen for an operating point at that
point, its throughput and per-request p99 judged night over night), search the hardware
types that have no winner yet and add their winners to the learner, append every trial to
the history. A learner that
cannot be re-measured is reported and the others go on. Each learner gets a fresh executor
(an executor's state, such as the search's shared ONNX export, belongs to one model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speedster_dist.artifacts import (
    KIT_DIR,
    MANIFEST,
    ArtifactError,
    Kit,
    Manifest,
    read_kit,
    resave_keys,
    save_learner,
)
from speedster_dist.fleet._jobs import optimization_time
from speedster_dist.fleet._loading import read_inputs, read_model
from speedster_dist.generation import recorded_payload
from speedster_dist.learner_builder import data_only_entries, winner_entries
from speedster_dist.measure import MeasureSettings
from speedster_dist.options import RunOptions
from speedster_dist.present import ms, say
from speedster_dist.records import DeviceKind, SearchOutcome, TrialResult
from speedster_dist.results import HistoryTarget, HistoryWriter, open_history
from speedster_dist.runtime import (
    Executor,
    FixedTrial,
    HardwareGroup,
    OnlyTypes,
    SearchHooks,
    SearchRequest,
    TrialPayload,
    baseline_candidate,
    operating_load,
    run_fixed_trials,
    run_search,
    winner_candidate,
)
from speedster_dist.search import SpaceSettings, parse_optimization_time

__all__ = [
    "LearnerRebench",
    "NightlySettings",
    "find_learners",
    "rebench_all",
    "rebench_learner",
    "rebench_rows",
]


@dataclass(frozen=True)
class NightlySettings:
    """What the command line decides for every learner of the night."""

    history: Path
    run_id: str
    search_new: bool = True
    search_time: str | float | None = None  # None: the learner's own optimization_time
    quick: bool = False
    trust_code: bool = False  # kits whose model is a program (TorchScript, .pt2) may load
    signing_key: Any = None  # re-sign what is re-saved (default: SPEEDSTER_DIST_SIGNING_KEY)
    # Checks each learner and its kit before anything is measured or re-saved (default:
    # SPEEDSTER_DIST_VERIFY_KEY, else the signing key's own: a learner is never re-signed
    # unless it verifies).
    verify_key: Any = None


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
    if (root / MANIFEST).is_file():
        return [(root.name, root)]
    found = sorted(p.parent for p in root.rglob(MANIFEST))
    # A manifest inside a learner's rebench kit (a model folder's own file) is not a learner.
    found = [p for p in found if KIT_DIR not in p.relative_to(root).parts]
    return [(p.relative_to(root).as_posix(), p) for p in found]


@dataclass(frozen=True)
class _Learner:
    """A learner opened for tonight: its kit's model as a payload, and its history writer."""

    name: str
    path: Path
    meta: Manifest  # as read and verified: what a re-save writes, file by file
    kit: Kit
    payload: TrialPayload
    options: RunOptions
    space: SpaceSettings
    writer: HistoryWriter
    signing_key: Any = None


def _verified(path: Path, verify: Any) -> tuple[Manifest, Kit]:
    """``path``'s manifest and kit, checked with ``verify`` (when there is a key, the
    signature must cover the kit: see :func:`speedster_dist.artifacts.read_kit`)."""
    try:
        meta = Manifest.read(path, verify)
    except ArtifactError as exc:
        if verify is None:
            raise
        raise ArtifactError(
            f"{exc}; the nightly measures and re-signs only learners that verify "
            "(with SPEEDSTER_DIST_VERIFY_KEY, else the signing key's own)"
        ) from exc
    if verify is not None and meta.kit_sha256 is None:
        raise ArtifactError(
            f"{path}: its signature does not cover a rebench kit (it was saved without "
            "one, or by an older speedster-dist): optimize it again with --out"
        )
    return meta, read_kit(path, meta.kit_sha256)


def _open(name: str, path: Path, settings: NightlySettings) -> _Learner:
    signing, verify = resave_keys(settings.signing_key, settings.verify_key)
    meta, kit = _verified(path, verify)
    say(f"{name}: loading {kit.model.kind} model {kit.model_name} from its rebench kit")
    model = read_model(kit.model, settings.trust_code)
    input_data, tokenizer, tokenizer_args = read_inputs(kit.inputs)
    extras = {
        "batch_size": kit.inputs.batch_size,
        "measure_settings": MeasureSettings.quick() if settings.quick else None,
    }
    # The kit records the command line's text ("120"); the API takes seconds as a number.
    recorded = kit.options.get("optimization_time", "constrained")
    settings_of_search = {**kit.options, "optimization_time": optimization_time(recorded)}
    payload, options, batch = recorded_payload(  # a generation search's too
        model, input_data, settings_of_search, tokenizer, tokenizer_args, extras
    )
    target = HistoryTarget(settings.history, settings.run_id, "rebench", kit.model_name, name)
    writer = open_history(
        target, model, payload.source.fingerprint, batch, kit.options, settings.quick
    )
    space = options.space_settings(payload.source, held_in=len(payload.calibration))
    return _Learner(name, path, meta, kit, payload, options, space, writer, signing)


def _groups(executor: Executor, devices: frozenset[DeviceKind]) -> list[HardwareGroup]:
    return [g for g in executor.discover() if g.hardware.device in devices]


def _show(name: str, role: str, result: TrialResult) -> None:
    detail = ms(result.latency.p50) if result.latency else result.reason[:70]
    stats = result.throughput
    if stats is not None:  # an operating point: what it serves and its tail
        detail = f"{stats.throughput:.4g} requests/s, p99 {ms(stats.p99_s)}"
    say(
        f"{name}: {result.candidate.hardware_key} {role} {result.candidate.label}: "
        f"{result.status.value} {detail}"
    )


def rebench_learner(
    name: str, path: Path, make_executor: Callable[[], Executor], settings: NightlySettings
) -> LearnerRebench:
    """Re-measure ``path``'s winners and baselines where their hardware type is present,
    search the types that have no winner yet, and append every trial to the history."""
    learner = _open(name, path, settings)
    executor = make_executor()
    groups = _groups(executor, learner.options.devices)
    report = LearnerRebench(name, remeasured=_remeasure(learner, executor, groups))
    entries = learner.meta.manifest["entries"]
    report.absent = sorted(set(entries) - {g.hardware.key for g in groups})
    missing = [g for g in groups if g.hardware.key not in entries]
    if missing and settings.search_new:
        report.added = _search_new(learner, executor, missing, settings.search_time)
    return report


def rebench_all(
    learners: list[tuple[str, Path]],
    make_executor: Callable[[], Executor],
    settings: NightlySettings,
    on_error: Callable[[str, BaseException], Any] = lambda name, exc: None,
) -> list[LearnerRebench]:
    """Every learner of the night; one broken learner never hides the others' results."""
    reports = []
    for name, path in learners:
        try:
            reports.append(rebench_learner(name, path, make_executor, settings))
        except Exception as exc:
            message = str(exc) if isinstance(exc, ValueError | RuntimeError) else repr(exc)
            say(f"{name}: NOT re-measured: {message}")
            on_error(name, exc)
            reports.append(LearnerRebench(name, error=message))
    return reports


def _remeasure(learner: _Learner, executor: Executor, groups: list[HardwareGroup]) -> int:
    trials = []
    for group in groups:
        entry = learner.meta.manifest["entries"].get(group.hardware.key)
        if entry is None:
            continue
        winner = winner_candidate(entry, group.hardware.key)
        load = operating_load(entry)  # the baseline side by side at the winner's point
        base = baseline_candidate(group, learner.space, load)
        if base is not None:
            trials.append(FixedTrial(base, group.hardware, "baseline"))
        trials.append(FixedTrial(winner, group.hardware, "winner"))

    def measured(trial: FixedTrial, result: TrialResult) -> None:
        learner.writer.append(result, trial.role)
        _show(learner.name, trial.role, result)

    return len(run_fixed_trials(executor, learner.payload, trials, measured))


def _record_confirmations(learner: _Learner, outcome: SearchOutcome) -> None:
    """The confirmed figures go into the history (as the first search's); a confirmation
    that could not be made, or was overloaded, is said (the search's figures stand)."""
    for confirmation in outcome.confirmed.values():
        learner.writer.append_confirmation(confirmation, outcome.results)
    for key, why in outcome.not_confirmed.items():
        say(f"{learner.name}: {key}: winner not confirmed ({why})")


def _search_new(
    learner: _Learner,
    executor: Executor,
    missing: list[HardwareGroup],
    search_time: str | float | None,
) -> list[str]:
    keys = [g.hardware.key for g in missing]
    if learner.meta.signed and learner.signing_key is None:  # before hours of search
        raise ArtifactError(
            f"{learner.path} is signed, and re-saving it with new winners needs the "
            "signing key: set SPEEDSTER_DIST_SIGNING_KEY (or run with --no-search)"
        )
    say(f"{learner.name}: no winner yet for {', '.join(keys)}: searching")
    budget_value = search_time or learner.kit.options.get("optimization_time", "constrained")
    budget = parse_optimization_time(optimization_time(budget_value))

    def searched(result: TrialResult) -> None:
        learner.writer.append(result)
        _show(learner.name, "baseline" if result.is_baseline else "candidate", result)

    source, held_in = learner.payload.source, len(learner.payload.calibration)
    space = learner.options.space_settings(source, budget, held_in)
    request = SearchRequest(
        payload=learner.payload,
        settings=space,
        budget=budget,
        hooks=SearchHooks(on_result=searched),
        cluster=OnlyTypes(executor, keys),
        # A new type's winners are confirmed as the first search's were (fresh processes,
        # alternating rounds, overloaded rounds repeated or marked).
        confirm_rounds=learner.options.confirm_rounds,
        confirm_top=learner.options.confirm_top,
    )
    outcome = run_search(executor, request)
    _record_confirmations(learner, outcome)
    for key, why in outcome.no_winner.items():
        say(f"{learner.name}: still no winner for {key}: {why}")
    if outcome.winners:
        # The manifest read (and verified) before the search, never a fresh read: every
        # file is copied from the folder checked against its verified checksum, so what
        # changed since is refused, not re-signed.
        meta = learner.meta
        try:
            save_learner(
                learner.path,
                meta.io(),
                {**meta.entries(), **winner_entries(outcome)},
                meta.portable(),
                learner.signing_key,
                kit_sha256=meta.kit_sha256,
                about=meta.about(),
                encoder=meta.encoding(),
                data_only={**meta.data_only(), **data_only_entries(outcome)},
            )
        except (ValueError, OSError) as exc:  # a file changed since it was read, a bad key
            raise ArtifactError(f"{learner.path}: not re-saved: {exc}") from exc
        say(f"{learner.name}: added winners for {', '.join(outcome.winners)} to {learner.path}")
    return sorted(outcome.winners)


def rebench_rows(history: Path) -> list[dict[str, Any]]:
    """The rebench rows of the history: the only ones a nightly verdict looks at."""
    import pyarrow.dataset as ds

    from speedster_dist.results import read_history

    if not history.is_dir():
        return []
    return read_history(history, filter=ds.field("run_kind") == "rebench").to_pylist()
