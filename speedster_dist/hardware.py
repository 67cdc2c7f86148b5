"""Hardware fingerprint of the node a process runs on, and the hardware-type key derived from it.

Nodes with the same key measure alike and share one winner. The key keeps only what changes
which backend and precision win: vendor, model, the instruction-set extensions that matter for
inference (AVX2, AVX-512, VNNI, BF16, AMX) and the core count; for GPUs, the GPU name,
memory and compute capability. The rest of the fingerprint (architecture, GPU driver and
CUDA versions) is recorded with every winner but does not split types.

A node can carry a *simulated* hardware type so that tests can build a heterogeneous
cluster on one machine: the Ray node label ``speedster-dist/hardware-type`` (``ray start
--labels``, ``Cluster.add_node(labels=...)``), or the env var ``SPEEDSTER_DIST_HARDWARE_TYPE``
in the environment the node's raylet (hence its workers) starts with.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from speedster_dist.records import DeviceKind, HardwareType

__all__ = [
    "GPU_HARDWARE_LABEL",
    "HARDWARE_LABEL",
    "SIMULATED_TYPE_ENV",
    "cpu_features",
    "hardware_from_json",
    "hardware_to_json",
    "local_cpu",
    "local_hardware",
    "local_hardware_types",
    "with_node_labels",
]

# Ray node label (and env var) that overrides the detected CPU hardware type of a node.
HARDWARE_LABEL = "speedster-dist/hardware-type"
# The same for the node's GPU type (every GPU of a node is assumed to be one model).
GPU_HARDWARE_LABEL = "speedster-dist/gpu-type"
SIMULATED_TYPE_ENV = "SPEEDSTER_DIST_HARDWARE_TYPE"
_SMI_TIMEOUT_S = 5.0

# /proc/cpuinfo flag -> feature name, for the extensions that change which backend wins.
_INTERESTING_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
    "amx_fp16": "amx_fp16",
    "asimd": "neon",
    "sve": "sve",
}
# Features shown in the key, most significant first (a key stays short and readable).
_KEY_FEATURES = (
    "amx_bf16",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "avx512f",
    "avx2",
    "neon",
    "sve",
)


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|cpu|processor|\d+-core|@.*$", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40] or "unknown"


def _read_cpuinfo() -> tuple[str, str, set[str]]:
    vendor, model = platform.machine(), platform.processor() or ""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id":
                    vendor = value.strip()
                elif key in ("model name", "Model", "CPU part") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: keep what platform gives
        pass
    return vendor, model, flags


def cpu_features(flags: Iterable[str]) -> frozenset[str]:
    """Inference-relevant features among raw CPU ``flags``."""
    return frozenset(name for flag, name in _INTERESTING_FLAGS.items() if flag in set(flags))


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_key(vendor: str, model: str, features: frozenset[str], cores: int) -> str:
    vendor_slug = {"genuineintel": "intel", "authenticamd": "amd"}.get(
        vendor.lower(), _slug(vendor)
    )
    model_slug = _slug(model.replace("Intel", "").replace("AMD", ""))
    shown = [f for f in _KEY_FEATURES if f in features][:2] or ["baseline"]
    return f"cpu-{vendor_slug}-{model_slug}-{'-'.join(shown)}-{cores}c".replace("_", "")


@cache
def local_cpu() -> HardwareType:
    """The CPU hardware type of this process's machine (honours the simulated-type env var)."""
    vendor, model, flags = _read_cpuinfo()
    features = cpu_features(flags)
    cores = _cpu_count()
    key = os.environ.get(SIMULATED_TYPE_ENV) or _cpu_key(vendor, model, features, cores)
    description = (
        f"{model or vendor} ({cores} cores; {', '.join(sorted(features)) or 'no SIMD extensions'})"
    )
    return HardwareType(
        key,
        DeviceKind.CPU,
        description,
        features,
        cores,
        cpu_vendor=vendor,
        cpu_model=model,
        arch=platform.machine(),
    )


_GpuRow = tuple[str, int, str]  # name, memory (MiB), compute capability ("9.0")


def _text(value: Any) -> str:
    # nvidia-ml-py returned bytes before 11.515, str since
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpus() -> tuple[list[_GpuRow], str] | None:
    """Every GPU of the machine and the driver version, from NVML (``nvidia-ml-py``, the
    ``gpu`` extra); None when it is not installed or finds no NVIDIA driver. Like nvidia-smi
    (which reads NVML too) it sees every GPU whatever ``CUDA_VISIBLE_DEVICES`` says."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver, or no NVML library on this machine
        return None
    try:
        rows = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20
            rows.append((_text(pynvml.nvmlDeviceGetName(handle)), memory, f"{major}.{minor}"))
        return rows, _text(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:  # a GPU that fell off the bus...: ask nvidia-smi instead
        return None
    finally:
        pynvml.nvmlShutdown()


def _smi_driver() -> str:
    """The NVIDIA driver version from nvidia-smi; "" if unknown."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ""
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0].strip() if out.strip() else ""


