import pytest

from speedster_dist.testing.registry import no_extra_backends, use_backends


@pytest.fixture(autouse=True)
def _no_leaked_fake_backends(monkeypatch):
    # Unit tests run trials in this process: only tests that ask for the fakes may see them
    # (one fake backend kills its process on purpose).
    no_extra_backends(monkeypatch)


@pytest.fixture
def fakes(monkeypatch):
    """The fake backends of speedster_dist.testing.fakes, registered for this test."""
    use_backends(monkeypatch)
