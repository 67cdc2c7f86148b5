"""Every public exception lives in ``speedster_dist.errors``, is re-exported by the package,
and is still the same class under the name it had before (old imports keep working)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import speedster_dist
from speedster_dist import errors

# Where each exception was defined before errors.py: those imports must keep working.
FORMER_HOMES = {
    "InputError": "speedster_dist.inputs",
    "ShapeError": "speedster_dist.artifacts",
    "ArtifactError": "speedster_dist.artifacts",
    "SignatureError": "speedster_dist.artifacts._signing",
    "PriceError": "speedster_dist.cost",
    "UnknownBackendError": "speedster_dist.backends",
    "UnsupportedCandidate": "speedster_dist.backends",
    "ClusterConnectionError": "speedster_dist.runtime",
    "StudyStorageError": "speedster_dist.search",
    "BatchError": "speedster_dist.measure",
}
# What callers catch them as (``except ValueError`` around an input keeps working).
BASES = {
    "InputError": ValueError,
    "ShapeError": ValueError,
    "ArtifactError": RuntimeError,
    "SignatureError": ValueError,
    "PriceError": ValueError,
    "UnknownBackendError": ValueError,
    "UnsupportedCandidate": RuntimeError,
    "ClusterConnectionError": ConnectionError,
    "StudyStorageError": ValueError,
    "BatchError": ValueError,
}


def test_every_public_exception_is_in_errors_and_the_package():
    assert set(errors.__all__) == set(FORMER_HOMES) == set(BASES)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, BASES[name]) and cls.__doc__
        assert getattr(speedster_dist, name) is cls and name in speedster_dist.__all__


@pytest.mark.parametrize("name", sorted(FORMER_HOMES))
def test_the_former_import_is_the_same_class(name):
    module = importlib.import_module(FORMER_HOMES[name])
    assert getattr(module, name) is getattr(errors, name)


def _public_packages() -> list[str]:
    names = ["speedster_dist"]
    for info in pkgutil.walk_packages(speedster_dist.__path__, "speedster_dist."):
        if info.ispkg and not any(p.startswith("_") for p in info.name.split(".")):
            names.append(info.name)
    return names


def test_no_package_exports_an_exception_defined_elsewhere():
    """A public exception defined outside errors.py would be one more place to look."""
    strays = []
    for package in _public_packages():
        if package.endswith(".cli"):  # CliError: the CLI's own exit codes, never raised out
            continue
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            is_error = inspect.isclass(value) and issubclass(value, BaseException)
            if is_error and value.__module__ != "speedster_dist.errors":
                strays.append(f"{package}.{name} ({value.__module__})")
    assert not strays, strays
