"""One writer per run directory, safe file writes and friendly OS errors (Linux first).

Standard library only. Locks are ``fcntl.flock`` locks: the kernel holds them for the open file
description, so they vanish when their holder dies, whatever the lock file says; the JSON written
into a lock file only serves messages. Lock files are opened with ``O_CLOEXEC``, so programs
started with ``subprocess`` (or any ``exec``) never inherit them.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import secrets
import signal
import sys
import threading
import time

__all__ = ["process_start_time", "LockedError", "DirectoryLock", "CellLock", "claim_cell", "holder",
           "atomic_write", "die_with_parent", "oserror_message", "LOCK_NAME"]

LOCK_NAME = ".htbo-lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


# ---------------------------------------------------------------- processes

def _parse_start_time(stat: str) -> int:
    """Field 22 (``starttime``) of a ``/proc/<pid>/stat`` line.

    The command name (field 2, in parentheses) may hold spaces and ')', so split at the last ')'.
    """
    rest = stat[stat.rindex(")") + 1:].split()
    return int(rest[22 - 3])  # ``rest`` starts at field 3 (the state)


def _proc_state(pid: int) -> str | None:
    """Field 3 of ``/proc/<pid>/stat`` ('R', 'S', 'Z', ...), or None if there is no such process."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 1:].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot; None if no such process or no /proc."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return _parse_start_time(f.read())
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid: int, start_time: int | None) -> bool:
    """Whether the process that recorded (``pid``, ``start_time``) still runs (not a reused PID)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        now = process_start_time(pid)
        return now is not None and now == start_time
    try:  # no /proc: a live PID is the best we can tell
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _read_json(fd: int) -> dict | None:
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(fd: int, data: dict, sync: bool) -> None:
    os.ftruncate(fd, 0)
    view = memoryview(json.dumps(data).encode("utf-8"))
    offset = 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)
    if sync:
        os.fsync(fd)


# ---------------------------------------------------------------- run directory lock

class LockedError(ValueError):
    """A lock is held by another live process; ``holder`` is what its lock file records, or None."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder


