import os

import pytest

from speedster_dist.backends._registry import EXTRA_BACKENDS_ENV
from speedster_dist.runtime._ray import LOOPBACK_ENV
from speedster_dist.testing.fakes import FAKE_BACKENDS


@pytest.fixture(scope="session")
def local_ray():
    """An embedded local Ray whose workers also know the fake backends."""
    import ray

    # Set before ray.init: worker processes inherit the raylet's environment.
    os.environ[EXTRA_BACKENDS_ENV] = FAKE_BACKENDS
    os.environ.update(LOOPBACK_ENV)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
