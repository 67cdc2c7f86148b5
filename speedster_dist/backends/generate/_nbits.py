"""Weight-only int8 / int4 compression of an ONNX decoder with ORT's MatMulNBits quantizer.

ORT's ``MatMulNBitsQuantizer`` (onnxruntime 1.23) rewrites ``MatMul`` nodes whose weight is an
initializer; GPT-2's Conv1D layers export as ``Gemm``, so those are first rewritten to
``MatMul`` + ``Add`` (a numerically identical graph). ``accuracy_level`` is the MatMulNBits
attribute (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute of the activations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BITS = {"int8": 8, "int4": 4}


def gemm_to_matmul(model: Any) -> int:
    """Rewrite Gemm(A, W, C) with an initializer W (alpha = beta = 1, A untransposed) in place."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    rewritten = 0
    nodes: list[Any] = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if (
            node.op_type != "Gemm"
            or not plain
            or attrs.get("transA", 0)
            or node.input[1] not in weights
        ):
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            array = numpy_helper.to_array(weights[weight]).T.copy()
            weight = f"{weight}_transposed_{rewritten}"
            graph.initializer.append(numpy_helper.from_array(array, weight))
        product = f"{node.output[0]}_matmul"
        has_bias = len(node.input) > 2 and node.input[2]
        nodes.append(
            helper.make_node(
                "MatMul",
                [node.input[0], weight],
                [product if has_bias else node.output[0]],
                name=f"{node.name}_MatMul",
            )
        )
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add"
                )
            )
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return rewritten


def compress_weights(
    source: Path, target: Path, precision: str, accuracy_level: int = 0, block_size: int = 32
) -> Path:
    """Write ``target``: ``source`` with MatMul weights in ``precision`` (int8 or int4) blocks."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if precision not in BITS:
        raise ValueError(f"weight-only precision must be one of {sorted(BITS)}, not {precision!r}")
    model = onnx.load(str(source))
    gemm_to_matmul(model)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=BITS[precision],
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=accuracy_level or None,
        op_types_to_quantize=("MatMul",),
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), False)
    return target
