"""Backends: how a candidate is built and run. See :mod:`._protocol` for the contract."""

from speedster_dist.backends._protocol import (
    Backend,
    BuildConfig,
    Capability,
    Compiled,
    Knob,
    SourceModel,
    UnsupportedCandidate,
)
from speedster_dist.backends._registry import (
    BASELINE_BACKEND,
    ENTRY_POINT_GROUP,
    EXTRA_BACKENDS_ENV,
    UnknownBackendError,
    backend_names,
    get_backend,
    resolve_backend_name,
)

__all__ = [
    "BASELINE_BACKEND",
    "ENTRY_POINT_GROUP",
    "EXTRA_BACKENDS_ENV",
    "Backend",
    "BuildConfig",
    "Capability",
    "Compiled",
    "Knob",
    "SourceModel",
    "UnknownBackendError",
    "UnsupportedCandidate",
    "backend_names",
    "get_backend",
    "resolve_backend_name",
]
