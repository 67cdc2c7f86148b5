"""Every exception a user of speedster-dist may catch, in one module every layer can import.

A leaf: it imports nothing, so the load path, the backends and the CLI all raise and catch
the same classes. Each is still importable from the module that raised it before (for
example ``speedster_dist.inputs.InputError``); ``speedster_dist`` re-exports them all.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BatchError",
    "ClusterConnectionError",
    "InputError",
    "PriceError",
    "ShapeError",
    "SignatureError",
    "StudyStorageError",
    "UnknownBackendError",
    "UnsupportedCandidate",
]


class InputError(ValueError):
    """The input data (or an argument describing it) cannot be used; the message says why."""


class ShapeError(ValueError):
    """A learner was called with input shapes it was not built to take."""


class ArtifactError(RuntimeError):
    """A saved learner is missing, corrupt, tampered with, or has nothing for this machine."""


class SignatureError(ValueError):
    """The manifest is unsigned, signed with another key, or changed after signing; or a
    key cannot be used (the message says why)."""


class PriceError(ValueError):
    """The price table is malformed (says what and where)."""


class StudyStorageError(ValueError):
    """A study storage that cannot be used: a wrong ``study_storage`` value, a URL Optuna
    cannot open, or a damaged journal file. The message says what is wrong and how to fix it.
    (``optimize_model`` raises a wrong value as ``InputError``, before any trial.)"""


class BatchError(ValueError):
    """The samples cannot be tiled into the batch asked for (and why, and the fix)."""


class UnknownBackendError(ValueError):
    """A backend name that is neither registered nor a known Speedster alias."""


class UnsupportedCandidate(RuntimeError):
    """Raised by a backend's ``build`` when this model cannot be built this way (the trial
    is recorded as failed with the message; the search goes on)."""


class ClusterConnectionError(ConnectionError):
    """The cluster address given (or found in RAY_ADDRESS) cannot be reached."""
