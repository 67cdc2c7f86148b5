"""speedster-dist: the fastest accurate way to run a model, on every hardware type of a cluster.

Heavy backend libraries (onnxruntime, openvino, tensorrt) are imported only when a backend is
used, so this import works without them. Every public exception is here too
(:mod:`speedster_dist.errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from speedster_dist.errors import (
    ArtifactError,
    BatchError,
    ClusterConnectionError,
    InputError,
    PriceError,
    ShapeError,
    SignatureError,
    StudyStorageError,
    UnknownBackendError,
    UnsupportedCandidate,
)

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "BatchError",
    "ClusterConnectionError",
    "HardwareKeyedLearner",
    "InferenceLearner",
    "InputError",
    "LearnerMetadata",
    "PriceError",
    "ShapeError",
    "SignatureError",
    "StudyStorageError",
    "UnknownBackendError",
    "UnsupportedCandidate",
    "__version__",
    "load_model",
    "optimize_model",
]

if TYPE_CHECKING:
    from speedster_dist.api import optimize_model
    from speedster_dist.artifacts import LearnerMetadata
    from speedster_dist.learner import HardwareKeyedLearner, InferenceLearner, load_model

_LAZY = {
    "optimize_model": "speedster_dist.api",
    "HardwareKeyedLearner": "speedster_dist.learner",
    "InferenceLearner": "speedster_dist.learner",
    "LearnerMetadata": "speedster_dist.artifacts",
    "load_model": "speedster_dist.learner",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import speedster_dist` stays cheap (no torch, no Ray) until used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'speedster_dist' has no attribute {name!r}")
