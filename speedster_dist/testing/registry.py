"""Choosing which backends a test sees, through the registry's public switch.

Tests register fake backends (or their own) with the ``SPEEDSTER_DIST_BACKENDS`` environment
variable, an environment variable so that the Ray workers and child processes a test starts
see the same registry. These helpers set it, so that no test needs the registry's private
module::

    def test_a_search(monkeypatch):
        use_backends(monkeypatch)              # the fakes of speedster_dist.testing.fakes
        ...

    subprocess.run(cmd, env={**os.environ, **backends_environment(FAKE_BACKENDS)})
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from speedster_dist.backends import EXTRA_BACKENDS_ENV
from speedster_dist.testing.fakes import FAKE_BACKENDS

__all__ = [
    "EXTRA_BACKENDS_ENV",
    "FAKE_BACKENDS",
    "backend_spec",
    "backends_environment",
    "no_extra_backends",
    "use_backends",
]


def backend_spec(backends: Mapping[str, str]) -> str:
    """``{"name": "package.module:attr"}`` as the variable's ``name=package.module:attr,...``."""
    return ",".join(f"{name}={target}" for name, target in backends.items())


def use_backends(patcher: pytest.MonkeyPatch, backends: str = FAKE_BACKENDS) -> None:
    """Register ``backends`` (``name=package.module:attr,...``; default: the fakes) besides the
    built-in and installed ones, for this test and the Ray workers it starts after this."""
    patcher.setenv(EXTRA_BACKENDS_ENV, backends)


def no_extra_backends(patcher: pytest.MonkeyPatch) -> None:
    """Only the built-in and installed backends (e.g. none of the fakes, one of which kills
    its process on purpose), whatever the environment had."""
    patcher.delenv(EXTRA_BACKENDS_ENV, raising=False)


def backends_environment(backends: str = FAKE_BACKENDS) -> dict[str, str]:
    """The environment variables that register ``backends`` in a process started with them
    (a CLI run, a Ray node): merge them into its ``env``."""
    return {EXTRA_BACKENDS_ENV: backends}
