import contextlib
import fcntl
import os
from pathlib import Path

import pytest

# Trials and Ray workers must not fight over the 2 cores of CI machines with BLAS threads.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    _heavy_modules_first(items)
    if _cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# -- running beside each other (pytest-xdist) ---------------------------------------------
# The suite runs on two workers (pyproject's addopts: `-n auto`, sized below): most tests wait
# on processes, Ray or the disk as much as they compute. A few cannot share the machine: they
# judge real timings (a planted regression among nightly re-measures), and a test beside them
# can make a latency 40x noisier. Those carry the `alone` marker; every other test holds a
# shared lock, an `alone` test the exclusive one, so nothing else runs while it does. (The Ray
# a test starts has a token of its own and records no address: tests on two workers never join
# each other's clusters; see tests/integration/conftest.py.)
MAX_WORKERS = 2


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker per core, at most MAX_WORKERS (more would only multiply Ray
    clusters competing for the same memory)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = len(usable) if usable is not None else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _heavy_modules_first(items: list[pytest.Item]) -> None:
    """Modules with a `slow` or `integration` test first, each module's tests together and
    in their order: the two workers take modules in this order (`--dist loadfile`), and a long
    module taken last would leave the other worker idle until it ends."""
    heavy = {
        item.module.__name__
        for item in items
        if isinstance(item, pytest.Function) and ({"slow", "integration"} & set(item.keywords))
    }

    def light(item: pytest.Item) -> bool:
        module = getattr(item, "module", None)
        return module is None or module.__name__ not in heavy

    items.sort(key=light)


@contextlib.contextmanager
def _machine_lock(folder: Path, exclusive: bool):
    """The lock every test of this run holds: shared, or exclusive for `alone` tests. A
    turnstile taken first gives a waiting `alone` test priority over tests that follow."""
    with (
        open(folder / "turnstile.lock", "a") as turnstile,
        open(folder / "machine.lock", "a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _share_the_machine(request, tmp_path_factory):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield  # one process: nothing runs beside this test
        return
    folder = tmp_path_factory.getbasetemp().parent  # one per run, shared by its workers
    with _machine_lock(folder, request.node.get_closest_marker("alone") is not None):
        yield
