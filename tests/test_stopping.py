"""Stopping when asked, not being run twice, a full disk mid-run (issue 13): real signals to
real processes. A stopped run leaves a checkpoint of the step it was in and exit code 75, and
resuming it ends bit-identical to an uninterrupted run; under DDP every process stops after the
same step; a second signal ends the process at once."""
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import hamgan.atomic
from hamgan.atomic import WriteError
from hamgan.checkpoint import list_snapshots, load_checkpoint
from hamgan.cli import main
from hamgan.runlock import LOCK_NAME
from hamgan.stopping import CHECK_EVERY, EXIT_STOPPED, SIGNALS, RunStopped, StopRequests
from hamgan.train import train

from ._dist import free_port
from .test_runlock import holder
from .test_train import TINY, TRAINED, assert_same_state, last_snapshot, tiny

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def wait_for_step(run_dir: Path, step: int, proc=None, timeout: float = 300) -> None:
    """Until metrics.jsonl (one line per step here) shows `step`."""
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(json.loads(line)["step"] >= step for line in metrics.read_text().splitlines()):
            return
        assert proc is None or proc.poll() is None, "the run ended before it was signalled"
        time.sleep(0.05)
    raise TimeoutError(f"{metrics} did not reach step {step}")


# --------------------------------------------------------------------------- the signal handling itself

ONE_SIGNAL_TWICE = textwrap.dedent("""
    import os, signal, sys, time, torch
    import hamgan.stopping as stopping
    stopping.REPEAT_AFTER = 0.5
    sig = getattr(signal, sys.argv[1])
    with stopping.StopRequests(torch.device("cpu")) as stop:
        assert not stop.requested(0)
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), sig)          # a copy (SLURM and torchrun both deliver it): counts once
        time.sleep(0.1)
        assert stop.requested(1) and stop.reason() == sys.argv[1]
        print("asked to stop", flush=True)
        time.sleep(0.6)
        os.kill(os.getpid(), sig)          # a second signal: at once
        time.sleep(5)
        print("still running", flush=True)
""")


