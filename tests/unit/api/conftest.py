import time

import pytest

import speedster_dist.api as api
from speedster_dist.backends import backend_names, get_backend
from speedster_dist.testing.models import minilm_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """With an executor passed in, optimize_model must never connect to Ray."""

    def fail(*args, **kwargs):
        pytest.fail("optimize_model touched Ray although an executor was given")

    monkeypatch.setattr(api, "connect", fail)
    monkeypatch.setattr(api, "RayExecutor", fail)


class _Slowed:
    """A compiled model that takes ``seconds`` longer per call."""

    def __init__(self, inner, seconds):
        self._inner = inner
        self._seconds = seconds

    def __call__(self, *inputs):
        out = self._inner(*inputs)
        end = time.perf_counter() + self._seconds
        while time.perf_counter() < end:
            pass
        return out

    def save(self, directory):
        return self._inner.save(directory)


@pytest.fixture
def fakes(fakes, monkeypatch):
    """Registers the fake backends and returns every other backend but the baseline.

    The eager baseline is made 8 ms slower per call, so that the fakes (4 ms fp32, 2 ms fp16,
    1 ms int8, on top of the same model) beat it in a known order.
    """
    eager = get_backend("torch")
    build = eager.build

    def slow_build(*args, **kwargs):
        return _Slowed(build(*args, **kwargs), 0.008)

    monkeypatch.setattr(eager, "build", slow_build)
    return [name for name in backend_names() if name not in ("torch", "fake")]
