"""Deterministic fake backends with known latencies, build times and failure modes.

Register them for a test (and for Ray workers started afterwards) with::

    monkeypatch.setenv("SPEEDSTER_DIST_BACKENDS", FAKE_BACKENDS)

``fake`` is well behaved: fp32 takes 4 ms a call, fp16 2 ms with a small error, int8 1 ms with
an error of about 0.5 (over any sensible threshold). ``fake_faulty`` fails politely: its
``raise`` candidate raises in build, ``garbage`` returns wrong outputs at fp32.
``fake_deadly`` must only run in a separate process (a Ray task): ``crash`` kills its
process, ``hang`` never returns. Outputs are otherwise the real model's outputs.
``FLOAT_LAYERS`` (``fake_layers=speedster_dist.testing.fakes:FLOAT_LAYERS``, not in
``FAKE_BACKENDS``) has an int8 whose ``fp_layers`` knob trades speed for accuracy.
``SERVING`` (:data:`SERVING_BACKENDS`, not in ``FAKE_BACKENDS``) serves load points on a
known curve: a call of ``b`` rows takes ``2 + 2b`` ms (sleeping, so calls in flight overlap
fully); its ``fixed`` technique is built for the example's shapes only, like OpenVINO's
default text axes, and refuses any other shape.

:class:`SimulatedRunner` on a :class:`VirtualClock` serves requests in flight with an exact
per-call latency and no real waiting, so load generation is checked against arithmetic.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from speedster_dist.backends._protocol import BuildConfig, Capability, Knob, SourceModel, Tensors
from speedster_dist.backends._torch_common import (
    TorchCompiled,
    load_torchscript,
    require_module,
    save_portable,
)
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import Done, Overlap

__all__ = [
    "BACKEND",
    "DEADLY",
    "FAKE_BACKENDS",
    "FAULTY",
    "FLOAT_LAYERS",
    "OOM",
    "SERVING",
    "SERVING_BACKENDS",
    "Behaviour",
    "FakeBackend",
    "FloatLayersBackend",
    "SimulatedRunner",
    "VirtualClock",
]

FAKE_BACKENDS = (
    "fake=speedster_dist.testing.fakes:BACKEND,fake_faulty=speedster_dist.testing.fakes:FAULTY,"
    "fake_deadly=speedster_dist.testing.fakes:DEADLY"
)


@dataclass(frozen=True)
class Behaviour:
    """What one (precision, technique) of a fake backend does."""

    latency_s: float = 0.004
    build_s: float = 0.0
    relative_error: float = 0.0
    failure: str = ""  # "", "raise", "crash", "hang", "oom"
    per_row_s: float = 0.0  # added to latency_s for each row of the call's batch
    fixed_shapes: bool = False  # built for the example's shapes only (refuses others)


class _FakeCompiled(TorchCompiled):
    notes: tuple[str, ...] = ()

    def __init__(
        self, module: torch.nn.Module, example: Tensors, behaviour: Behaviour, scale: float
    ) -> None:
        super().__init__(module, DeviceKind.CPU)
        self._module = module
        self._example = example
        self._behaviour = behaviour
        self._scale = scale
        self.fixed_shapes: dict[str, tuple[int, ...]] = {}

    def __call__(self, *inputs: torch.Tensor) -> Tensors:
        if self._behaviour.failure == "hang":
            time.sleep(3600)
        if self.fixed_shapes and [tuple(t.shape) for t in inputs] != list(
            self.fixed_shapes.values()
        ):
            raise RuntimeError(f"built for {self.fixed_shapes} only")
        outputs = super().__call__(*inputs)
        # Sleeping (not spinning) keeps the known latency even when other processes load the
        # CPU: a spinning loop gets preempted and measures longer than planned.
        rows = int(inputs[0].shape[0]) if inputs and inputs[0].dim() else 1
        behaviour = self._behaviour
        time.sleep((behaviour.latency_s + behaviour.per_row_s * rows) * self._scale)
        error = self._behaviour.relative_error
        return tuple(o * (1 + error) if o.is_floating_point() else o for o in outputs)

    def save(self, directory: Path) -> dict[str, Any]:
        if self._portable is None:
            self._portable = save_portable(self._module, self._example)
        options = super().save(directory)
        (directory / "behaviour.json").write_text(json.dumps(self._behaviour.__dict__))
        return options


class FakeBackend:
    """A backend whose speed and accuracy are set by a table, for driver and search tests.

    The ``slowdown`` knob multiplies latency (choices 1, 2, 4), so knob tuning has a known best.
    """

    saves_code = True  # TorchScript, like the eager baseline
    file_options = ("file",)

    def __init__(self, name: str, behaviours: Mapping[tuple[Precision, str], Behaviour]) -> None:
        self.name = name
        self._behaviours = dict(behaviours)
        self.capabilities = tuple(
            Capability(DeviceKind.CPU, precision, technique, sources=frozenset({"torch"}))
            for precision, technique in self._behaviours
        )
        self.knobs = (Knob("slowdown", (1, 2, 4), frozenset({DeviceKind.CPU})),)

    def unavailable_reason(self, device: DeviceKind) -> str | None:
        return None if device is DeviceKind.CPU else "fake backends run on CPU only"

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> TorchCompiled:
        behaviour = self._behaviours[(config.precision, config.technique)]
        time.sleep(behaviour.build_s)
        if behaviour.failure == "raise":
            raise RuntimeError(f"{self.name}: planted build failure")
        if behaviour.failure == "crash":
            os._exit(17)  # what a segfaulting native library looks like to the caller
        if behaviour.failure == "oom":
            _exhaust_memory()
        scale = float(config.knobs.get("slowdown", 1))
        compiled = _FakeCompiled(require_module(model), model.example_inputs, behaviour, scale)
        if behaviour.fixed_shapes:
            shapes = (tuple(t.shape) for t in model.example_inputs)
            compiled.fixed_shapes = dict(zip(model.input_names, shapes, strict=True))
        return compiled

    def load(
        self, directory: Path, options: Mapping[str, Any], device: DeviceKind
    ) -> TorchCompiled:
        return load_torchscript(directory, options, device)


# Room left to a process by the "oom" behaviour's cap on its address space.
OOM_HEADROOM_BYTES = 256 << 20


def _exhaust_memory() -> None:
    """Cap this process's address space a little above what it uses, then allocate past
    the cap: a MemoryError, as a candidate that needs more memory than the machine has
    meets it, without touching the machine's memory (the cap stays with the process)."""
    import resource

    status = Path("/proc/self/status").read_text()
    used_kb = int(
        next(line for line in status.splitlines() if line.startswith("VmSize:")).split()[1]
    )
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used_kb * 1024 + OOM_HEADROOM_BYTES, hard))
    hog = []
    while True:
        hog.append(bytearray(64 << 20))


