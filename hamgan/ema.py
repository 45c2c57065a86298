"""Exponential moving average of the generator's weights."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """Keeps `shadow`, a copy of `model` (eval mode, no gradients) whose parameters are

        shadow <- decay * shadow + (1 - decay) * param     for step >= start
        shadow <- param                                    for step <  start

    and whose buffers (batch-norm running statistics, spectral-norm vectors) are copied
    from the model at every update, since averaging running statistics of different
    weights gives statistics of no network.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, start: int = 0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.start = decay, start
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Call after the optimizer step that made `step` (0-based) of `model`."""
        shadow, params = list(self.shadow.parameters()), [p.detach() for p in model.parameters()]
        if step < self.start:
            torch._foreach_copy_(shadow, params)
        else:
            torch._foreach_lerp_(shadow, params, 1.0 - self.decay)
        torch._foreach_copy_(list(self.shadow.buffers()), list(model.buffers()))

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
