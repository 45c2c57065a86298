"""Kill a small training run at random moments and check that nothing is lost (issue 13).

    python scripts/chaos_train.py --kills 20                     # configs/demo.toml, reduced (below)
    python scripts/chaos_train.py --kills 2 train.steps=20 train.snapshot_every=3
    python scripts/chaos_train.py --config configs/demo.toml --no-reduce --kills 20   # the full demo

1. Trains the config once, uninterrupted: the reference (its start-up and training times set
   the kill window).
2. Trains it again as `hamgan train --resume auto` processes, each killed with SIGKILL at a
   random moment (during start-up, a step, a checkpoint or sample-grid write, ...) until
   `--kills` kills have been delivered; the last one runs to the end. An attempt saving faster
   than expected is killed at the latest when it has saved twice its share of what is left; the
   last kill waits for a snapshot if there is none, so that at least one run resumes.
3. After each kill, looks for damaged files: temporaries of interrupted writes and snapshots
   that fail verification; reports which ones the resumed run skipped or removed.
4. Compares every tensor and number of the two final checkpoints (weights, EMA, optimisers,
   grad scalers, RNG states, data position).

Prints kills, resumes, damaged files found and skipped, and whether the end state is
identical; exits 0 only if it is. Drives the `hamgan train` command line only, so it depends
on no internals of the training loop. Not part of the fast suite (tests run it with --kills 2).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hamgan.atomic import TEMPORARY_GLOB  # noqa: E402
from hamgan.checkpoint import CheckpointError, list_snapshots, load_checkpoint, verify_checkpoint  # noqa: E402

# the demo, short enough to be killed many times: frequent snapshots and grids, so kills land in writes too
REDUCE = ["train.steps=300", "train.snapshot_every=20", "train.sample_every=30", "train.log_every=10",
          "train.eval_every=0", "train.keep_last=2"]
STARTED = "run directory "   # the line `hamgan train` prints once set up, before the first step


class Attempt:
    """One `hamgan train` process; its output lines (with their arrival times) are collected."""

    def __init__(self, args: list[str]):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.start = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "hamgan", "train", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.start, line.rstrip()))

    @staticmethod
    def never(seconds: float) -> bool:
        return False

    def finish(self, kill_if=never) -> bool:
        """Wait for the end, or SIGKILL as soon as `kill_if(seconds since the start)`; True if killed."""
        killed = False
        while self.proc.poll() is None and not killed:
            killed = kill_if(time.monotonic() - self.start)
            if killed:
                self.proc.send_signal(signal.SIGKILL)
            time.sleep(0.02)
        self.proc.wait()
        self.seconds = time.monotonic() - self.start
        self._reader.join()
        return killed

    def started_after(self) -> float | None:
        return next((t for t, line in self.lines if line.startswith(STARTED)), None)

    def said(self, text: str) -> list[str]:
        return [line for _, line in self.lines if text in line]

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def damaged_files(run_dir: Path) -> dict[str, str]:
    """Name -> what is wrong, for the run's temporaries and snapshots that do not verify."""
    found = {p.name: "temporary of an interrupted write" for p in run_dir.rglob(TEMPORARY_GLOB)}
    for snap in list_snapshots(run_dir / "checkpoints"):
        try:
            verify_checkpoint(snap)
        except CheckpointError as e:
            found[snap.name] = str(e)
    return found


def newest_step(run_dir: Path) -> int:
    """The step of the run's newest snapshot, 0 if it has none."""
    snaps = list_snapshots(run_dir / "checkpoints")
    return int(snaps[-1].stem.split("-")[1]) if snaps else 0


def recent_pace(run_dir: Path) -> float | None:
    """Seconds per step of the run's latest log interval (metrics.jsonl), if any."""
    metrics = run_dir / "metrics.jsonl"
    for line in reversed(metrics.read_text().splitlines() if metrics.exists() else []):
        try:
            return json.loads(line).get("time/sec_per_step")
        except ValueError:   # the last line, cut by a kill
            continue
    return None


def differences(a, b, where: str = "") -> list[str]:
    """Paths at which two checkpoint payloads differ (tensors bit for bit)."""
    import torch
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where or 'checkpoint'}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}" if where else str(k))]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) else [where]
    return [] if a == b else [where]


