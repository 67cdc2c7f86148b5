"""Where confirmation contenders come from: a server process that forks a fresh one on request.

A new interpreter spends about 1.5 s (2 cores) importing torch and this package before it can
build a contender, and a confirmation starts one per contender. The server pays that once per
calling process: it imports them, never builds or runs a model, and forks itself for each
contender. A fork of it holds nothing another contender left behind (no thread pool that ran,
no allocator arena, no cache), which is what "fresh" means for a timing; it starts in
milliseconds.

One server per calling process (:func:`contender_server`), started on first use with
``python -m speedster_dist.runtime._fresh_main``; it dies with its caller and its contenders
die with it (``PR_SET_PDEATHSIG``). The caller asks over a socket, one request at a time:
``start`` (the contender's end of a socket pair is passed along, with the caller's environment
and import path, which tests and Ray's ``runtime_env`` may have changed since the server
started), ``wait`` (a contender's exit code, once it has ended) and ``kill``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["ContenderServer", "ServerError", "contender_server", "run_server"]

_LENGTH = struct.Struct("!I")
# Imported once by the server so that no contender pays for them: what ``serve`` imports
# lazily (torch and the worker module come with ``_fresh_main``'s own import of ``serve``).
_PRELOAD = (
    "speedster_dist.runtime._task",
    "speedster_dist.runtime._trial",
)
# Imported by the server too once a caller has them: a Hugging Face model's contender spent
# about 2 s (2 cores) importing transformers' modeling code before it could load its model.
_PRELOAD_IF_CALLER_HAS = ("transformers.modeling_utils",)


class ServerError(RuntimeError):
    """The contender server died or did not answer."""


def die_with_parent() -> None:
    """On Linux, be killed when the process that started this one ends (a Ray task cancelled
    by force, a crashed driver): a contender stuck in a build must not outlive it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _send_frame(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EOFError("the other end closed the socket")
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock: socket.socket) -> Any:
    (size,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    return pickle.loads(_recv_exact(sock, size))


def _server_environment() -> dict[str, str]:
    """This process's environment, with its import path (a Ray worker's runtime_env may have
    put packages on ``sys.path`` only), so that the server imports the same code."""
    path = os.pathsep.join(p for p in sys.path if p)
    return {**os.environ, "PYTHONPATH": path}


class ContenderServer:
    """The caller's handle on its server process (see the module); safe from several threads."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        self._sock = mine
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "speedster_dist.runtime._fresh_main", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=_server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # a backend's prints must not reach the caller's output
        )
        theirs.close()
        self._lock = threading.Lock()
        self.owner = os.getpid()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def _ask(self, request: tuple[Any, ...], fd: int | None = None) -> Any:
        with self._lock:
            try:
                _send_frame(self._sock, request)
                if fd is not None:
                    socket.send_fds(self._sock, [b"F"], [fd])
                return _recv_frame(self._sock)
            except (OSError, EOFError) as exc:
                raise ServerError(f"the contender server died ({exc})") from exc

    def start(self, contender_end: socket.socket) -> int:
        """A fresh contender serving ``contender_end`` (closed here); returns its pid."""
        try:
            env = dict(os.environ)
            path = [p for p in sys.path if p]
            warm = [name for name in _PRELOAD_IF_CALLER_HAS if name in sys.modules]
            pid: int = self._ask(("start", env, path, warm), contender_end.fileno())
            return pid
        finally:
            contender_end.close()

    def wait(self, pid: int, timeout_s: float) -> int | None:
        """The contender's exit code once it has ended (negative: the signal that ended it),
        None if it still runs after ``timeout_s``."""
        code: int | None = self._ask(("wait", pid, timeout_s))
        return code

    def kill(self, pid: int) -> int | None:
        code: int | None = self._ask(("kill", pid))
        return code

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


_server: ContenderServer | None = None
_server_lock = threading.Lock()


def contender_server() -> ContenderServer:
    """This process's server, started on first use (again if it died or this is a fork)."""
    global _server
    with _server_lock:
        if _server is None or _server.owner != os.getpid() or not _server.alive():
            if _server is None:
                atexit.register(_close_server)
            _server = ContenderServer()
        return _server


def _close_server() -> None:
    """At exit: end the server now rather than leave it to notice (and a warning)."""
    with _server_lock:
        if _server is not None and _server.owner == os.getpid():
            _server.close()


# -- the server's side ---------------------------------------------------------------------


def _wait(pid: int, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # already reaped (a kill or wait before): nothing to say
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _kill(pid: int) -> int | None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return None


Serve = Callable[[Connection], None]


def _contender(serve: Serve, fd: int, env: dict[str, str], path: list[str]) -> None:
    """A forked contender: the caller's environment and path, then ``serve``; never returns."""
    code = 0
    try:
        die_with_parent()  # with the server, which dies with the caller
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = path
        conn = Connection(fd)
        with contextlib.suppress(EOFError):  # the caller went away
            serve(conn)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # never the server's loop, nor its exit handlers


def _import_once(modules: list[str]) -> None:
    """Import ``modules`` in the server (before it forks), so that its contenders have them;
    one that fails to import is left to the contender, which then says why."""
    import importlib

    for name in modules:
        if name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)


def _start(
    sock: socket.socket, serve: Serve, env: dict[str, str], path: list[str], warm: list[str]
) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise EOFError("no contender socket came with the request")
    _import_once(warm)
    pid = os.fork()
    if pid == 0:
        sock.close()
        _contender(serve, fds[0], env, path)
    os.close(fds[0])
    return pid


def run_server(fd: int, serve: Serve) -> None:
    """The server's loop (in its own process): preload, then answer until the caller leaves;
    each contender it forks runs ``serve`` on its socket."""
    die_with_parent()
    sock = socket.socket(fileno=fd)
    _import_once(list(_PRELOAD))
    handlers: dict[str, Callable[..., int | None]] = {
        "start": lambda env, path, warm: _start(sock, serve, env, path, warm),
        "wait": _wait,
        "kill": _kill,
    }
    while True:
        try:
            kind, *args = _recv_frame(sock)
        except (EOFError, OSError):
            return
        _send_frame(sock, handlers[kind](*args))
