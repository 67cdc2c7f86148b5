"""The result users get: a learner called exactly like the original model.

:class:`HardwareKeyedLearner` holds one winner per hardware type and runs the one for the
machine it is on (see :mod:`speedster_dist.artifacts` for which one, and for the saved
form), plus a *portable fallback*: the original model in a standard format, for machines of
a type nobody measured.

Each winner carries the operating point it was chosen for (``operating_point()``); the
learner serves it: ``run_many`` batches and overlaps requests at that point. A learner may be
called from several threads: its calls of one winner run one at a time (some runtimes'
synchronous requests are not thread-safe), ``run_many`` keeps requests in flight through the
backend's own runner.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from speedster_dist.artifacts import (
    DATA_ONLY_SUFFIX,
    PORTABLE_KEY,
    LearnerIO,
    Manifest,
    Selection,
    WinnerEntry,
    entry_speed,
    load_compiled,
    needs_trust,
    portable_entry,
    save_learner,
    select_entry,
    stand_in_message,
)
from speedster_dist.backends import Compiled, fixed_rows, pad_rows, serve_requests, split_rows
from speedster_dist.hardware import local_hardware_types
from speedster_dist.records import DeviceKind, SavedCandidate, TrialResult
from speedster_dist.sentence import SentenceEncoder

__all__ = ["HardwareKeyedLearner", "InferenceLearner", "LearnerMetadata", "load_model"]


def _request(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One request of ``run_many`` as call arguments: a mapping is keyword arguments, a
    tuple or list positional ones, anything else the one positional argument."""
    if isinstance(item, dict):
        return (), dict(item)
    if isinstance(item, tuple | list):
        return tuple(item), {}
    return (item,), {}


