"""One writer per run directory: an exclusive lock on ``<run_dir>/writer.lock``.

Every process that writes a run directory (``mtrl train``, its ``--resume``, the independent
baseline, a sweep's runs) holds the lock for its whole life; a second writer is refused in one
line naming the holder, before it writes anything. Readers (``mtrl eval``, ``report``, ``export``)
never take it. The lock file holds the holder's pid, host, start time and command, for the
refusal message only: what counts is the lock, which the kernel (or the file server) drops when
the process ends, however it ends (SIGKILL, a crash, a lost machine once its lease times out), so
there is no stale lock to clean up. Never delete the file while a run may be going: a writer that
opens the new file would not see the old one's lock.

Why POSIX record locks (``fcntl``/``lockf``) and not ``flock(2)``:

- NFS: fcntl locks go to the server (NLM/lockd on NFS v3, built into the protocol on v4), so
  processes on different hosts exclude each other. ``flock(2)`` is emulated with fcntl locks by
  Linux NFS clients since 2.6.12, but not by every client (older kernels and some other systems
  take it locally only, so two hosts would both "hold" it).
- Lustre: fcntl locks are coherent across clients when the file system is mounted with
  ``-o flock``; with ``-o localflock`` they only exclude processes on the same client; without
  either, locking fails (ENOSYS), and mtrl says so rather than run unprotected.
- Local file systems: both work; fcntl is the one that works everywhere above.

POSIX locks belong to a process, not to a file descriptor: a second lock from the same process
succeeds silently, and closing *any* descriptor of the file drops the process's lock. So this
module is the only code that opens the lock file, a process asking about its own run directory is
answered from memory (``_HELD``), and a second writer inside one process is refused from there
too. ``MTRL_RUN_LOCK=off`` skips locking (for file systems without locks), at your own risk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mtrl.errors import RunLockedError

LOCK_FILE = "writer.lock"
# A reader's probe (``holder``) holds a shared lock for microseconds; a writer that meets one tries
# again for this long before it refuses.
GRACE_SECONDS = 0.5
_CONFLICT = (errno.EACCES, errno.EAGAIN)
_UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
_HELD: dict[tuple[int, int], RunLock] = {}  # (device, inode) of the lock file -> this process's


def _key(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def _own(path: Path) -> RunLock | None:
    """This process's lock on ``path``, found without opening the file (a close would drop it)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _HELD.get((stat.st_dev, stat.st_ino))


def _record() -> dict[str, Any]:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "started": time.time(),
        "command": shlex.join(argv),
    }


def describe(run_dir: Path, holder: dict[str, Any]) -> str:
    """The refusal: "R is being written by pid P on host H since 12:03; wait for it or stop it"."""
    if "pid" not in holder:  # its record is not written yet (or was lost)
        return f"{run_dir} is being written by another process; wait for it or stop it"
    who = f"pid {holder['pid']} on host {holder.get('host', '?')}"
    started = holder.get("started")
    if isinstance(started, (int, float)):
        local = time.localtime(started)
        same_day = time.strftime("%Y-%m-%d", local) == time.strftime("%Y-%m-%d")
        who += " since " + time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", local)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        who += " (this process)"
    return f"{run_dir} is being written by {who}; wait for it or stop it"


def _read(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """This process's exclusive lock on a run directory; ``release()`` (or the process's end)
    frees it."""

    def __init__(self, run_dir: Path, fd: int | None, record: dict[str, Any]) -> None:
        self.run_dir, self.fd, self.record = run_dir, fd, record
        self.path = run_dir / LOCK_FILE

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            key = _key(fd)
            if _HELD.get(key) is self:
                del _HELD[key]
        finally:
            os.close(fd)  # closing drops the lock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def acquire(run_dir: Path) -> RunLock:
    """Locks ``run_dir`` (which must exist) for this process, or raises ``RunLockedError`` naming
    the holder. Other failures (a directory that cannot be written) raise ``OSError``."""
    run_dir = Path(run_dir)
    if os.environ.get("MTRL_RUN_LOCK", "").lower() in ("off", "0", "false", "no"):
        return RunLock(run_dir, None, {})
    own = _own(run_dir / LOCK_FILE)
    if own is not None:  # fcntl would say yes (POSIX locks are per process): ask _HELD instead
        raise RunLockedError(describe(run_dir, own.record))
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + GRACE_SECONDS
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno in _UNSUPPORTED:
                    raise RunLockedError(
                        f"cannot lock {run_dir / LOCK_FILE} ({error.strerror}): the file system "
                        "has no fcntl locks (NFS without lockd? Lustre without -o flock?); set "
                        "MTRL_RUN_LOCK=off to run without the one-writer check"
                    ) from None
                if error.errno not in _CONFLICT:
                    raise
                if time.monotonic() > deadline:
                    raise RunLockedError(describe(run_dir, _read(fd))) from None
                time.sleep(0.05)
        record = _record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    lock = RunLock(run_dir, fd, record)
    _HELD[_key(fd)] = lock
    return lock


def holder(run_dir: Path) -> dict[str, Any] | None:
    """Who writes ``run_dir`` now (its lock record), or None. Takes no lock that outlives the
    call; a process that holds the lock itself is answered without touching the file."""
    path = Path(run_dir) / LOCK_FILE
    own = _own(path)
    if own is not None:  # opening and closing the file here would drop this process's lock
        return dict(own.record)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never written by a locking mtrl
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in _CONFLICT:
                return _read(fd) or {"record": "not written yet"}  # never empty (falsy)
            return None  # a file system without locks: nothing to say
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


__all__ = ["LOCK_FILE", "RunLock", "RunLockedError", "acquire", "describe", "holder"]
