"""Status lines of the fleet workflows (stderr, so that stdout stays the result)."""

from __future__ import annotations

import sys
import time

__all__ = ["say"]


def say(message: str) -> None:
    """A timestamped progress or status line."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)
