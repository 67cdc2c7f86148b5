"""Which candidates take a batch of requests as built, and the source to build one per batch.

A batch of requests (``measure.tile_batch``) concatenates samples along axis 0 of every input.
A candidate takes any batch when the model declares axis 0 of every input dynamic and its
backend kept the axes dynamic; a backend that builds for the example's shapes (OpenVINO with
the default text axes: ``fixed_shapes``) or a model with static axes is built once per batch
size, from :func:`source_for_batch`. A user's ONNX file whose graph fixes the batch axis at
another size cannot be rebuilt: it says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from speedster_dist.backends._protocol import SourceModel, Tensors, UnsupportedCandidate

__all__ = ["batch_axis_dynamic", "builds_per_batch", "source_for_batch"]


def batch_axis_dynamic(model: SourceModel) -> bool:
    """True when axis 0 of every input is declared dynamic."""
    return all(0 in model.dynamic_axes.get(name, {}) for name in model.input_names)


def builds_per_batch(model: SourceModel, compiled: Any) -> bool:
    """True when ``compiled`` (built from ``model``) may refuse a batch of another size: the
    caller builds the candidate again from :func:`source_for_batch` for each batch size."""
    return bool(getattr(compiled, "fixed_shapes", None)) or not batch_axis_dynamic(model)


def _onnx_batch_dims(model: SourceModel) -> dict[str, int]:
    """The fixed size of axis 0 of each input of the user's ONNX graph (symbolic: left out)."""
    import onnx

    assert model.onnx_path is not None
    graph = onnx.load(str(model.onnx_path), load_external_data=False).graph
    fixed = {}
    for port in graph.input:
        dims = port.type.tensor_type.shape.dim
        if port.name in model.input_names and dims and dims[0].HasField("dim_value"):
            fixed[port.name] = int(dims[0].dim_value)
    return fixed


def source_for_batch(model: SourceModel, batch: Tensors) -> SourceModel:
    """``model`` with ``batch`` as its example inputs, so that a backend that builds for the
    example's shapes builds for this batch (an export with static axes is cached per shape).

    Raises UnsupportedCandidate for a user's ONNX file whose graph fixes an input's batch
    axis at another size.
    """
    if len(batch) != len(model.input_names):
        raise ValueError(f"a batch of {len(batch)} inputs for a model of {len(model.input_names)}")
    if model.onnx_path is not None:
        rows = dict(zip(model.input_names, (int(t.shape[0]) for t in batch), strict=True))
        for name, size in _onnx_batch_dims(model).items():
            if size != rows[name]:
                raise UnsupportedCandidate(
                    f"the ONNX file fixes the batch axis of input {name!r} at {size}; a batch "
                    f"of {rows[name]} rows needs a graph exported with a dynamic batch axis "
                    "(torch.onnx.export(..., dynamic_axes={name: {0: 'batch'}}))"
                )
    return replace(model, example_inputs=tuple(batch))