BACKEND = FakeBackend(
    "fake",
    {
        (Precision.FP32, ""): Behaviour(latency_s=0.004),
        (Precision.FP16, ""): Behaviour(latency_s=0.002, relative_error=0.004),
        (Precision.INT8, "dynamic"): Behaviour(latency_s=0.001, relative_error=0.5),
    },
)


class FloatLayersBackend(FakeBackend):
    """A fake whose int8 gets more accurate and slower as its ``fp_layers`` knob keeps more
    layers in float (the accuracy back-off's test double, like NNCF int8's knob): relative
    error ``relative_error / (1 + fp_layers)``, latency ``latency_s * (1 + fp_layers / 8)``.
    Its int8 builds carry a note, as a calibrated int8 build may."""

    NOTE = "fake int8 note: calibrated on a few distinct samples"

    def __init__(self, name: str, behaviours: Mapping[tuple[Precision, str], Behaviour]) -> None:
        super().__init__(name, behaviours)
        self.knobs = (
            Knob(
                "fp_layers",
                (1, 0),
                frozenset({DeviceKind.CPU}),
                frozenset({Precision.INT8}),
                backoff=(0, 1, 2, 4, 8),
            ),
        )

    def build(
        self, model: SourceModel, calibration: Sequence[Tensors], config: BuildConfig, workdir: Path
    ) -> TorchCompiled:
        compiled = super().build(model, calibration, config, workdir)
        if config.precision is Precision.INT8:
            assert isinstance(compiled, _FakeCompiled)
            layers = int(config.knobs.get("fp_layers", 0))
            compiled._behaviour = replace(
                compiled._behaviour,
                relative_error=compiled._behaviour.relative_error / (1 + layers),
            )
            compiled._scale = 1 + layers / 8
            compiled.notes = (self.NOTE,)
        return compiled


