"""The entry point of the confirmation contenders' server (``python -m`` this module, see
:mod:`._fresh_server`): a module of its own, which the package never imports, so that it runs
only once."""

from __future__ import annotations

import sys

from speedster_dist.runtime._fresh_server import run_server
from speedster_dist.runtime._fresh_worker import serve

if __name__ == "__main__":  # pragma: no cover - runs in the server's process
    run_server(int(sys.argv[1]), serve)
