"""One process at a time per folder: a lock file that says who holds it.

`RunLock(folder, command)` (a context manager) creates ``folder/.hamgan.lock`` exclusively
(O_EXCL, atomic on local disks and NFS) holding the owner's pid, host, command and start time,
and refreshes the file's modification time every `HEARTBEAT` seconds from a background thread
while it is held. A second process that finds the file

- refuses to start, naming the holder's pid and host, while the holder may be alive;
- takes the lock over, with a note, when the holder is gone: on this host, its pid is not
  running (or is our own: a restarted container); on another host, its heartbeat has not
  moved for `STALE_AFTER` seconds (watched for that long, so clocks need not agree).

A process may take a lock it already holds (`hamgan demo` holds its run directory's while it
trains there); only the outermost release removes it.

Portable: no fcntl, no signals (Windows asks the process table through ctypes).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from .errors import HamganError

LOCK_NAME = ".hamgan.lock"
HEARTBEAT = 15.0     # seconds between refreshes of the lock's modification time
STALE_AFTER = 60.0   # a heartbeat that has not moved for this long belongs to a dead holder


_HELD: set[str] = set()  # tokens of the locks this process holds


class LockedError(HamganError):
    """The folder is in use by another live process."""


def pid_running(pid: int) -> bool:
    """Whether a process `pid` exists on this host."""
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
        import ctypes
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's process
        return True
    return True


def _read(path: Path) -> tuple[dict | None, float | None]:
    """(holder, heartbeat mtime) of a lock file; (None, None) if it is gone, ({}, mtime) if it
    is not (yet) readable. Opening the file makes an NFS client revalidate its attributes."""
    try:
        with open(path, "rb") as f:
            mtime = os.fstat(f.fileno()).st_mtime
            text = f.read()
    except FileNotFoundError:
        return None, None
    try:
        holder = json.loads(text)
    except ValueError:  # being written, or its writer died before writing
        return {}, mtime
    return (holder if isinstance(holder, dict) else {}), mtime


class RunLock:
    """Hold `folder`'s lock for the `with` block (or between `acquire` and `release`).

    `command` says who holds it ('hamgan train'); `note` receives the line said when a stale
    lock is taken over."""

    def __init__(self, folder: str | os.PathLike, command: str, note=print):
        self.path = Path(folder) / LOCK_NAME
        self.command, self.note = command, note
        self.token = uuid.uuid4().hex
        self._nested = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unreadable_since = None
        while not self._create():
            holder, mtime = _read(self.path)
            if holder is None:
                continue  # released meanwhile: try again
            if holder.get("token") in _HELD:  # held by this very process already
                self._nested = True
                return self
            if not holder:  # its writer is writing it (microseconds) or died doing so
                unreadable_since = unreadable_since or time.monotonic()
                if time.monotonic() - unreadable_since < 2.0:
                    time.sleep(0.05)
                    continue
            why = self._why_stale(holder, mtime) if holder else "it is unreadable (its writer died creating it)"
            if why is None:
                raise LockedError(self._refusal(holder))
            again, _ = _read(self.path)
            if again is not None and again.get("token") == holder.get("token"):  # not taken over meanwhile
                self.path.unlink(missing_ok=True)
            self.note(f"note: took over the lock {self.path} of {self._who(holder)}: {why}")
        _HELD.add(self.token)
        self._thread = threading.Thread(target=self._beat, name="hamgan-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        holder, _ = _read(self.path)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        _HELD.discard(self.token)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------ pieces

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": datetime.now().isoformat(timespec="seconds"), "token": self.token}
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(holder) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True

    def _why_stale(self, holder: dict, mtime: float) -> str | None:
        """Why the holder is gone, or None if it may be alive (after watching its heartbeat
        when it cannot be asked directly)."""
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if holder["pid"] == os.getpid():
                return "its pid is ours (a restarted container)"
            if not pid_running(holder["pid"]):
                return "that process is no longer running"
            return None
        deadline = time.monotonic() + STALE_AFTER
        while time.monotonic() < deadline:
            time.sleep(min(1.0, STALE_AFTER / 10))
            again, beat = _read(self.path)
            if again is None or again.get("token") != holder.get("token") or beat != mtime:
                return None  # released, replaced, or its heartbeat moved: someone is alive
        return f"its heartbeat has not moved for {STALE_AFTER:.0f} s"

    @staticmethod
    def _who(holder: dict) -> str:
        if not holder:
            return "a process that died creating it"
        return (f"{holder.get('command', 'a hamgan process')} (pid {holder.get('pid')} on host "
                f"{holder.get('host')}, started {holder.get('started')})")

    def _refusal(self, holder: dict) -> str:
        return (f"{self.path.parent} is in use by {self._who(holder)}; wait for it to finish or stop it "
                f"(a second copy would overwrite its files). If it is no longer running, delete {self.path}.")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:  # deleted by hand, or a transient file-system error: keep going
                pass
