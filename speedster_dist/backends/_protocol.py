"""The contract every backend implements, and the data it declares about itself.

A backend is one module exposing a ``BACKEND`` object that satisfies :class:`Backend`.
What it can do (devices, precisions, techniques, knobs) is *data* on that object; the
search space is derived from it (``speedster_dist.search``), never listed by hand.
Backends never time themselves: the trial runner in ``runtime`` does, through ``measure``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from speedster_dist.errors import UnsupportedCandidate
from speedster_dist.records import Capability, DeviceKind, HardwareType, Knob, Precision

if TYPE_CHECKING:
    import torch

__all__ = [
    "Backend",
    "BuildConfig",
    "Capability",
    "Compiled",
    "Knob",
    "SourceModel",
    "UnsupportedCandidate",
    "build_notes",
    "device_call",
    "throughput_knobs",
]

Tensors = tuple["torch.Tensor", ...]


@dataclass
class SourceModel:
    """The model in the flat form every backend consumes.

    ``module`` (when the user gave a torch model) takes ``len(input_names)`` tensors
    positionally and returns a tuple of ``len(output_names)`` tensors.
    ``onnx_path`` is set when the user gave an ONNX file (``module`` is then None).
    ``dynamic_axes`` maps an input or output name to ``{axis: symbolic name}``;
    empty means static shapes.
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    example_inputs: Tensors
    module: torch.nn.Module | None = None
    onnx_path: Path | None = None
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    fingerprint: str = ""  # stable hash of weights + io; keys caches such as ONNX exports
    hf_config: Mapping[str, Any] | None = None  # Hugging Face config dict, when there is one
    # True when every dynamic axis is only the default of a Hugging Face text model (no
    # sample varies along it and the user did not ask for it): a backend that runs faster
    # with fixed shapes may then build for the example's shape (and say so).
    dynamic_by_default: bool = False
    # Generation (docs/generation.md): "text-generation" or "text2text-generation", with
    # ``module`` the Hugging Face model itself and every trial timing ``generate()`` of
    # ``max_new_tokens`` tokens; "" for a forward pass. Its source format is "generate"
    # ("generate-seq2seq" for an encoder-decoder: what a decoder-only technique refuses).
    task: str = ""
    max_new_tokens: int = 0

    @property
    def source_format(self) -> str:
        if self.task == "text2text-generation":
            return "generate-seq2seq"
        if self.task:
            return "generate"
        return "onnx" if self.module is None else "torch"


@dataclass(frozen=True)
class BuildConfig:
    """What to build: one candidate's precision, technique and knobs, for one device."""

    precision: Precision
    device: DeviceKind
    technique: str = ""
    knobs: Mapping[str, Any] = field(default_factory=dict)
    hardware: HardwareType | None = None


@runtime_checkable
class Compiled(Protocol):
    """A built model. Called like the flat source module: tensors in, tuple of tensors out.

    Outputs may stay on the model's device (the caller moves what it inspects). A compiled
    model whose ``__call__`` must copy its outputs to the host may also offer
    ``run_on_device(*inputs)``, one call that leaves them on the device: the trial runner
    times that instead, so that every backend is timed alike. It may also carry ``notes``
    (a tuple of short lines, e.g. int8 calibrated on few distinct samples): the trial records
    them (``TrialResult.notes``) and the summary prints them under its hardware type.

    Several requests in flight: a compiled model may offer ``runner(concurrency)``, a
    :class:`speedster_dist.serving.Runner` on its library's own asynchronous API that declares
    (as data, ``runner.overlap``) whether requests really overlap; without one,
    :func:`speedster_dist.backends.runner_for` runs calls on threads and declares no overlap.
    """

    def __call__(self, *inputs: torch.Tensor) -> Tensors: ...

    def save(self, directory: Path) -> dict[str, Any]:
        """Write standard model files into ``directory``; return JSON-able load options.

        Called by the trial runner once a candidate is kept. The files and the returned
        options are all :meth:`Backend.load` may rely on: no pickles.
        """
        ...


class Backend(Protocol):
    """One way of building and running a model (ONNX Runtime, OpenVINO, TorchScript...)."""

    name: str
    capabilities: tuple[Capability, ...]
    knobs: tuple[Knob, ...]
    # True when what ``Compiled.save`` writes is a program (TorchScript, pickles): loading a
    # saved artifact of this backend then needs the caller's ``trust_code=True``.
    saves_code: bool
    # The load options that name a saved file: the loader checks they name listed files.
    file_options: tuple[str, ...]
    # Optional (read through :func:`throughput_knobs`): knobs that pay off only with several
    # requests in flight or large batches (threads per call...). The search tunes them when
    # it optimizes throughput or cost, not latency.
    # Optional (read by the node's catalog): ``parts``, the registered backends a composite
    # backend runs (``generate_split``): a request that ignores one of them ignores it too.

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        """None when the backend can run on ``device`` in this process, else why not.

        Must be cheap and must not raise when the backend's library is missing or broken.
        """
        ...

    def build(
        self,
        model: SourceModel,
        calibration: Sequence[Tensors],
        config: BuildConfig,
        workdir: Path,
    ) -> Compiled:
        """Build the candidate. ``calibration`` are held-in samples (static quantization).

        Raise :class:`UnsupportedCandidate` for "this model cannot be built this way";
        any other exception is also recorded as a failed trial.
        """
        ...

    def load(self, directory: Path, options: Mapping[str, Any], device: DeviceKind) -> Compiled:
        """Rebuild a compiled model from what :meth:`Compiled.save` wrote (no unpickling)."""
        ...


def throughput_knobs(backend: object) -> tuple[Knob, ...]:
    """The backend's optional ``throughput_knobs`` (none when it declares none)."""
    knobs = getattr(backend, "throughput_knobs", ())
    return tuple(knobs)


def device_call(compiled: Compiled) -> Callable[..., Any]:
    """What a caller times: the optional ``run_on_device`` (outputs left on the device)
    where the compiled model offers it, else the model itself."""
    return getattr(compiled, "run_on_device", None) or compiled


def build_notes(compiled: Compiled) -> tuple[str, ...]:
    """The compiled model's optional ``notes`` (short lines for the summary), as strings."""
    return tuple(str(note) for note in getattr(compiled, "notes", ()))
