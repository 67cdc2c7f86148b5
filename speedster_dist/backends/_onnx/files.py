"""ONNX files on disk (external data, copies) and feeds of torch tensors for a session."""

from __future__ import annotations

import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch

from speedster_dist.backends._protocol import UnsupportedCandidate

__all__ = [
    "EXTERNAL_DATA_BYTES",
    "check_external_data_inside",
    "copy_onnx",
    "external_files",
    "feeds",
    "graph_input_names",
    "is_large",
]

# A protobuf cannot exceed 2 GiB; keep a margin for the graph itself.
EXTERNAL_DATA_BYTES = 1_800_000_000


def external_files(path: Path) -> list[Path]:
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    proto = onnx.load(str(path), load_external_data=False)
    locations = {
        ExternalDataInfo(tensor).location
        for tensor in proto.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    }
    return [path.parent / location for location in sorted(locations)]


def _has_external_data(path: Path) -> bool:
    return bool(external_files(path))


def is_large(path: Path) -> bool:
    """Whether the model (with its external data) is too big for one protobuf."""
    files = [path, *external_files(path)]
    return sum(f.stat().st_size for f in files if f.exists()) > EXTERNAL_DATA_BYTES


def copy_onnx(source: Path, target: Path) -> Path:
    """Copy an ONNX file and its external data files (kept next to it, same names)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    for data in external_files(source):
        shutil.copyfile(data, target.parent / data.relative_to(source.parent))
    return target


def graph_input_names(path: Path) -> list[str]:
    """Names of the graph's real inputs (exporters drop unused ones, e.g. token_type_ids)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    return [value.name for value in graph.input if value.name not in initializers]


def feeds(
    model_input_names: Sequence[str],
    tensors: Sequence[torch.Tensor],
    keep: Collection[str] | None = None,
) -> dict[str, np.ndarray]:
    """ONNX Runtime feeds from positional tensors; only names in ``keep`` when given.

    Contiguous CPU tensors are shared with numpy, not copied; integer dtypes are kept
    (token ids stay int64). bfloat16 becomes float32 because numpy has no bfloat16.
    """
    if len(model_input_names) != len(tensors):
        raise ValueError(f"expected {len(model_input_names)} inputs, got {len(tensors)}")
    return {
        name: _to_numpy(tensor)
        for name, tensor in zip(model_input_names, tensors, strict=True)
        if keep is None or name in keep
    }


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.dtype is torch.bfloat16:
        tensor = tensor.float()
    return np.ascontiguousarray(tensor.numpy())


def check_external_data_inside(path: Path) -> None:
    """Refuse an ONNX file whose tensors point at external data outside its folder (a saved
    file is untrusted: ``location`` could name ``../../`` anything on the machine)."""
    import onnx
    from onnx import external_data_helper

    model = onnx.load(str(path), load_external_data=False)
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        parts = location.replace("\\", "/").split("/")
        if not location or location.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise UnsupportedCandidate(
                f"{path.name}: external data {location!r} is outside the model's folder"
            )
