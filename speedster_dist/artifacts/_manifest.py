"""``manifest.json``: the on-disk description of a saved learner, and its verified reading.

A saved learner is data: ``manifest.json`` plus standard model files, each with its SHA-256,
optionally signed (:mod:`._signing`). Reading refuses symbolic links anywhere in the artifact,
checks every field of the manifest (:mod:`._schema`) and the signature when a verify key is
given; an entry's files are read, and checked against their checksums, only when that entry
is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from speedster_dist.artifacts._card import check_card
from speedster_dist.artifacts._encoder import SentenceEncoding, encoding_from_json
from speedster_dist.artifacts._entries import PORTABLE_KEY, LearnerIO, WinnerEntry
from speedster_dist.artifacts._files import (
    UnsafeName,
    VerifiedFiles,
    find_symlinks,
    read_plain_file,
)
from speedster_dist.artifacts._schema import (
    FORMAT,
    FORMAT_VERSION,
    KIT_SHA256,
    ArtifactError,
    parse_json,
    validate_manifest,
)
from speedster_dist.artifacts._signing import (
    SIGNATURE_FIELD,
    SignatureError,
    signing_key_from_env,
    verify_key_for,
    verify_key_from_env,
    verify_manifest,
)
from speedster_dist.cost import PriceTable, Served, cost_rows, fastest_and_cheapest
from speedster_dist.hardware import hardware_from_json, hardware_to_json
from speedster_dist.records import SavedCandidate

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PORTABLE_FOLDER",
    "ArtifactError",
    "Manifest",
    "entry_json",
    "resave_keys",
    "saved_json",
]

MANIFEST = "manifest.json"
PORTABLE_FOLDER = "_portable"  # the portable fallback's folder in an artifact
_MAX_MANIFEST_BYTES = 16 << 20
_M = TypeVar("_M", bound="Manifest")


def saved_json(saved: SavedCandidate, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest record of one candidate's files."""
    return {
        "folder": folder,
        "backend": saved.backend,
        "device": saved.device,
        "options": saved.options,
        "files": checksums,
    }


