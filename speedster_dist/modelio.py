"""The flat view of a user's model that every backend consumes, and the way back.

A :class:`FlatModule` takes tensors positionally and returns a tuple of tensors; an
:class:`OutputSpec` remembers how to rebuild the original output (a tensor, a tuple, a dict
or a Hugging Face ``ModelOutput``) from that tuple.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from speedster_dist.backends import SourceModel

__all__ = [
    "FlatModule",
    "OutputSpec",
    "derive_dynamic_axes",
    "hf_text_axes",
    "make_source_model",
    "model_fingerprint",
    "resolve_output_class",
]

_TENSOR, _TUPLE, _LIST, _DICT, _MODEL_OUTPUT = "tensor", "tuple", "list", "dict", "model_output"


@dataclass(frozen=True)
class OutputSpec:
    """How the original model's output maps to a flat tuple of tensors and back."""

    kind: str
    names: tuple[str, ...]
    class_path: str = ""  # "module:QualName" of a ModelOutput class

    @classmethod
    def of(cls, output: Any) -> OutputSpec:
        """Describe ``output`` (one call's result). Raises ValueError for unsupported nests."""
        if isinstance(output, torch.Tensor):
            return cls(_TENSOR, ("output_0",))
        if _is_model_output(output):
            keys = tuple(k for k, v in output.items() if v is not None)
            _require_tensors(output[k] for k in keys)
            klass = type(output)
            return cls(_MODEL_OUTPUT, keys, f"{klass.__module__}:{klass.__qualname__}")
        if isinstance(output, Mapping):
            keys = tuple(str(k) for k in output)
            _require_tensors(output.values())
            return cls(_DICT, keys)
        if isinstance(output, tuple | list):
            _require_tensors(output)
            kind = _TUPLE if isinstance(output, tuple) else _LIST
            return cls(kind, tuple(f"output_{i}" for i in range(len(output))))
        raise ValueError(f"model output of type {type(output).__name__} is not supported")

    def flatten(self, output: Any) -> tuple[torch.Tensor, ...]:
        if self.kind == _TENSOR:
            return (output,)
        if self.kind in (_DICT, _MODEL_OUTPUT):
            return tuple(output[k] for k in self.names)
        return tuple(output)

    def rebuild(self, flat: Sequence[torch.Tensor], output_class: type | None = None) -> Any:
        """The original output structure from ``flat``; ``output_class`` overrides the lookup."""
        if self.kind == _TENSOR:
            return flat[0]
        if self.kind == _TUPLE:
            return tuple(flat)
        if self.kind == _LIST:
            return list(flat)
        values = dict(zip(self.names, flat, strict=True))
        if self.kind == _MODEL_OUTPUT:
            klass = output_class or resolve_output_class(self.class_path)
            if klass is not None:
                return klass(**values)
        return values

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "names": list(self.names), "class_path": self.class_path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputSpec:
        kind = str(data["kind"])
        if kind not in (_TENSOR, _TUPLE, _LIST, _DICT, _MODEL_OUTPUT):
            raise ValueError(f"unknown output kind {kind!r}")
        return cls(kind, tuple(str(n) for n in data["names"]), str(data.get("class_path", "")))


def _is_model_output(value: Any) -> bool:
    try:
        from transformers.utils import ModelOutput
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return isinstance(value, ModelOutput)


def _require_tensors(values: Any) -> None:
    for value in values:
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"model outputs must be tensors, found a {type(value).__name__} "
                "(nested outputs such as caches are not supported; pass use_cache=False)"
            )


def resolve_output_class(class_path: str) -> type | None:
    """Import a ModelOutput class by name, but only from ``transformers`` (never user code).

    Artifacts are data: a name read from a manifest may only pick an existing class of the
    transformers package that subclasses ``ModelOutput``; anything else gives None (a dict).
    """
    module_name, _, qualname = class_path.partition(":")
    if not module_name.startswith("transformers.") or not qualname.isidentifier():
        return None
    try:
        from transformers.utils import ModelOutput

        klass = getattr(importlib.import_module(module_name), qualname, None)
    except ImportError:
        return None
    if isinstance(klass, type) and issubclass(klass, ModelOutput):
        return klass
    return None


