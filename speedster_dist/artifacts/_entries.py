"""What a learner is made of: how the original is called, and one winner per hardware type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speedster_dist.errors import ShapeError
from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, SavedCandidate

if TYPE_CHECKING:
    import torch

__all__ = ["PORTABLE_KEY", "LearnerIO", "ShapeError", "WinnerEntry", "portable_entry"]

# The key (and ``hardware_key=`` value) of the portable fallback.
PORTABLE_KEY = "portable"


_DYNAMIC_HELP = (
    "optimize the model again with samples of several shapes, or with "
    'dynamic_info={"inputs": [{0: "batch", 1: "sequence"}, ...]} (one {axis: name} dict '
    "per input) to get a learner that takes other sizes on those axes"
)


@dataclass(frozen=True)
class LearnerIO:
    """How the original model is called and what it returns.

    ``input_shapes`` (one per input) are the shapes the learner was built for, ``None`` on
    its dynamic axes (any size); ``None`` altogether when unknown (older learners).
    """

    input_names: tuple[str, ...]
    keyword: bool
    output: OutputSpec
    output_class: type | None = None  # the live ModelOutput class (not saved: re-resolved)
    input_shapes: tuple[tuple[int | None, ...], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_names": list(self.input_names),
            "keyword": self.keyword,
            "output": self.output.to_json(),
        }
        if self.input_shapes is not None:
            data["input_shapes"] = [list(shape) for shape in self.input_shapes]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnerIO:
        shapes = data.get("input_shapes")
        return cls(
            tuple(str(n) for n in data["input_names"]),
            bool(data["keyword"]),
            OutputSpec.from_json(data["output"]),
            input_shapes=tuple(tuple(s) for s in shapes) if shapes is not None else None,
        )

    def _described(self) -> str:
        assert self.input_shapes is not None
        return ", ".join(
            f"{name} {_shape_text(shape)}"
            for name, shape in zip(self.input_names, self.input_shapes, strict=True)
        )

    def check_shapes(self, flat: tuple[Any, ...]) -> None:
        """Raise :class:`ShapeError` when ``flat`` differs from the built shapes on an axis
        that is not dynamic (no backend of this learner was built to take it)."""
        if self.input_shapes is None:
            return
        for name, built, value in zip(self.input_names, self.input_shapes, flat, strict=True):
            shape = tuple(getattr(value, "shape", ()))
            if len(shape) != len(built) or any(
                want is not None and want != got for want, got in zip(built, shape, strict=True)
            ):
                raise ShapeError(
                    f"this learner was built for {self._described()}; it was "
                    f"called with {name} of shape {list(shape)}. To take other shapes, "
                    + _DYNAMIC_HELP
                )

    def check_fixed_shapes(
        self, flat: tuple[Any, ...], fixed: Mapping[str, tuple[int, ...]], entry: WinnerEntry
    ) -> None:
        """Raise :class:`ShapeError` when ``flat`` differs from the ``fixed`` shapes a winner
        was built for (a backend that is faster with fixed shapes keeps the samples')."""
        for name, value in zip(self.input_names, flat, strict=True):
            shape = tuple(getattr(value, "shape", ()))
            if name in fixed and shape != tuple(fixed[name]):
                built = ", ".join(f"{n} {_shape_text(tuple(s))}" for n, s in fixed.items())
                raise ShapeError(
                    f"the {entry.label} winner was built for {built} only (it runs faster "
                    "with fixed shapes, so it keeps the samples' shape by default); it was "
                    f"called with {name} of shape {list(shape)}. To take other shapes, "
                    'optimize again with dynamic_info={"inputs": [{0: "batch", 1: '
                    '"sequence"}, ...]} (every backend then builds for any size on those '
                    f"axes), or with ignore_compilers=[{entry.backend!r}]"
                )

    def flat_inputs(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor, ...]:
        """Map a call of the original model's signature onto the flat input order."""
        import torch

        values: dict[str, Any] = dict(zip(self.input_names, args, strict=False))
        if len(args) > len(self.input_names):
            raise TypeError(f"expected at most {len(self.input_names)} inputs, got {len(args)}")
        for name, value in kwargs.items():
            if name in self.input_names:
                values[name] = value
            elif isinstance(value, torch.Tensor):
                raise TypeError(
                    f"unexpected input {name!r}; this model takes {list(self.input_names)}"
                )
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"missing inputs {missing}; this model takes {list(self.input_names)}")
        return tuple(values[n] for n in self.input_names)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("any" if size is None else str(size) for size in shape) + "]"


@dataclass(frozen=True)
class WinnerEntry:
    """The winner of one hardware type: what it is, what it measured, its files, and
    ``serving``: the operating point it was chosen for (see :meth:`operating_point`; None
    in a learner saved before operating points, or a portable fallback)."""

    hardware: HardwareType
    backend: str
    precision: str
    technique: str
    knobs: dict[str, Any]
    metrics: dict[str, Any]
    saved: SavedCandidate
    serving: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        tech = f"/{self.technique}" if self.technique else ""
        return f"{self.backend} {self.precision}{tech}"

    def operating_point(self) -> dict[str, Any]:
        """How this winner is served: ``batch_size`` (requests per call), ``concurrency``
        (calls in flight), ``throughput`` (requests a second) and ``p99_ms`` (per request)
        as measured, with the knobs, memory and objective when known. Without a recorded
        point (an older learner, the fallback): one request per call, one at a time, its
        throughput from the p50 when measured, ``measured`` False where nothing was."""
        if self.serving is not None:
            return {**self.serving, "knobs": dict(self.serving.get("knobs", self.knobs))}
        p50, p99 = self.metrics.get("latency_p50_s"), self.metrics.get("latency_p99_s")
        return {
            "objective": "latency",
            "batch_size": 1,
            "concurrency": 1,
            "knobs": dict(self.knobs),
            "throughput": 1.0 / p50 if p50 else None,
            "p50_ms": p50 * 1e3 if p50 else None,
            "p99_ms": p99 * 1e3 if p99 else None,
            "measured": bool(p50),
        }


def portable_entry(saved: SavedCandidate) -> WinnerEntry:
    """The portable fallback (the original model in a standard format) as an entry."""
    hardware = HardwareType(
        PORTABLE_KEY, DeviceKind(saved.device), "the original model, not optimized for any type"
    )
    return WinnerEntry(hardware, saved.backend, "fp32", "", {}, {}, saved)