FLOAT_LAYERS = FloatLayersBackend(
    "fake_layers",
    {
        (Precision.FP32, ""): Behaviour(latency_s=0.004),
        (Precision.INT8, "layered"): Behaviour(latency_s=0.001, relative_error=0.4),
    },
)

SERVING = FakeBackend(
    "fake_serving",
    {
        (Precision.FP32, ""): Behaviour(latency_s=0.002, per_row_s=0.002),
        (Precision.FP32, "fixed"): Behaviour(latency_s=0.002, per_row_s=0.002, fixed_shapes=True),
    },
)
SERVING_BACKENDS = "fake_serving=speedster_dist.testing.fakes:SERVING"

FAULTY = FakeBackend(
    "fake_faulty",
    {
        (Precision.FP32, "raise"): Behaviour(failure="raise"),
        (Precision.FP32, "garbage"): Behaviour(latency_s=0.0005, relative_error=0.3),
    },
)

DEADLY = FakeBackend(
    "fake_deadly",
    {
        (Precision.FP32, "crash"): Behaviour(failure="crash"),
        (Precision.FP32, "hang"): Behaviour(failure="hang"),
    },
)


# Not in FAKE_BACKENDS (its cap would stay with an in-process driver): register it with
# ``fake_oom=speedster_dist.testing.fakes:OOM`` for searches whose trials run in Ray workers.
OOM = FakeBackend("fake_oom", {(Precision.FP32, "oom"): Behaviour(failure="oom")})


class VirtualClock:
    """A clock that only moves when a :class:`SimulatedRunner` finishes a call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimulatedRunner:
    """``concurrency`` lanes, each call taking exactly ``latency_s`` virtual seconds.

    A call starts when submitted (a lane is free: the caller keeps at most ``concurrency``
    in flight). When every lane is busy, the earliest call finishes before ``submit``
    returns (the clock moves to its end): exactly when a real caller would block.
    ``fail_at``: the 0-based call whose ``done`` gets an error.
    """

    overlap = Overlap("simulated lanes", overlaps=True, note="virtual time, no real work")

    def __init__(
        self, clock: VirtualClock, latency_s: float, concurrency: int, fail_at: int = -1
    ) -> None:
        self._clock = clock
        self._latency = latency_s
        self._lanes = concurrency
        self._fail_at = fail_at
        self._pending: list[tuple[float, int, Done]] = []
        self.submitted = 0

    def submit(self, inputs: tuple[Any, ...], done: Done) -> None:
        end = self._clock.now + self._latency
        heapq.heappush(self._pending, (end, self.submitted, done))
        self.submitted += 1
        if len(self._pending) >= self._lanes:
            self._finish_next()

    def _finish_next(self) -> None:
        end, index, done = heapq.heappop(self._pending)
        self._clock.now = max(self._clock.now, end)
        error = RuntimeError(f"planted failure of call {index}") if index == self._fail_at else None
        done(None if error else ("outputs", index), error)

    def drain(self) -> None:
        while self._pending:
            self._finish_next()

    def close(self) -> None:
        self.drain()
