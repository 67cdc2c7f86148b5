"""Requests in flight through each backend's own API: outputs unchanged, overlap declared as
data and shown by evidence (calls meeting at a barrier, requests in flight at once, the GIL
left free during a call), never by speed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from speedster_dist.backends import (
    UNDECLARED_THREADS,
    BuildConfig,
    ThreadRunner,
    check_concurrency,
    get_backend,
    runner_for,
    throughput_knobs,
)
from speedster_dist.backends._torch_common import CPU_THREADS
from speedster_dist.cache import CACHE_ENV
from speedster_dist.inputs import normalize_inputs
from speedster_dist.measure import MeasureSettings, gil_release, measure_load, tile_batch
from speedster_dist.modelio import make_source_model
from speedster_dist.records import DeviceKind, Precision
from speedster_dist.serving import LoadPoint, Overlap, Runner
from speedster_dist.testing import models

CPU = DeviceKind.CPU
_SETTINGS = MeasureSettings(warmup_calls=2, warmup_s=0, min_calls=8, min_duration_s=0)


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("onnx-cache")))
        yield


@pytest.fixture(scope="module")
def bert() -> tuple[Any, tuple[torch.Tensor, ...]]:
    """A tiny BERT (default text axes) and a batch of 4 requests of 64 tokens."""
    model = models.tiny_bert()
    data = [models.token_batch(seq_len=64, seed=i) for i in range(3)]
    samples = normalize_inputs(data, model)
    source, _ = make_source_model(model, samples.input_names, samples.samples, samples.keyword)
    return source, tile_batch(samples.samples, source.input_names, 4)


def _build(name: str, source: Any, tmp_path: Path, **knobs: Any) -> Any:
    config = BuildConfig(Precision.FP32, CPU, "", knobs)
    return get_backend(name).build(source, [], config, tmp_path)


def _through(runner: Runner, batch: tuple[Any, ...], calls: int) -> list[Any]:
    """Outputs of ``calls`` requests submitted back to back (at most the runner's slots)."""
    results: list[Any] = [None] * calls
    errors: list[BaseException] = []

    def done_for(index: int) -> Any:
        def done(outputs: Any, error: BaseException | None) -> None:
            results[index] = outputs
            if error is not None:
                errors.append(error)

        return done

    for index in range(calls):
        runner.submit(batch, done_for(index))
    runner.drain()
    assert not errors, errors
    return results


def _same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.allclose(x.cpu(), y.cpu(), atol=1e-5) for x, y in zip(a, b, strict=True))


def test_threads_overlap_calls_that_release_the_gil():
    barrier = threading.Barrier(2, timeout=10)  # passes only if both calls are inside at once
    runner = ThreadRunner(barrier.wait, 2, UNDECLARED_THREADS)
    assert sorted(_through(runner, (), 2)) == [0, 1]
    runner.close()


def test_one_thread_serializes_and_the_barrier_shows_it():
    barrier = threading.Barrier(2, timeout=0.2)
    runner = ThreadRunner(barrier.wait, 1, UNDECLARED_THREADS)
    errors: list[BaseException | None] = []
    for _ in range(2):
        runner.submit((), lambda outputs, error: errors.append(error))
    runner.close()
    assert all(isinstance(e, threading.BrokenBarrierError) for e in errors) and len(errors) == 2


def test_runner_for_prefers_the_models_own_runner_and_declares_plain_threads():
    class Plain:
        def __call__(self, x: int) -> int:
            return x + 1

    plain = runner_for(Plain(), 2)
    assert isinstance(plain, ThreadRunner) and plain.overlap == UNDECLARED_THREADS
    assert not plain.overlap.overlaps
    assert _through(plain, (41,), 2) == [42, 42]
    plain.close()
    own = ThreadRunner(Plain(), 1, Overlap("own", True))

    class WithRunner(Plain):
        def runner(self, concurrency: int) -> Runner:
            return own

    assert runner_for(WithRunner(), 3) is own
    own.close()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, float("nan")])
def test_bad_concurrency_is_refused(bad):
    with pytest.raises(ValueError, match="concurrency must be a whole number >= 1"):
        check_concurrency(bad)


