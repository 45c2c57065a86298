"""Hinge loss (Lim & Ye 2017; SAGAN, BigGAN, HamGAN)."""
import torch
import torch.nn.functional as F


def d_hinge(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss terms: mean(relu(1 - D(x))) and mean(relu(1 + D(G(z)))), scores (B,)."""
    return F.relu(1.0 - real_scores).mean(), F.relu(1.0 + fake_scores).mean()


def g_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator loss: -mean(D(G(z)))."""
    return -fake_scores.mean()
