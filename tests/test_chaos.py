"""scripts/chaos_train.py (issue 13): a small run killed twice with SIGKILL at random moments and
resumed each time ends bit-identical to an uninterrupted one (learning rates falling over the
last 7 of its 12 steps); the comparison it relies on sees a single flipped value."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "chaos_train.py"
TINY = ["train.steps=12", "train.snapshot_every=1", "train.sample_every=4", "train.log_every=2", "train.batch_size=8",
        "train.lr_decay=0.6", "model.G.ch=4", "model.D.ch=4", "data.shapes_size=64"]


def test_two_kills_and_resumes_end_identical(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--kills", "2", "--out", str(tmp_path), *TINY],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    # a kill during a resumed run's start-up comes before it says "resumed": at least the last run resumes
    kills, resumes = map(int, re.search(r"kills: (\d+), resumes: (\d+),", r.stdout).groups())
    assert kills == 2 and resumes >= 1 and "end state: identical" in r.stdout, r.stdout
    assert (tmp_path / "chaos" / "checkpoints" / "ckpt-000000012.pt").is_file()


def test_the_comparison_sees_one_flipped_value():
    spec = importlib.util.spec_from_file_location("chaos_train", SCRIPT)
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    a = {"step": 5, "G": {"w": torch.arange(6.0)}, "rng": [{"torch": torch.zeros(3, dtype=torch.uint8)}]}
    b = {"step": 5, "G": {"w": torch.arange(6.0)}, "rng": [{"torch": torch.zeros(3, dtype=torch.uint8)}]}
    assert chaos.differences(a, b) == [] and chaos.count_tensors(a) == 2
    b["G"]["w"][4] = 4.0000005
    b["rng"][0]["torch"][1] = 1
    assert chaos.differences(a, b) == ["G.w", "rng[0].torch"]
    assert chaos.differences(a, {**a, "step": 6}) == ["step"]
