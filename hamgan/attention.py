"""SAGAN / BigGAN self-attention: the baseline global-context block."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import stats
from .layers import sn_conv1x1


class SelfAttention(nn.Module):
    """x (B, C, H, W) -> x + gamma * o(softmax(theta^T phi) g), gamma starting at 0.

    theta: 1x1 SN conv C -> C/8 at every position (queries); phi: C -> C/8 and g: C -> C/2,
    both max-pooled 2x (N/4 keys/values); o: 1x1 SN conv C/2 -> C. No scaling of the logits,
    as in SAGAN. `fused=True` computes the same attention with
    `F.scaled_dot_product_attention` (flash / memory-efficient kernels where available)
    instead of materialising the (B, N, N/4) attention map.
    """

    def __init__(self, channels: int, fused: bool = True, sn_eps: float = 1e-6):
        super().__init__()
        if not isinstance(channels, int) or channels < 8 or channels % 8:
            raise ValueError(f"channels must be a positive multiple of 8, got {channels!r}")
        self.fused = fused
        # exact spectral norm (W / sigma) on all four projections, as TF-GAN's SAGAN (sn_conv1x1)
        self.theta = sn_conv1x1(channels, channels // 8, kind="exact", eps=sn_eps)
        self.phi = sn_conv1x1(channels, channels // 8, kind="exact", eps=sn_eps)
        self.g = sn_conv1x1(channels, channels // 2, kind="exact", eps=sn_eps)
        self.o = sn_conv1x1(channels // 2, channels, kind="exact", eps=sn_eps)
        self.gamma = nn.Parameter(torch.zeros(()))

    stats_name = "attention"  # the name its statistics are reported under (`stats.name_reporters`)

    def forward(self, x: torch.Tensor, *unused, bases=None) -> torch.Tensor:
        """x (B, C, H, W) -> (B, C, H, W); the conditioning and `bases` that G and D pass every
        context block are unused: attention is deterministic."""
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"SelfAttention needs even H and W, got {h}x{w}")
        theta = self.theta(x).flatten(2)                      # (B, C/8, N)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)         # (B, C/8, N/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)             # (B, C/2, N/4)
        if self.fused:
            out = F.scaled_dot_product_attention(theta.transpose(1, 2).unsqueeze(1), phi.transpose(1, 2).unsqueeze(1),
                                                 g.transpose(1, 2).unsqueeze(1), scale=1.0)
            out = out.squeeze(1).transpose(1, 2)              # (B, C/2, N)
        else:
            beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)   # (B, N, N/4)
            out = torch.bmm(g, beta.transpose(1, 2))          # (B, C/2, N)
        stats.report(f"gamma/{self.stats_name}", self.gamma)
        return torch.addcmul(x, self.gamma, self.o(out.reshape(b, c // 2, h, w)))  # x + gamma * o
