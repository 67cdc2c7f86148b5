"""The node-local cache folder (ONNX exports, fused graphs, Optuna studies)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "SPEEDSTER_DIST_CACHE"


def cache_root() -> Path:
    """``$SPEEDSTER_DIST_CACHE`` or ``~/.cache/speedster-dist``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "speedster-dist"
