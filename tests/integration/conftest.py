import os

import pytest

from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV
from speedster_dist.runtime._ray import LOOPBACK_ENV
from speedster_dist.testing.fakes import FAKE_BACKENDS


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray whose workers also know the fake backends.

    Module-scoped, and the environment is restored afterwards: the fake backends (one of them
    kills its process on purpose) must never leak into tests that run trials in-process.
    """
    import ray

    saved = {name: os.environ.get(name) for name in (EXTRA_BACKENDS_ENV, *LOOPBACK_ENV)}
    # Set before ray.init: worker processes inherit the raylet's environment.
    os.environ[EXTRA_BACKENDS_ENV] = FAKE_BACKENDS
    os.environ.update(LOOPBACK_ENV)
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new Ray even if a stale cluster address is recorded in /tmp/ray.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
