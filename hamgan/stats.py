"""Training statistics, reported by name where they arise and averaged per log interval.

A loss reports its terms, a Hamburger its scale and reconstruction error, attention its gamma:
``stats.report("loss/G", loss)``. Nothing is recorded unless a `Collector` is collecting (the
training loop collects its steps; evaluation and sampling do not), and nothing is read back to
the host when reporting: values stay tensors until `Collector.summary` reads them all at once,
once per log interval.

Modules whose class has a ``stats_name`` attribute report under their place in the network;
`name_reporters(G, "G")` sets it ("G.context.2.0"), so no caller needs to know block types.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from . import distributed

# {name: [values]} of the step being collected, or None when nobody collects.
_active: dict[str, list[torch.Tensor]] | None = None


def collecting() -> bool:
    """True while a `Collector` collects: reporters may skip computing a statistic otherwise."""
    return _active is not None


def report(name: str, value: torch.Tensor | float) -> None:
    """Record `value` (a tensor, averaged over its elements, or a number) under `name`: its value
    now (a copy, so that e.g. a parameter reported before an optimiser step keeps that value)."""
    if _active is not None:
        value = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        _active.setdefault(name, []).append(value)


def name_reporters(net: nn.Module, prefix: str) -> None:
    """Give every module of `net` that reports statistics its qualified name, e.g. 'G.context.2.0'."""
    for name, m in net.named_modules():
        if hasattr(type(m), "stats_name"):
            m.stats_name = f"{prefix}.{name}" if name else prefix


class Collector:
    """The reports of training steps, kept as tensors until `summary` averages them."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)   # where the summary is reduced (NCCL needs CUDA)
        self._steps: list[tuple[int, dict[str, list[torch.Tensor]]]] = []

    @contextlib.contextmanager
    def step(self, step: int):
        """Collect what is reported inside as the statistics of training step `step`."""
        global _active
        outer, _active = _active, {}
        try:
            yield
        finally:
            self._steps.append((step, _active))
            _active = outer

    def __bool__(self) -> bool:
        return bool(self._steps)

    def summary(self) -> tuple[dict[str, float], tuple[int, list[str]] | None]:
        """({name: mean over the collected steps (and over processes)}, (first step with a
        non-finite value, [its names]) or None); then starts afresh. One host read; under
        torch.distributed every process must call it at the same step."""
        names = sorted({name for _, values in self._steps for name in values})
        # per name, its mean in each step that reported it, all in one vector
        per_step = [(step, name, torch.stack([v.to(self.device).float().mean() for v in values[name]]).mean())
                    for step, values in self._steps for name in names if name in values]
        self._steps.clear()
        if not per_step:
            return {}, None
        vector = torch.stack([v for _, _, v in per_step])
        if distributed.world_size() > 1:
            vector = distributed.all_reduce_sum(vector) / distributed.world_size()
        values = vector.tolist()
        bad = [(step, name) for (step, name, _), v in zip(per_step, values) if not math.isfinite(v)]
        first_bad = None
        if bad:
            first = min(step for step, _ in bad)
            first_bad = (first, sorted(name for step, name in bad if step == first))
        sums: dict[str, list[float]] = {}
        for (_, name, _), v in zip(per_step, values):
            sums.setdefault(name, []).append(v)
        return {name: sum(vs) / len(vs) for name, vs in sums.items()}, first_bad
