import pytest

from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV


@pytest.fixture(autouse=True)
def _no_leaked_fake_backends(monkeypatch):
    # Unit tests run trials in this process: only tests that ask for the fakes may see them
    # (one fake backend kills its process on purpose).
    monkeypatch.delenv(EXTRA_BACKENDS_ENV, raising=False)
