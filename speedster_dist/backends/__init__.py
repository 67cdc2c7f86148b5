"""Backends: how a candidate is built and run. See :mod:`._protocol` for the contract."""

from speedster_dist.backends._batching import (
    batch_axis_dynamic,
    builds_per_batch,
    source_for_batch,
)
from speedster_dist.backends._protocol import (
    Backend,
    BuildConfig,
    Capability,
    Compiled,
    Knob,
    SourceModel,
    UnsupportedCandidate,
    build_notes,
    device_call,
    throughput_knobs,
)
from speedster_dist.backends._registry import (
    BASELINE_BACKEND,
    ENTRY_POINT_GROUP,
    EXTRA_BACKENDS_ENV,
    GENERATION_BASELINE,
    UnknownBackendError,
    backend_names,
    get_backend,
    resolve_backend_name,
    saves_code,
)
from speedster_dist.backends._runners import (
    UNDECLARED_THREADS,
    CudaStreamRunner,
    ThreadRunner,
    check_concurrency,
    runner_for,
)
from speedster_dist.backends._serve import fixed_rows, pad_rows, serve_requests, split_rows

__all__ = [
    "BASELINE_BACKEND",
    "ENTRY_POINT_GROUP",
    "EXTRA_BACKENDS_ENV",
    "GENERATION_BASELINE",
    "UNDECLARED_THREADS",
    "Backend",
    "BuildConfig",
    "Capability",
    "Compiled",
    "CudaStreamRunner",
    "Knob",
    "SourceModel",
    "ThreadRunner",
    "UnknownBackendError",
    "UnsupportedCandidate",
    "backend_names",
    "batch_axis_dynamic",
    "build_notes",
    "builds_per_batch",
    "check_concurrency",
    "device_call",
    "fixed_rows",
    "get_backend",
    "pad_rows",
    "resolve_backend_name",
    "runner_for",
    "saves_code",
    "serve_requests",
    "source_for_batch",
    "split_rows",
    "throughput_knobs",
]
