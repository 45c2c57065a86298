"""Run directories: where a new run goes, and what a resumed run continues from.

A run directory holds config.toml, log.txt, metrics.jsonl, tensorboard/, samples/ and
checkpoints/ (snapshots `ckpt-<step>.pt`, see hamgan.checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, latest_good_snapshot, load_checkpoint


def make_run_dir(out: Path, name: str) -> Path:
    """out/NNNNN-name, numbered after the highest existing run (not created)."""
    out.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-", 1)[0]) for p in out.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    return out / f"{max(numbers, default=-1) + 1:05d}-{name}"


@dataclass
class ResumePoint:
    """A checkpoint to continue from: its run directory, its path, and its loaded contents."""

    run_dir: Path
    path: Path
    state: dict


def find_resume(out: Path, name: str | None, resume: str) -> ResumePoint | None:
    """What `--resume` names: 'auto' (the newest good snapshot of out/NAME, or of the newest
    numbered run; None when there is none yet), a run directory, or a checkpoint file."""
    if resume != "auto":
        p = Path(resume)
        if p.is_dir():
            found = latest_good_snapshot(p / "checkpoints")
            if found is None:
                raise CheckpointError(f"{p} holds no usable checkpoint in {p / 'checkpoints'}")
            return ResumePoint(p, *found)
        return ResumePoint(p.parent.parent, p, load_checkpoint(p))
    runs = [out / name] if name else sorted((d for d in out.glob("[0-9]" * 5 + "-*") if d.is_dir()), reverse=True)
    for run in runs:
        found = latest_good_snapshot(run / "checkpoints")
        if found is not None:
            return ResumePoint(run, *found)
    return None
