"""Backend registry: name -> module path, imported only when a backend is asked for.

Importing this module imports no backend library; a backend whose library is missing or
broken shows up as unavailable (with the reason) instead of crashing ``import speedster_dist``.
"""

from __future__ import annotations

import importlib
from functools import cache

from speedster_dist.backends._protocol import Backend

__all__ = [
    "BASELINE_BACKEND",
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


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, in registry order."""
    return tuple(_REGISTRY)


def resolve_backend_name(name: str) -> str | None:
    """Map a user-given name (ours or Speedster's) to a registered name.

    Returns None for Speedster compilers this project does not ship. Raises
    :class:`UnknownBackendError` listing the valid names for anything else.
    """
    key = name.strip().lower()
    if key in _REGISTRY:
        return key
    if key in SPEEDSTER_ALIASES:
        return SPEEDSTER_ALIASES[key]
    valid = ", ".join(sorted(_REGISTRY))
    raise UnknownBackendError(f"unknown backend {name!r}; valid names are: {valid}")


@cache
def get_backend(name: str) -> Backend:
    """Import and return the backend registered as ``name``."""
    if name not in _REGISTRY:
        resolve_backend_name(name)  # raises with the list of valid names
        raise UnknownBackendError(f"{name!r} is an alias; resolve it first")
    module = importlib.import_module(_REGISTRY[name])
    backend: Backend = module.BACKEND
    return backend
