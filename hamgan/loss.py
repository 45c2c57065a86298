"""What a training step computes: its phases, held as data, and the loss of each phase.

A step runs every phase of `loss.phases` that is due, in order; a phase is one optimiser update
of one network. For each phase the trainer's plumbing (hamgan.train) hands the loss this
process's share of the global batch and the two networks, asks `loss.accumulate(...)` for the
scalar to minimise, and takes care of everything else: accumulation rounds, DDP, mixed
precision, which parameters require gradients (only the phase's network's), randomness.

To try an idea (R1 on real images every 16 steps, a second G step, another loss), subclass
`HingeLoss`, add a `Phase` and handle it in `accumulate`: the plumbing and the logging need no
change, and `hamgan.train.train(cfg, ..., loss=MyLoss(...))` trains with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import stats


@dataclass(frozen=True)
class Phase:
    """One optimiser update of network `net` ("G" or "D"), made `repeats` times in a row on the
    steps whose number is a multiple of `interval`. `real`: the phase takes real images."""

    name: str
    net: str
    repeats: int = 1
    interval: int = 1
    real: bool = False


@dataclass
class Batch:
    """This process's share of one accumulation round: real images (b, 3, R, R) in [-1, 1] and
    their labels (b,) when the phase takes real images, latents z (b, z_dim) and the labels to
    generate (b,) (labels are None for unconditional networks)."""

    real: Optional[torch.Tensor]
    real_y: Optional[torch.Tensor]
    z: torch.Tensor
    y: Optional[torch.Tensor]


def d_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss terms: mean(relu(1 - D(x))) and mean(relu(1 + D(G(z)))), scores (B,)."""
    return F.relu(1.0 - real_scores).mean(), F.relu(1.0 + fake_scores).mean()


def g_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator loss: -mean(D(G(z)))."""
    return -fake_scores.mean()


class HingeLoss:
    """The hinge-loss GAN of SAGAN, BigGAN and HamGAN: `d_steps` D updates, then one G update.

    `G(z, y)` -> images and `D(x, y)` -> scores (B,) float32 are the networks as the plumbing
    hands them over: whatever the loss feeds them is treated as a share of global batches
    (here real and fake images concatenated: one D forward for both, as in the official code).
    """

    def __init__(self, d_steps: int = 1):
        self.phases = [Phase("D", "D", repeats=d_steps, real=True), Phase("G", "G")]

    def accumulate(self, phase: Phase, batch: Batch, G: Callable, D: Callable) -> torch.Tensor:
        """The scalar whose gradient the phase's network descends."""
        if phase.name == "D":
            fake = G(batch.z, batch.y)   # G's parameters do not require gradients in a D phase
            labels = None if batch.y is None else torch.cat([batch.real_y, batch.y])
            scores = D(torch.cat([batch.real, fake.to(batch.real.dtype)]), labels)
            real_scores, fake_scores = scores.chunk(2)
            loss_real, loss_fake = d_hinge(real_scores, fake_scores)
            stats.report("loss/D_real", loss_real)
            stats.report("loss/D_fake", loss_fake)
            stats.report("D/real_score", real_scores.mean())
            stats.report("D/fake_score", fake_scores.mean())
            return loss_real + loss_fake
        if phase.name == "G":
            loss = g_hinge(D(G(batch.z, batch.y), batch.y))
            stats.report("loss/G", loss)
            return loss
        raise ValueError(f"{type(self).__name__} has no phase {phase.name!r}")
