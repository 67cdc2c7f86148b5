"""The entry point of a confirmation's contender process (``python -m`` this module): a
module of its own, which the package never imports, so that it runs only once."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from speedster_dist.runtime._fresh_worker import serve

if __name__ == "__main__":  # pragma: no cover - runs in the child
    _conn = Connection(int(sys.argv[1]))
    try:
        serve(_conn)
    except EOFError:  # the parent went away
        pass
    finally:
        _conn.close()
