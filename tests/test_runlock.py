"""The run-directory lock (issue 13), with real processes: a second one is refused with the
first one's pid and host; the lock of a killed process, or of a silent one on another host, is
taken over with a note."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import hamgan.runlock as runlock
from hamgan.runlock import LOCK_NAME, LockedError, RunLock

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys\nfrom hamgan.runlock import RunLock\nwith RunLock(sys.argv[1], 'hamgan train'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()")


def holder(folder):
    """A process that takes the lock of `folder` and holds it until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_first_ones_pid_and_host(tmp_path):
    first = holder(tmp_path)
    try:
        with pytest.raises(LockedError) as e:
            RunLock(tmp_path, "hamgan demo").acquire()
        message = str(e.value)
        assert f"in use by hamgan train (pid {first.pid} on host {socket.gethostname()}" in message
        assert str(tmp_path / LOCK_NAME) in message                     # what to delete if it were stale
    finally:
        first.communicate("")                                           # lets it exit: it releases the lock
    assert first.returncode == 0 and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path, "hamgan demo"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_note(tmp_path):
    first = holder(tmp_path)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == first.pid    # left behind
    notes = []
    with RunLock(tmp_path, "hamgan train", note=notes.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {first.pid} on host" in notes[0] and "no longer running" in notes[0]


def foreign_lock(folder):
    holder = {"pid": 1, "host": "elsewhere.cluster", "command": "hamgan train", "started": "2026-01-01T00:00:00",
              "token": "theirs"}
    (folder / LOCK_NAME).write_text(json.dumps(holder))


def test_a_lock_from_another_host_is_judged_by_its_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "STALE_AFTER", 1.0)
    foreign_lock(tmp_path)
    stop = threading.Event()

    def beat():                                  # the other host's heartbeat, seen through the shared disk
        while not stop.wait(0.05):
            os.utime(tmp_path / LOCK_NAME)
    alive = threading.Thread(target=beat)
    alive.start()
    try:
        start = time.monotonic()
        with pytest.raises(LockedError, match="pid 1 on host elsewhere.cluster"):
            RunLock(tmp_path, "hamgan train").acquire()
        assert time.monotonic() - start < 1.0      # refused as soon as the heartbeat moved
    finally:
        stop.set()
        alive.join()
    notes = []
    with RunLock(tmp_path, "hamgan train", note=notes.append):     # silent now: taken over after STALE_AFTER
        pass
    assert "heartbeat has not moved for 1 s" in notes[0]


def test_the_holder_keeps_its_heartbeat_going(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "HEARTBEAT", 0.05)
    with RunLock(tmp_path, "hamgan train"):
        os.utime(tmp_path / LOCK_NAME, (0, 0))
        time.sleep(0.5)
        assert time.time() - (tmp_path / LOCK_NAME).stat().st_mtime < 5


def test_a_process_may_take_a_lock_it_holds_and_the_outer_release_removes_it(tmp_path):
    with RunLock(tmp_path, "hamgan demo"):
        with RunLock(tmp_path, "hamgan train"):                    # the demo trains in its run directory
            pass
        assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "hamgan demo"
    assert not (tmp_path / LOCK_NAME).exists()


def test_an_empty_lock_of_a_process_killed_while_creating_it_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    notes = []
    with RunLock(tmp_path, "hamgan train", note=notes.append):
        pass
    assert "a process that died creating it: it is unreadable" in notes[0]
