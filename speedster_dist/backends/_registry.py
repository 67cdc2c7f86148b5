"""Backend registry: name -> ``"module:attribute"``, imported only when a backend is asked for.

Three sources, later ones overriding earlier ones on a name clash:

1. the built-in backends below (adding one: its module, one line here, its test);
2. installed plugins, declared by any distribution as entry points of the group
   ``speedster_dist.backends`` (``name = "package.module:BACKEND"`` in its pyproject);
3. ``SPEEDSTER_DIST_BACKENDS="name=package.module:attr,..."`` (the fakes of the tests, or a
   plugin that is not installed as a distribution). An environment variable rather than a
   call, so that Ray worker processes see the same registry as the driver.

Importing this module imports no backend library; a backend whose library is missing or
broken shows up as unavailable (with the reason) instead of crashing ``import speedster_dist``.
"""

from __future__ import annotations

import importlib
import os
from functools import cache
from importlib.metadata import entry_points

from speedster_dist.backends._protocol import Backend
from speedster_dist.errors import UnknownBackendError

__all__ = [
    "BASELINE_BACKEND",
    "ENTRY_POINT_GROUP",
    "EXTRA_BACKENDS_ENV",
    "GENERATION_BASELINE",
    "SPEEDSTER_ALIASES",
    "UnknownBackendError",
    "backend_names",
    "get_backend",
    "resolve_backend_name",
    "saves_code",
]

_BUILTIN: dict[str, str] = {
    "torch": "speedster_dist.backends.torch_eager:BACKEND",
    "torchscript": "speedster_dist.backends.torchscript:BACKEND",
    "torch_compile": "speedster_dist.backends.torch_compile:BACKEND",
    "onnxruntime": "speedster_dist.backends.onnxruntime:BACKEND",
    "openvino": "speedster_dist.backends.openvino:BACKEND",
    "tensorrt": "speedster_dist.backends.tensorrt:BACKEND",
    # Generation (a model's generate(), its KV cache): sources "generate" only.
    "generate_torch": "speedster_dist.backends.generate.backends:TORCH",
    "generate_torch_compile": "speedster_dist.backends.generate.backends:COMPILED",
    "generate_onnxruntime": "speedster_dist.backends.generate.backends:ORT",
    "generate_openvino": "speedster_dist.backends.generate.backends:OV",
    "generate_split": "speedster_dist.backends.generate.split_phases:SPLIT",
}
GENERATION_BASELINE = "generate_torch"

ENTRY_POINT_GROUP = "speedster_dist.backends"
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


@cache
def _plugins() -> dict[str, str]:
    """Backends installed distributions declare (read once per process)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _from_environment() -> dict[str, str]:
    extra = {}
    for item in filter(None, os.environ.get(EXTRA_BACKENDS_ENV, "").split(",")):
        name, sep, target = item.partition("=")
        if not sep or not name.strip() or ":" not in target or not all(target.split(":")):
            raise UnknownBackendError(
                f"{EXTRA_BACKENDS_ENV}: {item!r} is not name=package.module:attribute"
            )
        extra[name.strip()] = target.strip()
    return extra


def _registry() -> dict[str, str]:
    return {**_BUILTIN, **_plugins(), **_from_environment()}


def backend_names() -> tuple[str, ...]:
    """Every registered backend name: built-ins first, then plugins, then the variable's."""
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
    module_name, _, attribute = registry[name].partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), attribute)
    return backend


def saves_code(name: str) -> bool:
    """Whether what backend ``name`` saves is a program (TorchScript, a torch.export
    archive) rather than data (ONNX, OpenVINO IR, an engine): loading it runs code from the
    artifact. True for a backend that does not say, or cannot be imported here."""
    try:
        return bool(getattr(get_backend(name), "saves_code", True))
    except Exception:  # an unknown or unimportable backend is never taken for data
        return True
