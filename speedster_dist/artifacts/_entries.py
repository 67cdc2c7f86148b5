"""What a learner is made of: how the original is called, and one winner per hardware type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speedster_dist.modelio import OutputSpec
from speedster_dist.records import DeviceKind, HardwareType, SavedCandidate

if TYPE_CHECKING:
    import torch

__all__ = ["PORTABLE_KEY", "LearnerIO", "WinnerEntry", "portable_entry"]

# The key (and ``hardware_key=`` value) of the portable fallback.
PORTABLE_KEY = "portable"


@dataclass(frozen=True)
class LearnerIO:
    """How the original model is called and what it returns."""

    input_names: tuple[str, ...]
    keyword: bool
    output: OutputSpec
    output_class: type | None = None  # the live ModelOutput class (not saved: re-resolved)

    def to_json(self) -> dict[str, Any]:
        return {
            "input_names": list(self.input_names),
            "keyword": self.keyword,
            "output": self.output.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnerIO:
        return cls(
            tuple(str(n) for n in data["input_names"]),
            bool(data["keyword"]),
            OutputSpec.from_json(data["output"]),
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


@dataclass(frozen=True)
class WinnerEntry:
    """The winner of one hardware type: what it is, what it measured, its files."""

    hardware: HardwareType
    backend: str
    precision: str
    technique: str
    knobs: dict[str, Any]
    metrics: dict[str, Any]
    saved: SavedCandidate

    @property
    def label(self) -> str:
        tech = f"/{self.technique}" if self.technique else ""
        return f"{self.backend} {self.precision}{tech}"


def portable_entry(saved: SavedCandidate) -> WinnerEntry:
    """The portable fallback (the original model in a standard format) as an entry."""
    hardware = HardwareType(
        PORTABLE_KEY, DeviceKind(saved.device), "the original model, not optimized for any type"
    )
    return WinnerEntry(hardware, saved.backend, "fp32", "", {}, {}, saved)