def _smi_gpus() -> list[_GpuRow] | None:
    """(name, memory MiB, compute capability) of every GPU of the machine, from nvidia-smi
    (NVML's fallback); None when it is not there. Unlike CUDA in this process it sees every
    GPU whatever ``CUDA_VISIBLE_DEVICES`` says (Ray sets it per task, to nothing for zero-GPU
    tasks in some versions, and a reused worker keeps a GPU task's value)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = "--query-gpu=name,memory.total,compute_cap"
    try:
        out = subprocess.run(
            [smi, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT_S,
            check=True,
        ).stdout
        rows = [[f.strip() for f in line.split(",")] for line in out.strip().splitlines()]
        return [(name, int(float(memory)), capability) for name, memory, capability in rows]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _torch_gpus() -> list[_GpuRow]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return []
    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append((props.name, int(props.total_memory // 2**20), f"{props.major}.{props.minor}"))
    return found


def _gpus_and_driver() -> tuple[list[_GpuRow], str]:
    """The machine's GPUs and driver: NVML, else nvidia-smi, else what CUDA shows torch."""
    found = _nvml_gpus()
    if found is not None:
        return found
    gpus = _smi_gpus()
    if gpus is None:
        gpus = _torch_gpus()
    return gpus, _smi_driver() if gpus else ""


def _local_gpus() -> list[HardwareType]:
    gpus, driver = _gpus_and_driver()
    if not gpus:
        return []
    try:
        import torch

        cuda = getattr(torch.version, "cuda", "") or ""
    except ImportError:  # pragma: no cover - torch is a dependency
        cuda = ""
    found = []
    for name, memory_mb, capability in gpus:
        major, _, minor = capability.partition(".")
        key = f"gpu-{_slug(name)}-{round(memory_mb / 1024)}gb-sm{major}{minor}"
        description = (
            f"{name} ({memory_mb} MiB, compute {capability}, CUDA {cuda or '?'}, "
            f"driver {driver or '?'})"
        )
        found.append(
            HardwareType(
                key,
                DeviceKind.GPU,
                description,
                frozenset(),
                0,
                name,
                memory_mb,
                capability,
                arch=platform.machine(),
                gpu_driver=driver,
                cuda_version=cuda,
            )
        )
    return found


def local_hardware_types() -> list[HardwareType]:
    """Every hardware type of this machine: its CPU, then one entry per distinct GPU model."""
    seen: dict[str, HardwareType] = {}
    for hardware in [local_cpu(), *_local_gpus()]:
        seen.setdefault(hardware.key, hardware)
    return list(seen.values())


def local_hardware(device: DeviceKind = DeviceKind.CPU) -> HardwareType | None:
    """This machine's hardware type for ``device``, or None (e.g. no GPU)."""
    return next((h for h in local_hardware_types() if h.device is device), None)


def with_node_labels(
    hardware: Iterable[HardwareType], labels: Mapping[str, str]
) -> list[HardwareType]:
    """``hardware`` probed on a node, with the node's simulated-type labels applied.

    A node started with :data:`HARDWARE_LABEL` (or :data:`GPU_HARDWARE_LABEL`) is that type,
    whatever it detects: this is how a heterogeneous cluster is simulated on one machine.
    """
    simulated = {
        DeviceKind.CPU: labels.get(HARDWARE_LABEL, ""),
        DeviceKind.GPU: labels.get(GPU_HARDWARE_LABEL, ""),
    }
    return [replace(h, key=simulated[h.device]) if simulated[h.device] else h for h in hardware]


_JSON_FIELDS = (
    "description",
    "cores",
    "gpu_name",
    "gpu_memory_mb",
    "compute_capability",
    "cpu_vendor",
    "cpu_model",
    "arch",
    "gpu_driver",
    "cuda_version",
)


def hardware_to_json(hardware: HardwareType) -> dict[str, Any]:
    """The fingerprint as JSON-able data (what a saved learner records per winner)."""
    data: dict[str, Any] = {"key": hardware.key, "device": hardware.device.value}
    data["features"] = sorted(hardware.features)
    data.update({name: getattr(hardware, name) for name in _JSON_FIELDS})
    return data


def hardware_from_json(data: Mapping[str, Any]) -> HardwareType:
    """Inverse of :func:`hardware_to_json`; unknown fields are ignored, missing ones default."""
    kwargs: dict[str, Any] = {}
    for name in _JSON_FIELDS:
        if name in data:
            value = data[name]
            kwargs[name] = int(value) if name in ("cores", "gpu_memory_mb") else str(value)
    return HardwareType(
        str(data["key"]),
        DeviceKind(data["device"]),
        features=frozenset(str(f) for f in data.get("features", [])),
        **kwargs,
    )