@pytest.mark.parametrize("name", [s.name for s in SIGNALS])
def test_a_signal_asks_a_second_one_ends_the_process_at_once(name):
    r = subprocess.run([sys.executable, "-c", ONE_SIGNAL_TWICE, name], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 128 + getattr(signal, name), r.stderr
    assert "asked to stop" in r.stdout and "still running" not in r.stdout
    assert f"{name}: stopping after this step" in r.stderr and f"{name} again: stopping at once" in r.stderr


def test_the_previous_handlers_come_back():
    before = {s: signal.getsignal(s) for s in SIGNALS}
    with StopRequests(torch.device("cpu")):
        assert all(signal.getsignal(s) != before[s] for s in SIGNALS)
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


# --------------------------------------------------------------------------- a real `hamgan train`


def test_sigterm_to_hamgan_train_checkpoints_the_step_exits_75_and_resumes_exactly(tmp_path):
    """SIGTERM to the whole process group (as Ctrl-C or SLURM: data-loader workers included)."""
    common = ["train", "--out", str(tmp_path), "--no-progress", *TINY, "train.log_every=1", "data.workers=1"]
    run = subprocess.Popen([sys.executable, "-m", "hamgan", *common, "--name", "stopped", "train.steps=100000"],
                           env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    wait_for_step(tmp_path / "stopped", 3, run)
    os.killpg(run.pid, signal.SIGTERM)
    out, err = run.communicate(timeout=300)
    assert run.returncode == EXIT_STOPPED, err
    snaps = list_snapshots(tmp_path / "stopped" / "checkpoints")
    assert len(snaps) == 1                                         # snapshot_every = 0: only the stop's
    step = load_checkpoint(snaps[0])["step"]
    assert snaps[0].name == f"ckpt-{step:09d}.pt" and step >= 3
    assert f"stopped by SIGTERM after step {step} ({snaps[0]})" in err and "Traceback" not in err

    until = f"train.steps={step + 3}"
    resumed = subprocess.run([sys.executable, "-m", "hamgan", *common[:3], "--no-progress", "--name", "stopped",
                              "--resume", "auto", until], env=ENV, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([sys.executable, "-m", "hamgan", *common, "--name", "straight", until], env=ENV, cwd=ROOT,
                              capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    a, b = last_snapshot(tmp_path / "straight"), last_snapshot(tmp_path / "stopped")
    assert a["step"] == b["step"] == step + 3
    for key in TRAINED + ("scaler_G", "scaler_D", "data", "rng"):
        assert_same_state(a[key], b[key], exact=True, what=key)


def test_sigterm_to_the_sweep_alone_stops_its_run_with_a_checkpoint_and_exit_75(tmp_path):
    """A scheduler may signal only the process it started: the sweep passes the signal on to the
    run it trains in a child process, which checkpoints and ends; the sweep exits 75."""
    (tmp_path / "none.npz").touch()     # --stats must exist; it is read only after the run's last step
    sweep = subprocess.Popen([sys.executable, "-m", "hamgan", "sweep", "--point", "a:", "--out", str(tmp_path),
                              "--stats", str(tmp_path / "none.npz"), "--device", "cpu", "--no-progress", *TINY,
                              "train.log_every=1", "train.steps=100000"],
                             env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    run_dir = tmp_path / "runs" / "a-s0"
    try:
        wait_for_step(run_dir, 3, sweep)
        os.kill(sweep.pid, signal.SIGTERM)  # the sweep's pid only, not its process group
        out, err = sweep.communicate(timeout=300)
    finally:    # whatever happened, no run is left training (the group: the sweep and its run)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == EXIT_STOPPED, err
    snaps = list_snapshots(run_dir / "checkpoints")
    assert len(snaps) == 1 and load_checkpoint(snaps[0])["step"] >= 3
    assert "stopped by SIGTERM after step" in err and "the same sweep command continues" in err
    assert "Traceback" not in err
    assert not (run_dir / LOCK_NAME).exists()   # the run has ended: nothing holds its folder


def _stopping_worker(rank, world, port, out, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train(tiny(*overrides), out=out, name="ddp", progress=False, device="cpu")
    except RunStopped as e:
        Path(out, f"rank{rank}.txt").write_text(str(e))


def test_under_ddp_a_signal_to_one_process_stops_all_after_the_same_step(tmp_path):
    overrides = ["train.steps=100000", "train.log_every=1", "train.batch_size=4"]
    ctx = mp.start_processes(_stopping_worker, args=(2, free_port(), str(tmp_path), overrides), nprocs=2,
                             start_method="spawn", join=False)
    try:
        wait_for_step(tmp_path / "ddp", 2)
        os.kill(ctx.processes[1].pid, signal.SIGTERM)                  # rank 1 only
        deadline = time.monotonic() + 120
        while not ctx.join(timeout=1):      # a process left alone in a collective would wait forever
            assert time.monotonic() < deadline, "the processes did not stop together"
    finally:
        for p in ctx.processes:
            p.kill()
    said = [Path(tmp_path, f"rank{r}.txt").read_text() for r in (0, 1)]
    assert "stopped by a signal to another process after step" in said[0]
    assert "stopped by SIGTERM after step" in said[1]
    steps = {int(s.split("after step ")[1].split()[0]) for s in said}
    assert len(steps) == 1                                              # the same step on both
    step = steps.pop()
    assert step % CHECK_EVERY == 0
    assert [p.name for p in list_snapshots(tmp_path / "ddp" / "checkpoints")] == [f"ckpt-{step:09d}.pt"]


# --------------------------------------------------------------------------- a full disk mid-run; a second run


def test_a_full_disk_stops_the_run_and_resume_auto_continues_once_there_is_space(tmp_path, monkeypatch):
    cfg = tiny("train.steps=6", "train.snapshot_every=2")

    def no_room_for_step_4(path, *args, **kwargs):
        if ".ckpt-000000004.pt.tmp" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, *args, **kwargs)
    monkeypatch.setattr(hamgan.atomic, "open", no_room_for_step_4, raising=False)
    with pytest.raises(WriteError, match=r"cannot write .*ckpt-000000004.pt: No space left on device \(.* free\)"):
        train(cfg, out=tmp_path, name="full", progress=False)
    ckpt_dir = tmp_path / "full" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["ckpt-000000002.pt"]      # intact, no temporary
    monkeypatch.undo()                                                                  # space freed
    train(cfg, out=tmp_path, name="full", resume="auto", progress=False)
    train(cfg, out=tmp_path, name="straight", progress=False)
    a, b = last_snapshot(tmp_path / "straight"), last_snapshot(tmp_path / "full")
    for key in TRAINED + ("data", "step"):
        assert_same_state(a[key], b[key], exact=True, what=key)


@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_second_run_in_the_same_directory_is_refused(command, tmp_path, capsys):
    first = holder(tmp_path / "busy")
    try:
        code = main([command, "--out", str(tmp_path), "--name", "busy", *TINY])
    finally:
        first.communicate("")
    err = capsys.readouterr().err
    assert code == 2 and f"in use by hamgan train (pid {first.pid} on host" in err, err
    assert not (tmp_path / "busy" / "checkpoints").exists()