def entry_json(entry: WinnerEntry, folder: str, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest record of a winner: its files, what it is and what it measured."""
    found = {
        **saved_json(entry.saved, folder, checksums),
        "precision": entry.precision,
        "technique": entry.technique,
        "knobs": entry.knobs,
        "metrics": entry.metrics,
        "hardware": hardware_to_json(entry.hardware),
    }
    if entry.serving is not None:
        found["serving"] = entry.serving
    return found


def _stored(root: Path, raw: Mapping[str, Any]) -> SavedCandidate:
    files = VerifiedFiles(root, str(raw["folder"]), raw["files"])
    return SavedCandidate(raw["backend"], raw["device"], dict(raw["options"]), files)


def _entry(root: Path, raw: Mapping[str, Any]) -> WinnerEntry:
    return WinnerEntry(
        hardware_from_json(raw["hardware"]),
        raw["backend"],
        raw["precision"],
        raw.get("technique", ""),
        dict(raw.get("knobs", {})),
        dict(raw.get("metrics", {})),
        _stored(root, raw),
        dict(raw["serving"]) if "serving" in raw else None,
    )


def _describe(key: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    metrics = raw.get("metrics", {})
    p50, base = metrics.get("latency_p50_s"), metrics.get("baseline_p50_s")
    return {
        "hardware_type": key,
        "description": raw.get("hardware", {}).get("description", ""),
        "backend": raw["backend"],
        "precision": raw.get("precision", ""),
        "technique": raw.get("technique", ""),
        "device": raw["device"],
        "latency_p50_ms": p50 * 1e3 if p50 else None,
        "speedup": base / p50 if p50 and base else None,
        "metric_drop": metrics.get("metric_drop"),
    }


def _served(key: str, raw: Mapping[str, Any], batch: int) -> Served:
    """An entry as priced: the throughput measured at its operating point (a throughput or
    cost objective's ``serving``, requests a second times ``batch`` samples), else derived
    from its p50 (the latency objective, or a version 1 manifest)."""
    metrics, serving = raw.get("metrics", {}), raw.get("serving") or {}
    group = metrics.get("node_group")
    rate = serving.get("throughput")
    if serving.get("objective", "latency") == "latency" or not rate:
        return Served.from_p50(key, raw["backend"], metrics.get("latency_p50_s"), group, batch)
    p50, tail = serving.get("p50_ms"), serving.get("tail_ms")
    return Served(
        key,
        raw["backend"],
        float(rate) * batch,
        measured=True,
        p50_s=p50 / 1e3 if p50 is not None else None,
        node_group=group,
        point=f"{serving.get('batch_size')}x{serving.get('concurrency')}",
        tail_s=tail / 1e3 if tail is not None else None,
    )


def _price_rows(
    rows: list[dict[str, Any]], entries: Mapping[str, Any], prices: PriceTable, batch: int
) -> None:
    winners = [_served(key, raw, batch) for key, raw in entries.items()]
    costs = {c.hardware_type: c for c in cost_rows(winners, prices)}
    fastest, cheapest = fastest_and_cheapest(list(costs.values()))
    for row in rows:
        cost = costs.get(row["hardware_type"])
        row["cost_per_1m"] = cost.cost_per_1m if cost else None
        row["throughput_per_s"] = cost.throughput_per_s if cost else None
        row["throughput_basis"] = cost.basis if cost else None
        row["fastest"] = fastest is not None and fastest.hardware_type == row["hardware_type"]
        row["cheapest"] = cheapest is not None and cheapest.hardware_type == row["hardware_type"]


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir() or not (root / MANIFEST).exists():
        raise ArtifactError(f"{root} is not a saved learner: {MANIFEST} is missing")
    links = find_symlinks(root)
    if links:
        raise ArtifactError(
            f"{root} holds symbolic links ({', '.join(links[:5])}): a saved learner never "
            "does, and a link could make loading read or write outside it"
        )
    try:
        data = read_plain_file(root, MANIFEST, _MAX_MANIFEST_BYTES)
    except (UnsafeName, OSError) as exc:
        raise ArtifactError(f"{root / MANIFEST} cannot be read: {exc}") from exc
    manifest = parse_json(data, str(root / MANIFEST))
    validate_manifest(manifest, str(root / MANIFEST))
    check_card(root, manifest)  # the README is checked like any file (it is small)
    return dict(manifest)


def resave_keys(signing_key: Any = None, verify_key: Any = None) -> tuple[Any, Any]:
    """The keys of a job that reads learners to re-save them (the nightly rebench): the
    signing key (default: ``SPEEDSTER_DIST_SIGNING_KEY``) and the key that checks each
    learner first (default: ``SPEEDSTER_DIST_VERIFY_KEY``, else the signing key's own), so
    that nothing is re-signed unless it verifies. :class:`ArtifactError` for a key that
    cannot be used (an empty variable included)."""
    try:
        signing = signing_key if signing_key is not None else signing_key_from_env()
        verify = verify_key if verify_key is not None else verify_key_from_env()
        if verify is None and signing is not None:
            verify = verify_key_for(signing)
    except SignatureError as exc:
        raise ArtifactError(str(exc)) from exc
    return signing, verify


@dataclass(frozen=True)
class Manifest:
    """The parsed, verified manifest of a saved learner: what it holds, never the learner
    itself (:class:`speedster_dist.LearnerMetadata` adds ``load_model``, above this package)."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def read(cls: type[_M], path: str | Path, verify_key: Any = None) -> _M:
        """Read and check ``path``'s manifest. ``verify_key`` (default: the
        ``SPEEDSTER_DIST_VERIFY_KEY`` variable, if set) refuses an unsigned manifest or one
        signed with another key; see :mod:`speedster_dist.artifacts._signing`."""
        root = Path(path)
        try:  # the key first: an empty variable is an error before anything is read
            key = verify_key if verify_key is not None else verify_key_from_env()
        except SignatureError as exc:
            raise ArtifactError(str(exc)) from exc
        manifest = _read_manifest(root)
        if key is not None:
            try:
                verify_manifest(manifest, key)
            except SignatureError as exc:
                raise ArtifactError(f"{root / MANIFEST}: {exc}") from exc
        return cls(root, manifest)

    def hardware_types(self) -> list[str]:
        """The hardware types with a winner (see :attr:`has_portable` for the fallback)."""
        return list(self.manifest["entries"])

    @property
    def has_portable(self) -> bool:
        return "portable" in self.manifest

    @property
    def signed(self) -> bool:
        """Whether the manifest carries a signature (checked by :meth:`read` with a key)."""
        return SIGNATURE_FIELD in self.manifest

    @property
    def kit_sha256(self) -> str | None:
        """The SHA-256 of the rebench kit's ``kit.json`` as saved with the learner (so that
        the manifest's signature covers the kit), or None (no kit, or an older learner)."""
        value = self.manifest.get(KIT_SHA256)
        return str(value) if value is not None else None

    def describe(
        self, prices: PriceTable | None = None, batch_size: int = 1
    ) -> list[dict[str, Any]]:
        """One row per entry (then the portable fallback): what it is and what it measured.

        With ``prices`` (:func:`speedster_dist.cost.load_prices`), each entry also has its
        ``cost_per_1m`` at ``throughput_per_s`` inferences a second (each request
        ``batch_size`` samples): measured at its operating point when it was chosen for one
        (``throughput_basis`` "measured at 8x2"), else derived from its p50 as calls back to
        back ("derived from p50"), and whether it is the ``fastest`` and the ``cheapest``
        hardware type."""
        rows = [_describe(key, raw) for key, raw in self.manifest["entries"].items()]
        if prices is not None:
            _price_rows(rows, self.manifest["entries"], prices, batch_size)
        for key, raw in self.manifest.get("data_only", {}).items():
            rows.append(
                {
                    **_describe(f"{key} (data-only)", raw),
                    "description": "its fastest data-only candidate: runs without trust_code",
                    "data_only": True,
                }
            )
        if self.has_portable:
            raw = self.manifest["portable"]
            rows.append(
                {
                    **_describe(PORTABLE_KEY, {**raw, "precision": "fp32"}),
                    "description": "the original model, not optimized (fallback)",
                    "metric_drop": 0.0,
                }
            )
        return rows

    def entries(self, root: Path | None = None) -> dict[str, WinnerEntry]:
        """Every winner; its files are read and verified only when used."""
        base = root if root is not None else self.path
        return {key: _entry(base, raw) for key, raw in self.manifest["entries"].items()}

    def data_only(self, root: Path | None = None) -> dict[str, WinnerEntry]:
        """Per hardware type whose winner is a program, its fastest data-only candidate
        (loaded without ``trust_code``); files read and verified only when used."""
        base = root if root is not None else self.path
        return {key: _entry(base, raw) for key, raw in self.manifest.get("data_only", {}).items()}

    def portable(self, root: Path | None = None) -> SavedCandidate | None:
        """The portable fallback (None when there is none); files read when used."""
        if not self.has_portable:
            return None
        return _stored(root or self.path, self.manifest["portable"])

    def io(self) -> LearnerIO:
        return LearnerIO.from_json(self.manifest["io"])

    def about(self) -> dict[str, Any]:
        """What the learner was made from, for people: the model's name, the metric and its
        threshold, the batch (empty for a learner saved before they were recorded)."""
        return dict(self.manifest.get("about", {}))

    def encoding(self, root: Path | None = None) -> SentenceEncoding | None:
        """A sentence-transformer's pooling and tokenizer (None for other models); its files
        are read, and checked, when used."""
        raw = self.manifest.get("encoder")
        return encoding_from_json(root or self.path, raw) if raw is not None else None
