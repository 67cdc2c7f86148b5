"""The registry: built-ins, entry-point plugins and the environment variable."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from speedster_dist.backends import (
    ENTRY_POINT_GROUP,
    EXTRA_BACKENDS_ENV,
    UnknownBackendError,
    _registry,  # its plugin cache, cleared between tests
    backend_names,
    get_backend,
    resolve_backend_name,
)
from speedster_dist.testing import fakes


@pytest.fixture
def fresh_registry():
    _registry._plugins.cache_clear()
    get_backend.cache_clear()
    yield
    _registry._plugins.cache_clear()
    get_backend.cache_clear()


def test_builtins_come_first_in_declaration_order():
    assert backend_names()[:3] == ("torch", "torchscript", "torch_compile")


def test_an_installed_plugin_is_found_through_its_entry_point(monkeypatch, fresh_registry):
    plugin = EntryPoint("plug", "speedster_dist.testing.fakes:FAULTY", ENTRY_POINT_GROUP)

    def entry_points(group):
        assert group == ENTRY_POINT_GROUP
        return [plugin]

    monkeypatch.setattr(_registry, "entry_points", entry_points)
    assert backend_names()[-1] == "plug"
    assert get_backend("plug") is fakes.FAULTY
    assert resolve_backend_name(" PLUG ") == "plug"


def test_the_variable_registers_module_attribute_names(monkeypatch, fresh_registry):
    monkeypatch.setenv(EXTRA_BACKENDS_ENV, fakes.FAKE_BACKENDS)
    assert {"fake", "fake_faulty", "fake_deadly"} <= set(backend_names())
    assert get_backend("fake_deadly") is fakes.DEADLY


@pytest.mark.parametrize("value", ["x=y.z", "x=", "=a:b", "x=a:", "x=:b"])
def test_a_malformed_variable_says_the_expected_form(monkeypatch, value):
    monkeypatch.setenv(EXTRA_BACKENDS_ENV, value)
    with pytest.raises(UnknownBackendError, match=r"name=package\.module:attribute"):
        backend_names()


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownBackendError, match=r"valid names are: .*onnxruntime"):
        resolve_backend_name("tvm_but_misspelled")
    assert resolve_backend_name("tvm") is None  # a Speedster compiler not shipped: a no-op
