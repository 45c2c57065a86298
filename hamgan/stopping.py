"""Stopping a run when asked: the signals a scheduler sends before it kills a job.

SIGTERM, SIGINT (Ctrl-C) and SIGUSR1 (what SLURM and Kubernetes send ahead of a kill) do not
end `hamgan train` at once: they set a request, and the loop, after the step it is in, writes a
checkpoint, says so and raises `RunStopped`, which the command line turns into exit code
`EXIT_STOPPED` (75, EX_TEMPFAIL: "try again later"); `--resume auto` continues the run. A second
signal, a second or more after the first, ends the process at once with exit code 128 + its
number (as death by that signal): nothing more is written, so the newest checkpoint stays as it
was. (Copies of one signal that arrive together, e.g. from SLURM, which signals every process of
a job, and from torchrun, which forwards what it receives, count as one.)

Under torchrun every process must stop after the same step. Rather than a collective (and a
host synchronisation) every step, the processes compare their requests every `CHECK_EVERY`
steps, in one all-reduce of a single number: a stop then waits for at most that many steps,
and the other steps cost nothing. A single process reads its own flag every step.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import torch

from . import distributed as dist
from .errors import HamganError

EXIT_STOPPED = 75
SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))
CHECK_EVERY = 10      # steps between the processes' comparisons of their requests (torchrun)
REPEAT_AFTER = 1.0    # seconds: a signal sooner after the first is a copy of it, not a second one
_DONE = b"\0"          # what `StopRequests.__exit__` sends its watcher (no signal has number 0)


class RunStopped(HamganError):
    """The run stopped on request after writing a checkpoint; the same command with
    `--resume auto` continues it."""

    exit_code = EXIT_STOPPED


class StopRequests:
    """While active (a context manager), the stop signals set a request instead of ending the
    process; `requested(step)` says, identically on every process, whether to stop after `step`.

    A watcher thread learns of each signal the moment it arrives (through the wakeup file
    descriptor the interpreter writes to from its C-level handler), so copies are told from a
    second signal by their arrival times, and a second signal ends the process even while the
    main thread waits inside a long operation (a collective, a large kernel).

    Signal handlers can only be set in the main thread; elsewhere (a notebook's worker thread)
    the signals keep their usual effect."""

    def __init__(self, device: torch.device, announce: bool = True):
        self.device, self.announce = device, announce
        self.world = dist.world_size()
        self.received: int | None = None      # the first stop signal, if any
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._inbox, self._outbox = socket.socketpair()      # a socket: what Windows accepts too
        self._outbox.setblocking(False)
        self._previous = {s: signal.signal(s, _noted_by_the_watcher) for s in SIGNALS}
        self._previous_fd = signal.set_wakeup_fd(self._outbox.fileno(), warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="hamgan-stop-signals", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self._previous:
            return
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
        self._outbox.send(_DONE)      # (not EOF: forked data-loader workers hold copies of the socket)
        self._watcher.join()
        self._outbox.close()
        self._inbox.close()

    def _watch(self) -> None:
        while True:
            for signum in self._inbox.recv(64):     # one byte per signal delivered
                if signum == _DONE[0]:
                    return
                if signum in SIGNALS:
                    self._arrived(signum, time.monotonic())

    def _arrived(self, signum: int, now: float) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received, self._first_at = signum, now
            self._say(f"\n{name}: stopping after this step with a checkpoint (send it again to stop at once)\n")
        elif now - self._first_at >= REPEAT_AFTER:
            self._say(f"\n{name} again: stopping at once; the newest checkpoint is left as it was\n")
            os._exit(128 + signum)     # the shell's code for death by that signal; nothing is written

    def _say(self, text: str) -> None:
        if self.announce:
            os.write(2, text.encode())

    def requested(self, step: int) -> bool:
        """Whether to stop after `step`; under torchrun every process must call it after every
        step (the same answer everywhere, from an all-reduce every CHECK_EVERY steps)."""
        if self.world == 1:
            return self.received is not None
        if step % CHECK_EVERY:
            return False
        flag = torch.tensor(float(self.received is not None), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def reason(self) -> str:
        """What asked for the stop, in words."""
        return signal.Signals(self.received).name if self.received is not None else "a signal to another process"


def _noted_by_the_watcher(signum: int, frame) -> None:
    """The Python-level handler: nothing to do (`StopRequests._watch` acts), but its presence
    keeps the signal from ending the process or raising KeyboardInterrupt."""


def ignore_stop_signals(worker_id: int = 0) -> None:
    """For worker processes (DataLoader's `worker_init_fn`): the stop signals that reach the
    whole process group (Ctrl-C, SLURM) must not kill the workers the main process still needs
    to finish its step; they end with it."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
