"""Backend registry: name -> module path, imported only when a backend is asked for.

Importing this module imports no backend library; a backend whose library is missing or
broken shows up as unavailable (with the reason) instead of crashing ``import speedster_dist``.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

from speedster_dist.backends._protocol import Backend

__all__ = [
    "BASELINE_BACKEND",
    "EXTRA_BACKENDS_ENV",
    "SPEEDSTER_ALIASES",
    "UnknownBackendError",
    "backend_names",
    "get_backend",
    "resolve_backend_name",
]

# Adding a backend: its module, one line here, its test.
_REGISTRY: dict[str, str] = {
    "torch": "speedster_dist.backends.torch_eager",
    "torchscript": "speedster_dist.backends.torchscript",
    "torch_compile": "speedster_dist.backends.torch_compile",
    "onnxruntime": "speedster_dist.backends.onnxruntime",
    "openvino": "speedster_dist.backends.openvino",
    "tensorrt": "speedster_dist.backends.tensorrt",
}

# Extra backends as "name=module.path,other=pkg.mod" (a plugin, or the fakes in tests). An
# environment variable rather than a call, so Ray worker processes see the same registry.
EXTRA_BACKENDS_ENV = "SPEEDSTER_DIST_BACKENDS"

BASELINE_BACKEND = "torch"

# Names Speedster users already pass in ``ignore_compilers``: mapped to ours, or to None
# when Speedster had a compiler this project deliberately does not ship (ignoring it is a no-op).
SPEEDSTER_ALIASES: dict[str, str | None] = {
    "tensor_rt": "tensorrt",
    "onnx_runtime": "onnxruntime",
    "torch_script": "torchscript",
    "pytorch": "torch",
    "tvm": None,
    "deepsparse": None,
    "intel_neural_compressor": None,
    "bladedisc": None,
    "tflite": None,
    "tensorflow": None,
    "faster_transformer": None,
}


class UnknownBackendError(ValueError):
    """A backend name that is neither registered nor a known Speedster alias."""


def _registry() -> dict[str, str]:
    extra = {}
    for item in filter(None, os.environ.get(EXTRA_BACKENDS_ENV, "").split(",")):
        name, sep, module = item.partition("=")
        if not sep or not name.strip() or not module.strip():
            raise UnknownBackendError(f"{EXTRA_BACKENDS_ENV}: {item!r} is not name=module.path")
        extra[name.strip()] = module.strip()
    return {**_REGISTRY, **extra}


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, in registry order (extra backends last)."""
    return tuple(_registry())


def resolve_backend_name(name: str) -> str | None:
    """Map a user-given name (ours or Speedster's) to a registered name.

    Returns None for Speedster compilers this project does not ship. Raises
    :class:`UnknownBackendError` listing the valid names for anything else.
    """
    key = name.strip().lower()
    if key in _registry():
        return key
    if key in SPEEDSTER_ALIASES:
        return SPEEDSTER_ALIASES[key]
    valid = ", ".join(sorted(_registry()))
    raise UnknownBackendError(f"unknown backend {name!r}; valid names are: {valid}")


@cache
def get_backend(name: str) -> Backend:
    """Import and return the backend registered as ``name``."""
    registry = _registry()
    if name not in registry:
        resolve_backend_name(name)  # raises with the list of valid names
        raise UnknownBackendError(f"{name!r} is an alias; resolve it first")
    module = importlib.import_module(registry[name])
    backend: Backend = module.BACKEND
    return backend
