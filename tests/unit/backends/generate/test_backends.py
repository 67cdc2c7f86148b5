"""The generation backends as the search sees them: capabilities derived from each generator
module's CAPABILITIES dict, the "generate" source format that keeps them apart from
forward-pass searches, and the space a generation search derives from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from speedster_dist.backends import backend_names, get_backend
from speedster_dist.records import BackendInfo, DeviceKind, HardwareType, Precision
from speedster_dist.search import SpaceSettings, derive_space

NAMES = (
    "generate_torch",
    "generate_onnxruntime",
    "generate_openvino",
    "generate_torch_compile",
)
SPLIT_FP32 = "generate_split fp32/prefill-decode-split phases=openvino>onnxruntime"
CPU = HardwareType("cpu-test-2c", DeviceKind.CPU, features=frozenset({"avx512_vnni"}))
CPU_BF16 = HardwareType("cpu-bf16-2c", DeviceKind.CPU, features=frozenset({"avx512_bf16"}))


def _catalog() -> tuple[BackendInfo, ...]:
    infos = []
    for name in backend_names():
        backend = get_backend(name)
        parts = tuple(getattr(backend, "parts", ()))
        infos.append(
            BackendInfo(name, tuple(backend.capabilities), tuple(backend.knobs), parts=parts)
        )
    return tuple(infos)


def test_registered_with_generate_only_capabilities():
    assert set(NAMES) <= set(backend_names())
    for name in NAMES:
        backend = get_backend(name)
        assert backend.capabilities and not backend.saves_code
        assert all(
            c.sources == frozenset({"generate", "generate-seq2seq"}) for c in backend.capabilities
        )
    ort = {(c.device, c.precision, c.technique) for c in get_backend(NAMES[1]).capabilities}
    assert ort == {
        (DeviceKind.CPU, Precision.FP32, "past-kv-io-binding"),
        (DeviceKind.CPU, Precision.INT8, "weight-only-matmulnbits"),
        (DeviceKind.CPU, Precision.INT4, "weight-only-matmulnbits"),
        (DeviceKind.GPU, Precision.FP32, "past-kv-io-binding"),
    }
    bf16 = next(c for c in get_backend(NAMES[2]).capabilities if c.precision is Precision.BF16)
    assert bf16.requires_any == frozenset({"avx512_bf16", "amx_bf16"})
    assert get_backend(NAMES[2]).unavailable_reason(DeviceKind.GPU) is not None


def _space(
    hardware: HardwareType, source: str, ths: float | None = None, ignored: tuple[str, ...] = ()
) -> set[str]:
    settings = SpaceSettings(
        metric_drop_ths=ths,
        source_format=source,
        metric="agreement",
        ignored_backends=frozenset(ignored),
    )
    return {c.label for c in derive_space(_catalog(), hardware, settings).defaults()}


def test_a_forward_search_never_sees_them_and_a_generation_search_sees_only_them():
    forward = _space(CPU, "torch", 0.5)
    assert forward and not any(label.startswith("generate_") for label in forward)
    assert _space(CPU, "generate") == {
        "generate_torch fp32",
        "generate_torch fp32/static-cache",
        "generate_onnxruntime fp32/past-kv-io-binding",
        "generate_openvino fp32/stateful-kv-cache",
        "generate_torch_compile fp32/static-cache-compiled-decode",
        SPLIT_FP32,
    }
    reduced = _space(CPU, "generate", 0.05)  # weight-only int8 / int4 once a drop is accepted
    assert "generate_onnxruntime int4/weight-only-matmulnbits accuracy_level=4 block_size=32" in (
        reduced
    )
    assert "generate_openvino int4/nncf-weight-compression group_size=128" in reduced
    assert not any("bf16" in label for label in reduced)  # no bf16 instructions
    with_bf16 = _space(CPU_BF16, "generate", 0.05)
    assert "generate_openvino bf16/stateful-kv-cache" in with_bf16
    assert "generate_torch_compile bf16/static-cache-compiled-decode" in with_bf16


def test_an_encoder_decoder_search_has_every_generation_backend_but_the_split():
    seq2seq = _space(CPU, "generate-seq2seq")
    assert seq2seq == _space(CPU, "generate") - {SPLIT_FP32}
    assert not any(
        label.startswith("generate_split") for label in _space(CPU, "generate-seq2seq", 0.5)
    )


@pytest.mark.parametrize("part", ["generate_openvino", "generate_onnxruntime"])
def test_ignoring_a_part_of_the_split_ignores_the_split(part: str):
    assert SPLIT_FP32 in _space(CPU, "generate", ignored=("generate_torch",))
    left = _space(CPU, "generate", 0.5, ignored=(part,))
    assert left and not any(label.startswith(("generate_split", part)) for label in left)


def test_a_torch_winner_with_an_unknown_cache_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown cache_implementation"):
        get_backend("generate_torch").load(
            tmp_path, {"cache_implementation": "offloaded"}, DeviceKind.CPU
        )
