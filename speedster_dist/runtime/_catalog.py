"""What a node can do: its hardware types and each backend's declared capabilities there.

Runs on the node itself (as a Ray task, or in-process), because only the node knows whether
its onnxruntime has the CUDA provider or whether tensorrt imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from speedster_dist.backends import backend_names, get_backend, throughput_knobs
from speedster_dist.hardware import local_hardware_types
from speedster_dist.records import BackendInfo, DeviceKind, HardwareType

__all__ = ["NodeProbe", "backend_catalog", "probe_node"]


@dataclass(frozen=True)
class NodeProbe:
    """A node's hardware types and, per type, the backend catalog the search space uses."""

    node_id: str
    hardware: tuple[HardwareType, ...]
    catalogs: tuple[tuple[str, tuple[BackendInfo, ...]], ...]  # (hardware key, catalog)

    def catalog(self, hardware_key: str) -> tuple[BackendInfo, ...]:
        return dict(self.catalogs)[hardware_key]


def _info(name: str, device: DeviceKind) -> BackendInfo:
    try:
        backend = get_backend(name)
    except Exception as exc:  # a broken backend library must not break the search
        return BackendInfo(name, (), (), f"cannot import: {exc}")
    try:
        reason = backend.unavailable_reason(device)
    except Exception as exc:
        reason = f"availability check failed: {exc}"
    knobs = tuple(backend.knobs)
    parts = tuple(getattr(backend, "parts", ()))  # optional: most backends are one library
    return BackendInfo(
        name, tuple(backend.capabilities), knobs, reason, throughput_knobs(backend), parts
    )


def backend_catalog(device: DeviceKind) -> tuple[BackendInfo, ...]:
    """Every registered backend, as the search sees it, for ``device`` on this process."""
    return tuple(_info(name, device) for name in backend_names())


def probe_node(node_id: str = "") -> NodeProbe:
    """Probe this process's node."""
    hardware = tuple(local_hardware_types())
    catalogs = tuple((h.key, backend_catalog(h.device)) for h in hardware)
    return NodeProbe(node_id, hardware, catalogs)
