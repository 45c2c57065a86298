"""What a run reports: a text log, metrics.jsonl, TensorBoard scalars and images.

Only rank 0 writes; on other ranks every method is a no-op, so callers need no `if rank == 0`.
A full disk stops the run with a WriteError naming the file and the free space (hamgan.atomic).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .atomic import writing


class RunMonitor:
    def __init__(self, run_dir: Path | None, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled and run_dir is not None
        self.run_dir = run_dir
        self._tb = None
        if not self.enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(run_dir / "log.txt", "a", buffering=1)
        self._jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(run_dir / "tensorboard"))

    def text(self, message: str) -> None:
        """A line for the user (printed above any progress bar) and the text log."""
        if not self.enabled:
            return
        tqdm.write(message)
        with writing(self._log.name):
            self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def scalars(self, step: int, values: dict[str, float], info: dict | None = None) -> None:
        """One metrics.jsonl row (and TensorBoard scalars) of `values`; `info` adds JSON fields to
        the row only (e.g. the protocol an evaluation followed)."""
        if not self.enabled:
            return
        clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in values.items()}
        with writing(self._jsonl.name):
            self._jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean, **(info or {})}) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), step)

    def image(self, tag: str, sheet: torch.Tensor, step: int) -> None:
        """sheet: uint8 (3, H, W)."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, sheet, step)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tb is not None:
            self._tb.close()
        self._log.close()
        self._jsonl.close()