def count_tensors(x) -> int:
    import torch
    if isinstance(x, dict):
        return sum(count_tensors(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return sum(count_tensors(v) for v in x)
    return int(isinstance(x, torch.Tensor))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.toml"), help="default: configs/demo.toml")
    p.add_argument("--no-reduce", action="store_true", help=f"do not apply the reduction {' '.join(REDUCE)}")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--out", help="folder for the two runs (default: a temporary one, deleted afterwards)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, after the reduction")
    args = p.parse_args(argv)

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="hamgan-chaos-"))
    common = ["--config", args.config, "--out", str(out), "--no-progress", "--device", "cpu",
              *([] if args.no_reduce else REDUCE), *args.overrides]
    rng = random.Random(args.seed)
    try:
        ref = Attempt([*common, "--name", "reference"])
        ref.finish()
        if ref.proc.returncode != 0 or ref.started_after() is None:
            print(ref.output(), file=sys.stderr)
            print(f"the reference run failed (exit {ref.proc.returncode})", file=sys.stderr)
            return 2
        startup, total = ref.started_after(), ref.seconds
        training = max(total - startup, 0.1)
        steps = load_checkpoint(list_snapshots(out / "reference" / "checkpoints")[-1])["step"]
        print(f"reference: {steps} steps uninterrupted in {total:.1f} s ({startup:.1f} s start-up, "
              f"{training:.1f} s training)")

        run_dir, kills, resumes, locks, found, skipped, removed = out / "chaos", 0, 0, 0, {}, set(), set()
        pace = training / steps        # seconds per step, then as the chaos run's log says
        while True:
            attempt = Attempt([*common, "--name", "chaos", "--resume", "auto"])
            kill_if = Attempt.never
            if kills < args.kills:
                # a random moment up to start-up + twice an even share of what is left, so that the
                # kills spread over the run; at the latest when the attempt has saved twice that share
                # (short of the end), so that a machine slower than the estimate cannot let it finish;
                # the last kill not before a snapshot exists, so that at least the final run resumes
                begun = newest_step(run_dir)
                share = (steps - begun) / (args.kills - kills + 1)
                delay = rng.uniform(0, startup + 2 * pace * share)
                latest = min(begun + 2 * share, steps - 1)
                final = kills == args.kills - 1

                def kill_if(seconds):
                    done = newest_step(run_dir)
                    return (seconds >= delay and (done > 0 or not final)) or done >= latest
            killed = attempt.finish(kill_if)
            startup, pace = attempt.started_after() or startup, recent_pace(run_dir) or pace
            resumes += bool(attempt.said("resumed from"))
            locks += bool(attempt.said("took over the lock"))
            skipped |= {Path(line.split()[1]).name for line in attempt.said("skipping ")}
            removed |= {name for line in attempt.said("removed unfinished writes")
                        for name in line.split(": ", 1)[1].split(", ")}
            if not killed:
                break
            kills += 1
            damaged = damaged_files(run_dir) if run_dir.exists() else {}
            snaps = list_snapshots(run_dir / "checkpoints")
            last = snaps[-1].name if snaps else "none yet"
            print(f"kill {kills:2d} after {attempt.seconds:5.1f} s (newest snapshot: {last})"
                  + "".join(f"\n    damaged: {name}: {why}" for name, why in damaged.items()))
            found.update(damaged)
        if kills < args.kills:
            print(f"(the run finished after {kills} kills, before the {args.kills} asked for)")
        if attempt.proc.returncode != 0:
            print(attempt.output(), file=sys.stderr)
            print(f"the last run failed (exit {attempt.proc.returncode})", file=sys.stderr)
            return 2

        a = load_checkpoint(list_snapshots(out / "reference" / "checkpoints")[-1])
        b = load_checkpoint(list_snapshots(run_dir / "checkpoints")[-1])
        diff = differences(a, b)
        print(f"kills: {kills}, resumes: {resumes}, locks of killed runs taken over: {locks}, damaged files "
              f"found: {len(found)} ({', '.join(sorted(found)) or 'none'}), skipped or removed by the resumed "
              f"runs: {len(skipped | removed)}")
        if diff:
            print(f"end state: DIFFERENT from the uninterrupted run at step {b['step']} vs {a['step']}: "
                  f"{', '.join(diff[:10])}")
            return 1
        print(f"end state: identical to the uninterrupted run (step {b['step']}, {count_tensors(a)} tensors "
              f"and every number compared bit for bit)")
        return 0
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