class FlatModule(torch.nn.Module):
    """Calls the user's model with positional tensors and returns a flat tensor tuple."""

    def __init__(
        self,
        model: torch.nn.Module,
        input_names: Sequence[str],
        keyword: bool,
        output_spec: OutputSpec | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.keyword = keyword
        self.output_spec = output_spec
        self.fixed_kwargs = _fixed_kwargs(model)

    def call_original(self, *tensors: torch.Tensor) -> Any:
        if self.keyword:
            return self.model(
                **dict(zip(self.input_names, tensors, strict=True)), **self.fixed_kwargs
            )
        return self.model(*tensors, **self.fixed_kwargs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.call_original(*tensors)
        spec = self.output_spec or OutputSpec.of(output)
        return spec.flatten(output)


def _fixed_kwargs(model: torch.nn.Module) -> dict[str, Any]:
    # Hugging Face models: a dict-like output and no key/value cache, so that every output
    # is a plain tensor that exports and compares cleanly.
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    fixed: dict[str, Any] = {}
    if "use_cache" in params:
        fixed["use_cache"] = False
    if "return_dict" in params:
        fixed["return_dict"] = True
    return fixed


@dataclass
class AxesReport:
    """Dynamic axes derived from samples, and the problems found while deriving them."""

    axes: dict[str, dict[int, str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def derive_dynamic_axes(
    names: Sequence[str], tensors_per_sample: Sequence[Sequence[torch.Tensor]]
) -> AxesReport:
    """Axes whose size differs between samples become dynamic (``{name}_dim{axis}``).

    Tensors whose number of dimensions differs between samples cannot be described by
    dynamic axes: they are reported as problems.
    """
    report = AxesReport()
    for index, name in enumerate(names):
        shapes = {tuple(sample[index].shape) for sample in tensors_per_sample}
        ranks = {len(shape) for shape in shapes}
        if len(ranks) > 1:
            report.problems.append(
                f"{name!r} has shapes of different ranks across samples: {sorted(shapes)}"
            )
            continue
        rank = ranks.pop()
        varying = {axis for axis in range(rank) if len({shape[axis] for shape in shapes}) > 1}
        if varying:
            report.axes[name] = {axis: f"{name}_dim{axis}" for axis in sorted(varying)}
    return report


def model_fingerprint(model: torch.nn.Module | None, extra: str = "") -> str:
    """A stable hash of a model's weights and ``extra`` (io names, shapes, settings)."""
    digest = hashlib.sha256(extra.encode())
    if model is not None:
        digest.update(type(model).__qualname__.encode())
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(
                tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            )
    return digest.hexdigest()[:16]


def make_source_model(
    model: torch.nn.Module,
    input_names: Sequence[str],
    samples: Sequence[tuple[torch.Tensor, ...]],
    keyword: bool,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> tuple[SourceModel, OutputSpec]:
    """Wrap ``model`` as the flat :class:`SourceModel` backends consume.

    Runs the model once on ``samples[0]`` to learn its output structure. When
    ``dynamic_axes`` is None they are derived from the samples' shapes (see
    :func:`derive_dynamic_axes`); output axes follow from running a second, differently
    shaped sample when there is one.
    """
    model = model.eval()
    probe = FlatModule(model, input_names, keyword)
    with torch.inference_mode():
        first = probe.call_original(*samples[0])
    spec = OutputSpec.of(first)
    flat = FlatModule(model, input_names, keyword, spec).eval()  # nn.Module starts in training mode
    axes = {k: dict(v) for k, v in (dynamic_axes or {}).items()}
    by_default = False
    if dynamic_axes is None:
        axes = derive_dynamic_axes(input_names, samples).axes
        text_axes = hf_text_axes(model, input_names, samples[0])
        by_default = bool(text_axes) and not axes  # no sample varies: only the default
        for name, default in text_axes.items():
            axes[name] = {**default, **axes.get(name, {})}
        probes = list(samples)
        if text_axes:  # a second shape, so that the output axes that follow are found
            probes.append(_reshaped(samples[0], input_names, text_axes))
        axes.update(_output_axes(flat, spec, probes, axes))
    from speedster_dist.backends import SourceModel

    source = SourceModel(
        input_names=tuple(input_names),
        output_names=spec.names,
        example_inputs=tuple(samples[0]),
        module=flat,
        dynamic_axes=axes,
        fingerprint=model_fingerprint(model, f"{tuple(input_names)}{axes}"),
        hf_config=_hf_config(model),
        dynamic_by_default=by_default,
    )
    return source, spec


def hf_text_axes(
    model: torch.nn.Module, input_names: Sequence[str], sample: Sequence[torch.Tensor]
) -> dict[str, dict[int, str]]:
    """Batch and sequence axes of a Hugging Face text model's token inputs, dynamic by default.

    The original model takes any batch size and any length up to its maximum, and so must
    its learner: every 2-D integer input (ids, masks, token types) of a model with a
    Hugging Face config gets ``{0: "batch", 1: "sequence"}`` (``decoder_*`` inputs their own
    ``decoder_sequence``). Anything else (images, float features) keeps its samples' shape.
    """
    if _hf_config(model) is None:
        return {}
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in zip(input_names, sample, strict=True):
        if tensor.dim() == 2 and not tensor.is_floating_point() and tensor.dtype != torch.bool:
            sequence = "decoder_sequence" if name.startswith("decoder_") else "sequence"
            axes[name] = {0: "batch", 1: sequence}
    return axes


def _reshaped(
    sample: Sequence[torch.Tensor],
    input_names: Sequence[str],
    axes: Mapping[str, Mapping[int, str]],
) -> tuple[torch.Tensor, ...]:
    """``sample`` with its batch doubled and its sequences one token shorter (or longer
    when one token long): a probe of another shape, made of the sample's own values."""
    probe = []
    for name, tensor in zip(input_names, sample, strict=True):
        if name in axes:
            tensor = torch.cat([tensor, tensor], dim=0)
            length = tensor.shape[1]
            tensor = tensor[:, : length - 1] if length > 1 else torch.cat([tensor, tensor], dim=1)
        probe.append(tensor)
    return tuple(probe)


def _output_axes(
    flat: FlatModule,
    spec: OutputSpec,
    samples: Sequence[tuple[torch.Tensor, ...]],
    input_axes: Mapping[str, Any],
) -> dict[str, dict[int, str]]:
    if not input_axes:
        return {}
    other = next(
        (s for s in samples[1:] if [t.shape for t in s] != [t.shape for t in samples[0]]), None
    )
    if other is None:
        return {}
    with torch.inference_mode():
        outs = [flat(*samples[0]), flat(*other)]
    return derive_dynamic_axes(spec.names, outs).axes


def _hf_config(model: torch.nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    if to_dict is None:
        return None
    try:
        return dict(to_dict())
    except Exception:  # a config that cannot serialise itself is simply not used
        return None