class InferenceLearner:
    """One compiled model behind the original model's call signature and output type.

    Safe to call from several threads: calls run one at a time (a lock), ``run_many`` keeps
    ``concurrency`` requests in flight through the backend's runner."""

    def __init__(self, compiled: Compiled, io: LearnerIO, entry: WinnerEntry) -> None:
        self.compiled = compiled
        self.io = io
        self.entry = entry
        self._lock = threading.Lock()
        # A winner chosen for a load point and built for its batch's fixed shapes takes
        # fewer rows too: padded to its batch (a latency winner keeps refusing them).
        serving = entry.serving or {}
        self._pads = serving.get("objective", "latency") != "latency"

    def operating_point(self) -> dict[str, Any]:
        """See :meth:`WinnerEntry.operating_point`."""
        return self.entry.operating_point()

    def _flat(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        flat = self.io.flat_inputs(args, kwargs)
        self.io.check_shapes(flat)  # a clear error, not the runtime's, for a fixed shape
        fixed = getattr(self.compiled, "fixed_shapes", None)
        if fixed and not (self._pads and self._fits_padded(flat)):
            self.io.check_fixed_shapes(flat, fixed, self.entry)  # built for those shapes only
        return flat

    def _fits_padded(self, flat: tuple[Any, ...]) -> bool:
        fixed = dict(self.compiled.fixed_shapes)  # type: ignore[attr-defined]
        return all(
            tuple(value.shape[1:]) == tuple(fixed[name][1:]) and value.shape[0] <= fixed[name][0]
            for name, value in zip(self.io.input_names, flat, strict=True)
            if name in fixed
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flat = self._flat(args, kwargs)
        rows = fixed_rows(self.compiled) if self._pads else None
        with self._lock:
            if rows is not None and int(flat[0].shape[0]) < rows:
                padded = self.compiled(*pad_rows(tuple(flat), rows))
                outputs = split_rows(padded, [int(flat[0].shape[0])])[0]
            else:
                outputs = self.compiled(*flat)
        return self.io.output.rebuild(outputs, self.io.output_class)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Token ids as the model's ``generate()`` returns them (see
        :meth:`HardwareKeyedLearner.generate`)."""
        generate = getattr(self.compiled, "generate", None)
        if generate is None:
            raise TypeError(
                "generate() needs a learner optimized for generation (optimize_model(..., "
                "task='text-generation' or 'text2text-generation')); call this one like the model"
            )
        with self._lock:
            return generate(*args, **kwargs)

    def run_many(self, requests: Sequence[Any]) -> list[Any]:
        """The outputs of each request, in order, as :meth:`__call__` returns them; served
        at the operating point: ``batch_size`` requests per call (consecutive requests of
        one shape beyond the batch axis), ``concurrency`` calls in flight.

        A request is what one call takes: a dict (keyword arguments, e.g. a tokenizer's
        output), a tuple or list (positional arguments) or one tensor."""
        flats = [self._flat(*_request(item)) for item in requests]
        point = self.operating_point()
        with self._lock:
            served = serve_requests(
                self.compiled, flats, int(point["batch_size"]), int(point["concurrency"])
            )
        return [self.io.output.rebuild(out, self.io.output_class) for out in served]

    def __repr__(self) -> str:
        return f"InferenceLearner({self.entry.label} for {self.entry.hardware.key})"


@dataclass
class HardwareKeyedLearner:
    """Winners keyed by hardware type; calling it runs the winner for this machine.

    ``portable`` (optional) is the original model in a standard format, used where no
    winner fits the machine. ``data_only`` holds, per hardware type whose winner is saved as
    a program (TorchScript, torch.compile), its fastest candidate saved as data (ONNX,
    OpenVINO IR): without ``trust_code`` that one runs (else the portable fallback), with
    one warning naming the speed ``trust_code=True`` would give.
    ``selection`` says what the last default call chose and why.
    ``about`` records what it was made from (model name, metric, threshold, batch) for the
    model card; ``encoder`` (a sentence-transformer's learner) gives it :meth:`encode`.
    """

    io: LearnerIO
    entries: dict[str, WinnerEntry]
    summary: str = ""
    results: list[TrialResult] = field(default_factory=list)  # every trial of the search
    portable: SavedCandidate | None = None
    selection: Selection | None = None
    # Whether entries saved as programs (TorchScript, torch.export) may be loaded: True for
    # a learner this process made, the caller's choice for one read from disk.
    trust_code: bool = True
    # Only winners of this device kind run ("cpu", "gpu"); None: the fastest that fits.
    device: DeviceKind | None = None
    about: dict[str, Any] = field(default_factory=dict)
    encoder: SentenceEncoder | None = field(default=None, repr=False)
    data_only: dict[str, WinnerEntry] = field(default_factory=dict)
    _active: dict[str, InferenceLearner] = field(default_factory=dict, repr=False)
    # Selection and loading happen once, whichever thread calls first.
    _loading: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def hardware_types(self) -> list[str]:
        """The hardware types with a winner (the portable fallback is not one)."""
        return list(self.entries)

    def select(self, hardware_key: str | None = None) -> Selection:
        """What :meth:`for_hardware` would run for ``hardware_key`` (None: this machine)."""
        return select_entry(
            self.entries, self.portable, local_hardware_types(), hardware_key, self.device
        )

    def for_hardware(self, hardware_key: str | None = None) -> InferenceLearner:
        """The learner for ``hardware_key`` (default: this machine's type, else the closest
        compatible winner, else the portable fallback; a fallback warns once)."""
        with self._loading:
            if hardware_key is not None:
                selection = self.select(hardware_key)
            else:
                if self.selection is None:  # decided once: a fallback warns once, not per call
                    self.selection = self.select()
                    if self.selection.message:
                        warnings.warn(self.selection.message, stacklevel=3)
                selection = self.selection
            key, entry, instead = self._runnable(selection.key, selection.how == "explicit")
            if key not in self._active:
                compiled = load_compiled(key, entry, self.trust_code)
                self._active[key] = InferenceLearner(compiled, self.io, entry)
                if instead:  # once: when the stand-in is loaded
                    warnings.warn(instead, stacklevel=3)
            return self._active[key]

    def default_loads(self) -> dict[str, str]:
        """Per hardware type whose winner is a program: what ``load_model(path)`` (without
        ``trust_code``) runs there instead, in words (the search's summary prints it)."""
        notes = {}
        for key, entry in self.entries.items():
            if not needs_trust(entry.backend):
                continue
            alt = self.data_only.get(key)
            winner = f"the winner, {entry.label} ({entry_speed(entry)[1]}), is saved as a program"
            if alt is not None:
                what = f"{alt.label} ({entry_speed(alt)[1]}), its fastest data-only candidate"
            elif self.portable is not None and not needs_trust(self.portable.backend):
                what = "the portable fallback (the original model, not optimized)"
            else:
                notes[key] = f"{winner}: load_model(path) needs trust_code=True"
                continue
            notes[key] = f"load_model(path) runs {what}; {winner}: trust_code=True runs it"
        return notes

    def _runnable(self, key: str, explicit: bool = False) -> tuple[str, WinnerEntry, str]:
        """What runs for the selected entry ``key``: (its key among the loaded ones, the
        entry, why it stands in for the winner, or ""). A winner saved as a program, without
        ``trust_code``, is replaced by its type's fastest data-only candidate, else (unless
        that type was asked for by key) by the portable fallback when that is data; with
        neither, loading it says to trust it."""
        if key != PORTABLE_KEY:
            entry = self.entries[key]
            if self.trust_code or not needs_trust(entry.backend):
                return key, entry, ""
            alt = self.data_only.get(key)
            if alt is not None and not needs_trust(alt.backend):
                return key + DATA_ONLY_SUFFIX, alt, stand_in_message(key, entry, alt)
            if explicit or self.portable is None or needs_trust(self.portable.backend):
                return key, entry, ""  # load_compiled says trust_code=True is needed
        assert self.portable is not None
        # The fallback runs on the CPU, whatever device its trial ran on.
        fallback = portable_entry(replace(self.portable, device=DeviceKind.CPU.value))
        if key == PORTABLE_KEY:
            return key, fallback, ""
        return PORTABLE_KEY, fallback, stand_in_message(key, self.entries[key], None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.for_hardware()(*args, **kwargs)

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> Any:
        """Sentence embeddings, as ``SentenceTransformer.encode`` returns them: a 2-D numpy
        array (``convert_to_tensor``: a tensor; neither: a list of tensors), one vector for
        one text. The compiled transformer runs ``batch_size`` texts per call (a winner
        built for one batch size and length takes texts that way); pooling and
        normalization follow as the model's modules say. Only for a learner made from a
        ``SentenceTransformer`` (TypeError otherwise)."""
        if self.encoder is None:
            raise TypeError(
                "encode() needs a learner made from a SentenceTransformer; this one was made "
                "from another model: call it like that model instead"
            )
        return self.encoder.encode(
            self.for_hardware(),
            sentences,
            batch_size=batch_size,
            normalize_embeddings=normalize_embeddings,
            convert_to_numpy=convert_to_numpy,
            convert_to_tensor=convert_to_tensor,
        )

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Generate with this machine's winner: ``generate(input_ids=..., attention_mask=...,
        max_new_tokens=32, do_sample=False, ...)`` (a tokenizer's dict as ``**inputs``)
        returns a tensor of token ids as Hugging Face ``generate()`` does (prompt first for a
        decoder-only model; the decoder's tokens, start token first, for an encoder-decoder).
        Greedy by default; ``do_sample=True`` with ``temperature``, ``top_k``, ``top_p`` and a
        seeded ``generator``. A learner made for generation only (TypeError otherwise);
        calling it (``learner(**inputs)``) returns the prompt's next-token logits."""
        return self.for_hardware().generate(*args, **kwargs)

    def operating_point(self, hardware_key: str | None = None) -> dict[str, Any]:
        """The operating point the winner for ``hardware_key`` (default: the one this
        machine runs) was chosen for: at least ``batch_size``, ``concurrency``,
        ``throughput`` (requests a second) and ``p99_ms``, as measured by the search."""
        return self.for_hardware(hardware_key).operating_point()

    def run_many(self, requests: Sequence[Any]) -> list[Any]:
        """Each request's outputs, in order, served at this machine's winner's operating
        point (see :meth:`InferenceLearner.run_many`)."""
        return self.for_hardware().run_many(requests)

    def save(
        self, path: str | Path, signing_key: Any = None, *, kit_sha256: str | None = None
    ) -> Path:
        """Write the learner under ``path`` (see :func:`speedster_dist.artifacts.save_learner`:
        saving over a saved learner is atomic and leaves other files alone). ``signing_key``
        (an HMAC-SHA256 secret, or an Ed25519 private key as an object, PEM or
        ``ed25519:<hex>``: the key's form decides the algorithm; default: the
        ``SPEEDSTER_DIST_SIGNING_KEY`` variable) signs the manifest. What you re-save is
        what you loaded: load it with ``verify_key`` first. ``kit_sha256``: the digest of
        the rebench kit's ``kit.json`` written there first, so that the signature covers it.
        A ``README.md`` model card is written with it (and listed in the manifest).
        """
        encoding = self.encoder.encoding if self.encoder is not None else None
        return save_learner(
            path,
            self.io,
            self.entries,
            self.portable,
            signing_key,
            kit_sha256,
            about=self.about,
            encoder=encoding,
            data_only=self.data_only,
        )


class LearnerMetadata(Manifest):
    """A saved learner's verified manifest, and the learner it describes: Speedster's loading
    entry point, ``LearnerMetadata.read(path).load_model(path)``. What the folder holds is
    :class:`~speedster_dist.artifacts.Manifest`'s (reading it never builds a learner)."""

    def load_model(
        self,
        path: str | Path | None = None,
        hardware_key: str | None = None,
        *,
        trust_code: bool = False,
        device: str | None = None,
    ) -> HardwareKeyedLearner:
        """The learner of this artifact, its entry for this machine loaded now (so that a
        broken artifact fails here): ``hardware_key``'s entry (``"portable"`` for the
        fallback) or, by default, this machine's (see
        :func:`speedster_dist.artifacts.select_entry`), warning when it falls back.
        ``trust_code``: see :func:`speedster_dist.load_model`."""
        root = Path(path) if path is not None else self.path
        encoding = self.encoding(root)
        learner = HardwareKeyedLearner(
            self.io(),
            self.entries(root),
            portable=self.portable(root),
            trust_code=trust_code,
            device=_device(device),
            about=self.about(),
            encoder=SentenceEncoder(encoding) if encoding is not None else None,
            data_only=self.data_only(root),
        )
        if hardware_key is not None:  # calling the learner runs the asked-for entry
            learner.selection = learner.select(hardware_key)
        learner.for_hardware()
        if learner.encoder is not None:  # its tokenizer's files are read and checked now too
            learner.encoder.load_tokenizer()
        return learner


def _device(device: str | None) -> DeviceKind | None:
    if device is None:
        return None
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be None, 'cpu' or 'gpu', got {device!r}")
    return DeviceKind(device)


def load_model(
    path: str | Path,
    hardware_key: str | None = None,
    *,
    device: str | None = None,
    trust_code: bool = False,
    verify_key: Any = None,
) -> HardwareKeyedLearner:
    """Load a learner saved with :meth:`HardwareKeyedLearner.save`.

    The folder is untrusted input (it may come from a shared drive or a registry):

    - every name in its manifest must be a plain relative path, no symbolic link may exist
      anywhere in it, and only files the manifest lists, each matching its SHA-256, are read;
      load options may only name those files and allow-listed values;
    - data formats (ONNX, OpenVINO IR, TensorRT engines) load by default; formats that are
      programs (TorchScript, torch.export archives: an eager or TorchScript winner, a
      torch.compile winner) load only with ``trust_code=True``, like Hugging Face's
      ``trust_remote_code``: checksums do not make a program safe to run; without it, the
      fastest data-only candidate measured on that hardware type runs instead (else the
      portable fallback), with one warning naming the speed ``trust_code=True`` would give;
    - with ``verify_key`` (or the ``SPEEDSTER_DIST_VERIFY_KEY`` variable) the manifest must
      carry a valid signature by that key (an HMAC-SHA256 secret, or an Ed25519 public key
      as an object, PEM, ``ssh-ed25519`` line or 64 hex digits; the key's form decides the
      algorithm, never the manifest, and a variable set but empty is an error): without a
      signature, anyone who can write the folder can rewrite its checksums too;
    - only the selected entry is read; its files are copied, verified, to a private
      temporary folder that is removed with the learner.

    Which entry runs: this machine's hardware type (on a GPU node, the faster of its CPU's
    and its GPU's winners), else the closest compatible one, else the portable fallback on
    the CPU; ``device="cpu"`` or ``"gpu"`` restricts it to that device kind, ``hardware_key``
    names one.

    Every problem with the folder raises :class:`speedster_dist.artifacts.ArtifactError`.
    """
    return LearnerMetadata.read(path, verify_key).load_model(
        path, hardware_key, trust_code=trust_code, device=device
    )
