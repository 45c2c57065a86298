"""Building blocks shared by the networks: spectrally normalised layers."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, eps: float = 1e-6) -> nn.Module:
    """Spectral norm with one power iteration per training forward and none in eval;
    the power-iteration vectors u, v are buffers, so they are saved with the weights."""
    return spectral_norm(module, n_power_iterations=1, eps=eps)


def sn_conv2d(c_in: int, c_out: int, kernel: int = 3, bias: bool = True, eps: float = 1e-6) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias), eps)


def sn_conv1x1(c_in: int, c_out: int, bias: bool = False, eps: float = 1e-6) -> nn.Module:
    return sn_conv2d(c_in, c_out, kernel=1, bias=bias, eps=eps)


def sn_linear(d_in: int, d_out: int, bias: bool = True, eps: float = 1e-6) -> nn.Module:
    return sn(nn.Linear(d_in, d_out, bias=bias), eps)