def _since(t) -> str:
    try:
        when = time.localtime(float(t))
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    same_day = when[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", when)


def _locked_message(directory, info: dict | None) -> str:
    parts = []
    if info and isinstance(info.get("pid"), int):
        parts.append(f"PID {info['pid']}")
        since = _since(info.get("since"))
        if since:
            parts[-1] += f", since {since}"
        command = " ".join(str(info.get("command") or "").split())  # keep it on one line
        if command:
            parts[-1] += f": {command}"
    who = f" ({parts[0]})" if parts else ""
    return (f"{os.fspath(directory)} is in use by another htbo process{who}: "
            "wait for it to finish, or use another directory")


class DirectoryLock:
    """Exclusive, non-blocking ``flock`` on ``<directory>/.htbo-lock``: one writer per directory.

    ``with DirectoryLock(d, command="htbo run ..."):`` or ``acquire()`` / ``release()``. The lock
    file stays after release (unlinking a flock'ed file races with its other openers).
    """

    def __init__(self, directory, command: str = ""):
        self.directory = directory
        self.path = os.path.join(os.fspath(directory), LOCK_NAME)
        self.command = command
        self._fd: int | None = None
        self._owner_pid: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None and self._owner_pid == os.getpid()

    def acquire(self, command: str | None = None) -> "DirectoryLock":
        """Take the lock or raise ``LockedError``; ValueError if this object already holds it.

        ``command`` (default: the one given to the constructor) is recorded for other processes'
        messages. OSErrors (missing or read-only directory, ...) propagate: see ``oserror_message``.
        """
        if self.held:
            raise ValueError(f"{os.fspath(self.directory)} is already locked by this DirectoryLock")
        fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_json(fd)
            for _ in range(40):  # the holder writes its JSON right after locking: wait for it
                if info and isinstance(info.get("pid"), int):
                    break
                time.sleep(0.025)
                info = _read_json(fd)
            os.close(fd)
            raise LockedError(_locked_message(self.directory, info), info) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            _write_json(fd, {"pid": os.getpid(), "start_time": process_start_time(os.getpid()),
                             "command": self.command if command is None else command,
                             "since": time.time()}, sync=True)
        except BaseException:
            os.close(fd)  # closing the only descriptor releases the lock
            raise
        self._fd, self._owner_pid = fd, os.getpid()
        return self

    def release(self) -> None:
        """Unlock and close (no-op if not held). In a forked child, only closes its copy."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner_pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- shared-store cell locks

_OK, _HELD, _STALE = "ok", "held", "stale"


def _try_lock_fd(path, fd: int) -> str:
    """Try to ``flock`` ``fd`` (opened on ``path``): ``"ok"``, ``"held"`` (a live process holds it)
    or ``"stale"`` (locked an inode that is no longer at ``path``: its holder released it; retry)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _HELD
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        on_disk = None
    mine = os.fstat(fd)
    if on_disk is None or (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
        fcntl.flock(fd, fcntl.LOCK_UN)
        return _STALE
    return _OK


class CellLock:
    """A claimed cell lock (see ``claim_cell``); ``release()`` unlocks and removes the lock file."""

    def __init__(self, path, fd: int):
        self.path = os.fspath(path)
        self._fd: int | None = fd
        self._owner_pid = os.getpid()

    @property
    def held(self) -> bool:
        return self._fd is not None and self._owner_pid == os.getpid()

    def release(self) -> None:
        """Remove the lock file (if it is still ours), then unlock and close. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner_pid == os.getpid():
                with contextlib.suppress(OSError):
                    st, mine = os.stat(self.path), os.fstat(fd)
                    if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
                        os.unlink(self.path)  # while still locked: racers see a stale inode
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "CellLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_cell(path, retries: int = 20) -> CellLock | None:
    """Non-blocking claim of the lock file ``path``; None if a live process holds it.

    Whatever the file holds (nothing, PID 0, garbage, a dead or reused PID) does not matter: only a
    live holder's flock does. A claim that lands on an inode its holder just unlinked is retried
    (at most ``retries`` times, then None). OSErrors propagate.
    """
    path = os.fspath(path)
    for _ in range(max(1, retries)):
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        try:
            state = _try_lock_fd(path, fd)
        except BaseException:
            os.close(fd)
            raise
        if state == _OK:
            with contextlib.suppress(OSError):  # informational only
                _write_json(fd, {"pid": os.getpid(), "start_time": process_start_time(os.getpid())},
                            sync=False)
            return CellLock(path, fd)
        os.close(fd)
        if state == _HELD:
            return None
    return None


def holder(path) -> dict | None:
    """What lock file ``path`` records: ``{"pid", "start_time", "live"}``, or None if nothing usable.

    ``live`` is True only if that PID runs and its start time equals the recorded one (for
    messages; whether a lock is held is decided by flock alone).
    """
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(65536).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, start = data.get("pid"), data.get("start_time")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    return {**data, "pid": pid, "start_time": start, "live": _pid_alive(pid, start)}


# ---------------------------------------------------------------- atomic writes

def atomic_write(path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (str: UTF-8) atomically: readers see the old or new content.

    Writes ``.<name>.<pid>.<random>.tmp`` next to ``path``, fsyncs it and ``os.replace``s it; on any
    error the temp file is removed and the error re-raised.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else bytes(data))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- die with parent

PR_SET_PDEATHSIG = 1
_watch: dict = {}
_watch_lock = threading.Lock()


def _set_pdeathsig(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(int(sig)), ctypes.c_ulong(0),
                          ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        return False


def _poll_parent() -> None:
    while True:
        time.sleep(_watch["poll_s"])
        if os.getppid() != _watch["parent"]:
            os.kill(os.getpid(), _watch["sig"])
            return


def die_with_parent(poll_s: float = 1.0, sig=signal.SIGTERM, *, parent: int | None = None) -> None:
    """Have this process receive ``sig`` when its parent dies.

    Linux: ``prctl(PR_SET_PDEATHSIG)`` (note: it fires when the parent *thread* that forked us
    exits). Everywhere: a daemon thread polls ``os.getppid()`` every ``poll_s`` seconds. If the
    parent (``parent``, default the current one) is already gone, ``sig`` is sent at once.
    Idempotent: later calls update ``poll_s``/``sig`` but start no second thread.
    """
    expected = os.getppid() if parent is None else parent
    _set_pdeathsig(sig)
    with _watch_lock:
        _watch.update(parent=expected, sig=sig, poll_s=max(0.01, float(poll_s)))
        if not _watch.get("thread"):
            _watch["thread"] = threading.Thread(target=_poll_parent, name="htbo-die-with-parent",
                                                daemon=True)
            _watch["thread"].start()
    if os.getppid() != expected:
        os.kill(os.getpid(), sig)


def _forget_watch() -> None:  # threads and PDEATHSIG do not survive fork
    _watch.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watch)


# ---------------------------------------------------------------- messages

_HINTS = {
    errno.ENOSPC: "free some space or choose another {where}",
    errno.EDQUOT: "free some space (disk quota) or choose another {where}",
    errno.EACCES: "choose another {where} you can write to",
    errno.EPERM: "choose another {where} you can write to",
    errno.EROFS: "the file system is read-only: choose a writable {where}",
    errno.ENOTDIR: "part of {path} is a file where a directory is expected",
    errno.EISDIR: "{path} is a directory where a file is expected",
    errno.EEXIST: "{path} already exists (a file where a directory is expected?): remove it or "
                  "choose another {where}",
    errno.ENOENT: "{path} (or a directory above it) does not exist",
}


def oserror_message(e: OSError, path, action: str, *, option: str | None = None) -> str:
    """One line for users: ``cannot <action> <path>: <reason> (<ERRNO>): <what to do>``.

    ``option`` (e.g. ``"--out"``) names, in hints, the flag that chooses the location.
    """
    path = " ".join(os.fsdecode(path).splitlines()) if path is not None else "?"
    reason = e.strerror or str(e) or type(e).__name__
    code = errno.errorcode.get(e.errno) if isinstance(e.errno, int) else None
    line = f"cannot {action} {path}: {reason}" + (f" ({code})" if code else "")
    hint = _HINTS.get(e.errno)
    if hint:
        line += ": " + hint.format(path=path, where=f"directory ({option})" if option else "directory")
    return line
