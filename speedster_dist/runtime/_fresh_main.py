"""The entry point of a confirmation's contender process (``python -m`` this module): a
module of its own, which the package never imports, so that it runs only once."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from multiprocessing.connection import Connection

from speedster_dist.runtime._fresh_worker import serve


def _die_with_parent() -> None:
    """On Linux, be killed when the process that started this one ends (a Ray task cancelled
    by force, a crashed driver): a contender stuck in a build must not outlive it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


if __name__ == "__main__":  # pragma: no cover - runs in the child
    _die_with_parent()
    _conn = Connection(int(sys.argv[1]))
    try:
        serve(_conn)
    except EOFError:  # the parent went away
        pass
    finally:
        _conn.close()