def test_onnxruntime_runs_a_session_from_two_threads(bert, tmp_path):
    source, batch = bert
    compiled = _build("onnxruntime", source, tmp_path, intra_op_threads=1)
    runner = runner_for(compiled, 2)
    assert runner.overlap.overlaps and runner.overlap.mechanism == "threads"
    expected = compiled(*batch)
    assert all(_same(out, expected) for out in _through(runner, batch, 2))
    stats = measure_load(runner, batch, LoadPoint(4, 2), _SETTINGS)
    runner.close()
    assert stats.max_in_flight == 2
    assert gil_release(lambda: compiled(*batch)).released  # so the two threads overlap


def test_openvino_async_infer_queue_on_two_streams(bert, tmp_path):
    source, four = bert
    compiled = _build("openvino", source, tmp_path, performance_hint="THROUGHPUT", num_streams=2)
    batch = tuple(t[:1] for t in four)  # built for the samples' shape: one request
    runner = runner_for(compiled, 2)
    assert runner.overlap.mechanism == "openvino AsyncInferQueue" and runner.overlap.overlaps
    assert "2 CPU stream(s)" in runner.overlap.note
    expected = compiled(*batch)
    assert all(_same(out, expected) for out in _through(runner, batch, 2))
    stats = measure_load(runner, batch, LoadPoint(1, 2), _SETTINGS)
    assert stats.max_in_flight == 2
    assert gil_release(lambda: compiled(*batch)).released  # inference runs without the GIL

    def failing_done(outputs: Any, error: BaseException | None) -> None:
        raise LookupError("raised in a completion callback")

    # An exception escaping an OpenVINO callback would abort the process: it is kept and
    # raised by drain instead.
    runner.submit(batch, failing_done)
    with pytest.raises(LookupError, match="completion callback"):
        runner.drain()
    runner.close()


def test_openvino_latency_hint_queues_requests_on_one_stream(bert, tmp_path):
    source, _ = bert
    compiled = _build("openvino", source, tmp_path, performance_hint="LATENCY", num_streams=1)
    runner = runner_for(compiled, 2)
    assert not runner.overlap.overlaps and "1 CPU stream" in runner.overlap.note
    runner.close()


def test_torch_threads_and_the_num_threads_knob(bert, tmp_path):
    source, batch = bert
    before = torch.get_num_threads()
    seen: list[int] = []
    try:
        compiled = _build("torch", source, tmp_path, num_threads=1)
        runner = runner_for(compiled, 2)
        assert runner.overlap == CPU_THREADS and runner.overlap.overlaps

        def call_and_look(*inputs: torch.Tensor) -> Any:
            outputs = compiled(*inputs)
            seen.append(torch.get_num_threads())  # on the runner's own thread
            return outputs

        outputs = _through(ThreadRunner(call_and_look, 2, CPU_THREADS), batch, 2)
        assert seen == [1, 1] and _same(outputs[0], compiled(*batch))
        runner.close()
        assert compiled.save(tmp_path)["num_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_throughput_knobs_are_declared_as_data():
    backends = ("torch", "torchscript", "onnxruntime", "openvino")
    names = {name: [k.name for k in throughput_knobs(get_backend(name))] for name in backends}
    assert names == {
        "torch": ["num_threads"],
        "torchscript": ["num_threads"],
        "onnxruntime": ["inter_op_threads"],
        "openvino": [],  # its hint and streams are ordinary knobs already
    }
    assert throughput_knobs(object()) == ()


@pytest.mark.gpu
def test_cuda_streams_one_per_request_in_flight(tmp_path):
    model = models.tiny_mlp()
    data = [((torch.randn(8, 16),), 0)]
    samples = normalize_inputs(data, model)
    source, _ = make_source_model(model, samples.input_names, samples.samples, samples.keyword)
    config = BuildConfig(Precision.FP32, DeviceKind.GPU)
    compiled = get_backend("torch").build(source, [], config, tmp_path)
    runner = runner_for(compiled, 2)
    assert runner.overlap.mechanism == "cuda streams" and runner.overlap.overlaps
    batch = samples.samples[0]
    expected = compiled(*batch)
    assert all(_same(out, expected) for out in _through(runner, batch, 2))
    stats = measure_load(runner, batch, LoadPoint(8, 2), _SETTINGS)
    runner.close()
    assert stats.max_in_flight == 2 and stats.memory.peak_device_mb is not None
