"""The embedded Ray's helper processes end with the run, even a run killed with SIGKILL.

Ray stops its control store and raylet with the driver, but two helpers the raylet starts
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive a driver killed with ``kill -9``:
they wait for ever on the control store that went with it. :func:`start` launches a small
watcher next to an embedded Ray (its own session, so that a Ctrl-C or a kill of the run's
process group does not take it first). When the driver or the session's raylet is gone, it
waits a moment for Ray's own shutdown, then kills what is left of that session: Ray's
processes (``ray::...``, Ray's binaries, Python running Ray's code) that name the session's
folder or hold a file open in it. It then exits. Linux only (it reads ``/proc``); elsewhere
:func:`start` does nothing.

This file runs as a script (``python _reaper.py DRIVER_PID RAYLET_PID SESSION_DIR``) and
imports nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["leftovers", "session_of", "start", "watch"]

_PROC = Path("/proc")
_POLL_S = 0.5
_GRACE_S = 2.0  # Ray's own shutdown stops its helpers in about this long
# The watchers this process started (kept, so that each is waited for once it ends).
_watchers: list[subprocess.Popen[bytes]] = []
_SESSION = re.compile(r"(/\S*?/session_\d{4}-\d\d-\d\d_[\d_-]+\d)")


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), or None once it is gone;
    with the pid it names one process, whatever pid is reused later."""
    try:
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if fields[0] != "Z" else None  # a zombie has ended


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _children(pid: int) -> list[int]:
    found = []
    for stat in _PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def session_of(driver_pid: int) -> tuple[int, str] | None:
    """The raylet that ``driver_pid`` started and its session folder, or None."""
    for child in _children(driver_pid):
        args = _cmdline(child)
        if args and Path(args[0]).name == "raylet":
            found = _SESSION.search(" ".join(args))
            if found:
                return child, found.group(1)
    return None


def start(driver_pid: int) -> bool:
    """Called by the driver right after its embedded Ray started: watch it. False when
    there is nothing to watch (not Linux, or no raylet of this driver found)."""
    if not _PROC.is_dir():
        return False
    found = session_of(driver_pid)
    if found is None:
        return False
    raylet, session = found
    _watchers[:] = [w for w in _watchers if w.poll() is None]  # reap those that ended
    watcher = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(driver_pid), str(raylet), session],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    _watchers.append(watcher)
    return True


def _is_rays(args: list[str]) -> bool:
    """Ray's processes only (a user's ``tail -f`` of a log in the session is left alone)."""
    if not args:
        return False
    first = args[0]
    if first.startswith("ray::") or Path(first).name in ("raylet", "gcs_server"):
        return True
    return "python" in Path(first).name and any("/ray/" in arg for arg in args[1:3])


def _uses(pid: int, session: str) -> bool:
    if any(session in arg for arg in _cmdline(pid)):
        return True
    with contextlib.suppress(OSError):
        for fd in (_PROC / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(session + "/"):
                    return True
    return False


def leftovers(session: str, spare: set[int]) -> list[int]:
    """Ray's processes of ``session`` still running, except those in ``spare``."""
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in spare:
            continue
        pid = int(entry.name)
        if _is_rays(_cmdline(pid)) and _uses(pid, session):
            found.append(pid)
    return found


def watch(driver: int, raylet: int, session: str) -> None:
    """Until the driver or the raylet ends; then kill the session's leftovers."""
    stamps = {pid: _start_time(pid) for pid in (driver, raylet)}
    while all(stamp is not None and _start_time(pid) == stamp for pid, stamp in stamps.items()):
        time.sleep(_POLL_S)
    time.sleep(_GRACE_S)
    spare = {os.getpid()}
    if _start_time(driver) == stamps[driver]:
        spare.add(driver)  # it shut its Ray down and lives on: only Ray's leftovers go
    for pid in leftovers(session, spare):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
