"""The requeue pattern of scripts/train_hamgan_baby.sh (issue 13), with a stand-in for torchrun:
a finished run ends the script, a crash is resumed while each attempt gets further, a signal
is passed on to the training and ends the script with 75 without a new attempt."""
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_hamgan_baby.sh"

TORCHRUN = """
import os, signal, sys, time
from pathlib import Path
log = Path(os.environ["FAKE_LOG"])
attempt = len(log.read_text().splitlines()) if log.exists() else 0
what = os.environ["FAKE_PLAN"].split(",")[attempt]
with log.open("a") as f:
    f.write(f"{what}: {' '.join(sys.argv[1:])}\\n")
if what == "progress":                       # writes a new checkpoint, then crashes
    ckpts = Path(os.environ["OUT"]) / "hamgan_baby" / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    (ckpts / f"ckpt-{attempt:09d}.pt").touch()
    sys.exit(1)
if what == "signal":                         # waits for the signal the script must pass on
    got = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    if not got:
        sys.exit(3)
    Path(os.environ["FAKE_LOG"] + ".signal").write_text("SIGTERM")
    sys.exit(1)                              # torchrun's code when its workers stopped
sys.exit({"finish": 0, "crash": 1}[what])
"""


def start(tmp_path, plan: str) -> subprocess.Popen:
    venv = tmp_path / "venv"                 # what setup.sh takes for an installed environment
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes())
    (venv / ".hamgan-installed").write_text(want.hexdigest() + "\n")
    (tmp_path / "torchrun.py").write_text(TORCHRUN)
    env = {**os.environ, "HAMGAN_VENV": str(venv), "OUT": str(tmp_path / "runs"), "FAKE_PLAN": plan,
           "FAKE_LOG": str(tmp_path / "attempts.txt")}
    stand_in = f'torchrun() {{ exec "{sys.executable}" "{tmp_path / "torchrun.py"}" "$@"; }}; export -f torchrun; ' \
               f'exec bash "{SCRIPT}" train.amp=bf16'
    return subprocess.Popen(["bash", "-c", stand_in], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(script: subprocess.Popen) -> str:
    """Its stderr, once it has ended (killed after a minute, so that a loop cannot outlive the test)."""
    try:
        return script.communicate(timeout=60)[1]
    finally:
        script.kill()


def attempts(tmp_path) -> list[str]:
    return (tmp_path / "attempts.txt").read_text().splitlines()


@pytest.mark.parametrize("plan, code, tried", [
    ("finish", 0, 1),
    ("progress,progress,finish", 0, 3),           # crashes that got further are resumed
    ("progress,crash", 1, 2),                     # a crash that got nowhere is not retried
])
def test_crashes_are_resumed_while_the_run_gets_further(plan, code, tried, tmp_path):
    script = start(tmp_path, plan)
    err = finish(script)
    assert script.returncode == code, err
    assert len(attempts(tmp_path)) == tried
    assert all("-m hamgan train --config configs/hamgan_baby.toml" in a and "--resume auto" in a
               and a.endswith("train.amp=bf16") for a in attempts(tmp_path))


def test_a_signal_is_passed_on_and_ends_the_script_with_75(tmp_path):
    script = start(tmp_path, "signal,finish")
    assert script.stdout.readline().strip() == "ready"
    script.send_signal(signal.SIGTERM)
    err = finish(script)
    assert script.returncode == 75, err
    assert (tmp_path / "attempts.txt.signal").read_text() == "SIGTERM"       # the training was told
    assert len(attempts(tmp_path)) == 1 and "run this script again to continue" in err
