"""The compiled decode step (generate_torch_compile): Hugging Face's static cache with the
one-token decode forward compiled by torch.compile; greedy output identical to HF generate()
in fp32, compiled once for prompts of any length, saved data-only, a failure to compile a
failed trial with its reason."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from speedster_dist.backends import BuildConfig, get_backend
from speedster_dist.backends.generate import torch_compiled
from speedster_dist.backends.generate.torch_compiled import (
    CompileSettings,
    cache_length,
    load_compiled_generator,
)
from speedster_dist.records import Candidate, DeviceKind, Precision, TrialStatus

from .conftest import hf_greedy

NAME = "generate_torch_compile"
TECHNIQUE = "static-cache-compiled-decode"
NEW = 12


def _source(model: Any, prompt: torch.Tensor) -> Any:
    from speedster_dist.backends import SourceModel

    mask = torch.ones_like(prompt)
    return SourceModel(
        ("input_ids", "attention_mask"),
        ("logits",),
        (prompt, mask),
        module=model,
        task="text-generation",
        max_new_tokens=NEW,
    )


def test_declared_capabilities_and_knobs():
    backend = get_backend(NAME)
    found = {(c.device, c.precision, c.technique, c.requires_any) for c in backend.capabilities}
    bf16 = frozenset({"avx512_bf16", "amx_bf16"})
    assert found == {
        (DeviceKind.CPU, Precision.FP32, TECHNIQUE, frozenset()),
        (DeviceKind.CPU, Precision.BF16, TECHNIQUE, bf16),
        (DeviceKind.GPU, Precision.FP32, TECHNIQUE, frozenset()),
    }
    assert all(
        c.sources == frozenset({"generate", "generate-seq2seq"}) for c in backend.capabilities
    )
    (knob,) = backend.knobs
    assert (knob.name, knob.choices, knob.devices) == (
        "cuda_graphs",
        (True, False),
        frozenset({DeviceKind.GPU}),
    )
    assert not backend.saves_code


def test_modes_cuda_graphs_on_a_gpu_inductor_default_on_a_cpu():
    assert CompileSettings().mode("cuda") == "reduce-overhead"
    assert CompileSettings(cuda_graphs=False).mode("cuda") == "max-autotune-no-cudagraphs"
    assert CompileSettings().mode("cpu") == "default"
    assert CompileSettings(cuda_graphs=False).mode("cpu") == "default"


def test_unavailable_without_a_cpp_compiler(monkeypatch, tmp_path):
    backend = get_backend(NAME)
    assert backend.unavailable_reason(DeviceKind.CPU) is None  # g++ is on this machine
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    reason = backend.unavailable_reason(DeviceKind.CPU)
    assert reason is not None and "C++ compiler" in reason


def test_cache_length_bucketed_and_capped():
    gpt2 = SimpleNamespace(n_positions=1024, is_encoder_decoder=False)
    assert cache_length(gpt2, [8, 30], 32) == 64  # 62 tokens, rounded up
    assert cache_length(gpt2, [32], 64) == 128
    assert cache_length(SimpleNamespace(n_positions=100), [32], 64) == 100  # capped
    assert cache_length(SimpleNamespace(n_positions=90), [40], 60) == 100  # never too short
    t5 = SimpleNamespace(is_encoder_decoder=True)
    assert cache_length(t5, [500], 32) == 64  # the decoder's cache: start + new tokens


def test_unknown_precision_and_bad_saved_length_refused(tiny_gpt2, prompt, tmp_path: Path):
    with pytest.raises(ValueError, match="precision must be one of"):
        torch_compiled.build_compiled_generator(
            tiny_gpt2, "cpu", CompileSettings("int8"), [(prompt,)], NEW
        )
    with pytest.raises(ValueError, match="max_cache_len must be an integer"):
        get_backend(NAME).load(tmp_path, {"max_cache_len": "64"}, DeviceKind.CPU)


def test_a_failure_to_compile_is_a_failed_trial_with_its_reason(tiny_gpt2, monkeypatch):
    from speedster_dist.generation import generation_options, prepare_generation
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.options import parse_run_options
    from speedster_dist.runtime import run_trial

    class Broken(CompileSettings):
        def __init__(self, precision: str = "fp32", cuda_graphs: bool = True) -> None:
            super().__init__(precision, cuda_graphs, backend="no_such_compiler")

    monkeypatch.setattr(torch_compiled, "CompileSettings", Broken)
    gen = torch.Generator().manual_seed(3)
    prompts = [{"input_ids": torch.randint(0, 100, (1, 6), generator=gen)} for _ in range(5)]
    options = generation_options(
        parse_run_options(extras={"max_new_tokens": 4, "measure_settings": MeasureSettings.quick()})
    )
    payload = prepare_generation(tiny_gpt2, prompts, options, "text-generation").payload
    candidate = Candidate(NAME, Precision.FP32, "cpu", TECHNIQUE)
    result, saved = run_trial(payload, candidate)
    assert result.status is TrialStatus.FAILED and saved is None
    assert "torch.compile of the decode step failed" in result.reason
    assert "no_such_compiler" in result.reason


@pytest.mark.slow
def test_greedy_identical_to_hf_compiled_once_and_saved_data_only(tiny_gpt2, prompt, tmp_path):
    from torch._dynamo.utils import counters

    config = BuildConfig(Precision.FP32, DeviceKind.CPU, TECHNIQUE)
    compiled: Any = get_backend(NAME).build(_source(tiny_gpt2, prompt), [], config, tmp_path / "w")
    assert compiled.notes[0].startswith("generate_torch_compile fp32: decode step compiled in")
    assert not hasattr(tiny_gpt2, "_compiled_call")  # the shared source model is untouched
    generator = compiled.generator
    assert generator.compiled and generator.max_cache_len == 64
    graphs = counters["stats"]["unique_graphs"]
    assert torch.equal(compiled.generate(prompt), hf_greedy(tiny_gpt2, prompt, NEW))
    longer = torch.randint(0, 100, (1, 13), generator=torch.Generator().manual_seed(5))
    assert torch.equal(
        compiled.generate(longer, max_new_tokens=20), hf_greedy(tiny_gpt2, longer, 20)
    )
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile for another length
    assert list(generator._caches) == [1]  # one static cache, reset and reused by every call
    with torch.no_grad():
        expected = tiny_gpt2(input_ids=prompt).logits[:, -1, :]
    torch.testing.assert_close(compiled(prompt, torch.ones_like(prompt))[0], expected)

    options = compiled.save(tmp_path / "saved")
    assert options == {
        "precision": "fp32",
        "cuda_graphs": True,
        "max_cache_len": 64,
        "max_new_tokens": NEW,
    }
    assert not list((tmp_path / "saved").glob("*.bin")) and not list(
        (tmp_path / "saved").glob("*.pt*")
    )  # safetensors and JSON only
    loaded: Any = get_backend(NAME).load(tmp_path / "saved", options, DeviceKind.CPU)
    assert torch.equal(loaded.generate(prompt), hf_greedy(tiny_gpt2, prompt, NEW))
    assert loaded.generator.compiled


@pytest.mark.slow
def test_bf16_compiles_and_stays_close(tiny_gpt2, prompt, tmp_path):
    generator, seconds = torch_compiled.build_compiled_generator(
        tiny_gpt2, "cpu", CompileSettings("bf16"), [(prompt, torch.ones_like(prompt))], NEW
    )
    assert seconds > 0 and generator.model.dtype == torch.bfloat16
    assert next(tiny_gpt2.parameters()).dtype == torch.float32  # a copy was cast
    out = generator.generate(prompt, None, NEW)
    assert out.shape == (1, prompt.shape[1] + NEW) and torch.equal(out[:, :8], prompt)
    logits = generator.prefill(prompt, torch.ones_like(prompt))
    with torch.no_grad():
        expected = tiny_gpt2(input_ids=prompt).logits[:, -1, :]
    assert torch.nn.functional.cosine_similarity(logits, expected).item() > 0.99
    generator.save(tmp_path)
    loaded = load_compiled_generator(tmp_path, "cpu", generator.options())
    assert loaded.model.dtype == torch.bfloat16


@pytest.mark.slow
def test_t5_decoder_compiled_identical_to_hf(tiny_t5, prompt):
    from .conftest import hf_seq2seq

    generator, _ = torch_compiled.build_compiled_generator(
        tiny_t5, "cpu", CompileSettings(), [(prompt, torch.ones_like(prompt))], 6
    )
    assert generator.compiled
    assert torch.equal(generator.generate(prompt, None, 6), hf_seq2seq(tiny_t5, prompt, 6))


@pytest.mark.gpu
def test_cuda_graphs_on_a_gpu_identical_to_hf(tiny_gpt2, prompt, tmp_path):
    config = BuildConfig(Precision.FP32, DeviceKind.GPU, TECHNIQUE, {"cuda_graphs": True})
    compiled: Any = get_backend(NAME).build(_source(tiny_gpt2, prompt), [], config, tmp_path)
    assert "reduce-overhead" in compiled.notes[0]
    reference = hf_greedy(tiny_gpt2.cuda(), prompt.cuda(), NEW).cpu()
    tiny_gpt2.cpu()
    assert torch.equal(compiled.generate(prompt), reference)


@pytest.mark.slow
def test_searched_judged_and_loaded_as_any_generation_winner(tiny_gpt2, tmp_path):
    from speedster_dist import load_model, optimize_model
    from speedster_dist.measure import MeasureSettings
    from speedster_dist.runtime import InlineExecutor

    gen = torch.Generator().manual_seed(4)
    prompts = [{"input_ids": torch.randint(0, 100, (1, 7), generator=gen)} for _ in range(5)]
    learner = optimize_model(
        tiny_gpt2,
        prompts,
        executor=InlineExecutor(),
        measure_settings=MeasureSettings(warmup_calls=1, warmup_s=0, min_calls=3, load_check=False),
        progress=False,
        verbose=False,
        device="cpu",
        confirm_rounds=0,
        max_new_tokens=NEW,
        ignore_compilers=["generate_onnxruntime", "generate_openvino"],
    )
    (result,) = (r for r in learner.results if r.candidate.backend == NAME)
    assert result.status is TrialStatus.COMPLETE, result.reason
    assert result.generation is not None and result.generation.agreement == 1.0
    assert result.build_s > 0 and "decode step compiled in" in result.notes[0]
    unseen = torch.randint(0, 100, (1, 9), generator=gen)
    expected = hf_greedy(tiny_gpt2, unseen, NEW)
    assert torch.equal(learner.generate(input_ids=unseen, max_new_tokens=NEW), expected)
    loaded = load_model(learner.save(tmp_path / "learner"))  # whichever won, data only
    assert torch.equal(loaded.generate(input_ids=unseen, max_new_tokens=NEW), expected)
