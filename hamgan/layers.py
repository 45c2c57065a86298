"""Building blocks shared by the networks: spectrally normalised layers, batch norms
(cross-replica, class-conditional) and the residual up/down blocks of G and D.

Spectral norm (`sn`, `SpectralNorm`) comes in the two kinds of TF-GAN's
`spectral_normalize`, which the official HamGAN code uses side by side:

- ``"at_most_1"``: W / max(1, sigma) (TF-GAN ``equality_constrained=False``): a layer whose
  largest singular value is below 1 is left as it is. The official code uses it for the 3x3
  convs, the skip 1x1 convs, the linear layers and D's class embedding.
- ``"exact"``: W / sigma (``equality_constrained=True``, BigGAN-PyTorch's only kind). The
  official code uses it for the Hamburger's and attention's 1x1 convs.

sigma is u^T W v with W reshaped to (out, in * kh * kw) (torch's layout: TF-GAN reshapes its
(kh, kw, in, out) kernel to the transpose, whose singular values are the same) and u (out,),
v (in * kh * kw,) buffers estimated by one power iteration per training forward, none in eval;
u and v are saved with the weights. The kind is part of the model (`model.sn` chooses it),
not of the state dict.

Batch norm (`BatchNorm2d`) is TF-GAN's by default: variance epsilon 1e-3, running statistics
(TF's moving_mean / moving_variance) updated as r <- (1 - momentum) r + momentum * batch with
momentum = 1 - decay = 0.001, tracking the biased batch variance, without zero-debiasing.
``running_var="unbiased"`` and momentum 0.1, eps 1e-5 give torch.nn.BatchNorm2d's arithmetic
(hamgan's before checkpoint format 2). With torch.distributed and more than one process the
statistics are those of the whole global batch (the official HamGAN run used cross-replica
statistics on TPU); `nn.SyncBatchNorm` refuses CPU tensors, this works with gloo and NCCL alike.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from . import distributed

# --------------------------------------------------------------------------- spectral norm


def autocast_off(device_type: str):
    """A context that runs its body in the tensors' own precision even inside autocast."""
    available = getattr(torch.amp, "is_autocast_available", lambda t: t in ("cpu", "cuda"))
    return torch.autocast(device_type, enabled=False) if available(device_type) else contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """`module` in eval mode inside (running BN statistics, no power iterations, eval NMF
    steps); its previous mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


SN_KINDS = ("at_most_1", "exact")


class SpectralNorm(_SpectralNorm):
    """The parametrization W -> W / sigma ("exact") or W / max(1, sigma) ("at_most_1"), see the
    module docstring. Unlike torch's, sigma is computed in the weight's precision under autocast
    (CUDA autocast would run the power iteration's matrix-vector products in half precision,
    putting a ~0.4 % random error on the scale of every layer at every step)."""

    def __init__(self, weight: torch.Tensor, kind: str = "exact", dim: int = 0, eps: float = 1e-6):
        if kind not in SN_KINDS:
            raise ValueError(f"spectral norm kind must be one of {SN_KINDS}, got {kind!r}")
        super().__init__(weight, 1, dim, eps)
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind}, dim={self.dim}, eps={self.eps}"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with autocast_off(weight.device.type):
            weight_mat = self._reshape_weight_to_matrix(weight)
            if self.training:
                self._power_method(weight_mat, self.n_power_iterations)
            # clones: u, v change in place at the next training forward (see torch's _SpectralNorm)
            u = self._u.clone(memory_format=torch.contiguous_format)
            v = self._v.clone(memory_format=torch.contiguous_format)
            sigma = torch.vdot(u, torch.mv(weight_mat, v))
            if self.kind == "at_most_1":
                sigma = sigma.clamp_min(1.0)
            return weight / sigma

    def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
        if not weight_mat.is_meta:  # nothing to estimate on the meta device (and it is slow there)
            super()._power_method(weight_mat, n_power_iterations)


def sn(module: nn.Module, kind: str = "exact", eps: float = 1e-6) -> nn.Module:
    """Put spectral norm of `kind` ("exact" or "at_most_1", see the module docstring) on
    `module`'s weight: one power iteration per training forward, none in eval; the
    power-iteration vectors u, v are buffers, so they are saved with the weights."""
    dim = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, kind, dim, eps))
    return module


def sn_conv2d(c_in: int, c_out: int, kernel: int = 3, bias: bool = True, kind: str = "exact",
              eps: float = 1e-6) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias), kind, eps)


def sn_conv1x1(c_in: int, c_out: int, bias: bool = False, kind: str = "exact", eps: float = 1e-6) -> nn.Module:
    return sn_conv2d(c_in, c_out, kernel=1, bias=bias, kind=kind, eps=eps)


def sn_linear(d_in: int, d_out: int, bias: bool = True, kind: str = "exact", eps: float = 1e-6) -> nn.Module:
    return sn(nn.Linear(d_in, d_out, bias=bias), kind, eps)


def sn_embedding(n: int, dim: int, kind: str = "exact", eps: float = 1e-6) -> nn.Module:
    """Spectrally normalised (n, dim) embedding table."""
    return sn(nn.Embedding(n, dim), kind, eps)


def spectral_norms(module: nn.Module) -> list[SpectralNorm]:
    """The spectral-norm parametrizations of `module`'s own weight (empty if it has none)."""
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [p for p in module.parametrizations["weight"] if isinstance(p, SpectralNorm)]


@torch.no_grad()
def refresh_spectral_norm(module: nn.Module, iterations: int = 15) -> None:
    """Re-run the power iteration on `module`'s current weight (after re-initialising it, the
    u, v found for the old weight are meaningless)."""
    for p in spectral_norms(module):
        weight = module.parametrizations["weight"].original
        if weight.ndim > 1 and not weight.is_meta:
            p._power_method(p._reshape_weight_to_matrix(weight), iterations)


@contextlib.contextmanager
def power_iteration_paused(*modules: nn.Module):
    """Within, the spectral norms in `modules` reuse their current u, v as in eval mode, so
    gradient-accumulation rounds after the first add no power iterations: one per step."""
    norms = [m for module in modules for m in module.modules() if isinstance(m, SpectralNorm) and m.training]
    for m in norms:
        m.training = False
    try:
        yield
    finally:
        for m in norms:
            m.training = True


# --------------------------------------------------------------------------- batch norm


RUNNING_VARS = ("biased", "unbiased")


def _cross_replica_normalise(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                             momentum: float, eps: float, reduce: Callable, unbiased: bool = False) -> torch.Tensor:
    """Normalise x (B, C, H, W) by the mean and biased variance of all replicas' batches.

    One `reduce` (a differentiable sum over ranks) of a fused vector [sum, sum of squares,
    count]; autograd through it makes both the outputs and the gradients those of one BN over
    the global batch. Sums are taken around the running mean (identical on every rank), so
    E[x^2] - E[x]^2 does not cancel catastrophically once the running mean tracks the data.
    Statistics are in float32 whatever x's dtype; running statistics are updated in place,
    the variance's biased or (`unbiased`, as nn.BatchNorm) with the factor n / (n - 1).
    """
    c = x.shape[1]
    shift = running_mean.detach().clone().view(1, c, 1, 1).float()
    xs = x.float() - shift
    count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=x.device)
    sums = reduce(torch.cat([xs.sum((0, 2, 3)), xs.square().sum((0, 2, 3)), count]))
    n = sums[2 * c]
    mean_s = sums[:c] / n
    var = (sums[c:2 * c] / n - mean_s.square()).clamp_min(0)
    with torch.no_grad():
        running_mean.lerp_((mean_s + shift.flatten()).to(running_mean.dtype), momentum)
        running_var.lerp_((var * (n / (n - 1)) if unbiased else var).to(running_var.dtype), momentum)
    out = (xs - mean_s.view(1, c, 1, 1)) * torch.rsqrt(var + eps).view(1, c, 1, 1)
    return out.to(x.dtype)


class BatchNorm2d(nn.Module):
    """Batch norm (B, C, H, W) -> (B, C, H, W), optionally with a per-channel affine; TF-GAN's
    settings by default (see the module docstring).

    In training the statistics are those of the global batch when torch.distributed runs with
    world size > 1 and `cross_replica` is set (every rank must then run the same forwards);
    otherwise of the local batch. The running statistics, updated with `momentum` and tracking
    the `running_var` ("biased" or "unbiased") batch variance, are used in eval.
    `forward(x, cond)` accepts and ignores a conditioning argument, so an unconditional G can
    use it where conditional BNs sit.
    """

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 1e-3, affine: bool = True,
                 cross_replica: bool = True, running_var: str = "biased"):
        super().__init__()
        if running_var not in RUNNING_VARS:
            raise ValueError(f"running_var must be one of {RUNNING_VARS}, got {running_var!r}")
        self.channels, self.eps, self.momentum, self.cross_replica = channels, eps, momentum, cross_replica
        self.unbiased = running_var == "unbiased"
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"{self.channels}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}, "
                f"cross_replica={self.cross_replica}, running_var={'unbiased' if self.unbiased else 'biased'}")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / sqrt(var + eps), without the affine."""
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)
        self.num_batches_tracked.add_(1)
        if self.cross_replica and distributed.world_size() > 1:
            return _cross_replica_normalise(x, self.running_mean, self.running_var, self.momentum, self.eps,
                                            distributed.all_reduce_sum, self.unbiased)
        if self.unbiased:
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, True, self.momentum, self.eps)
        # F.batch_norm (one fused kernel) moves a running variance r towards the unbiased batch
        # variance: r' = (1 - m) r + m v n / (n - 1). Taking (n - 1) / n of that step gives the biased
        # rule (1 - m) r + m v exactly, at O(C) cost instead of a second pass over x. The kernel
        # updates a copy: autograd keeps it for the backward, so it must not change afterwards.
        stepped = self.running_var.clone()
        out = F.batch_norm(x, self.running_mean, stepped, None, None, True, self.momentum, self.eps)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_var.copy_(torch.lerp(self.running_var * (1 - self.momentum), stepped, (n - 1) / n))
        return out

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.normalise(x)
        if self.weight is None:
            return h
        return _affine(h, self.weight.unsqueeze(0), self.bias.unsqueeze(0))


def _affine(h: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """h (B, C, H, W) * gain (B or 1, C) + bias (B or 1, C), in h's dtype."""
    return torch.addcmul(bias.to(h.dtype)[:, :, None, None], h, gain.to(h.dtype)[:, :, None, None])


class ClassTableBN(nn.Module):
    """Class-conditional BN of the official HamGAN: one gain and one bias per class and channel.

    forward(x (B, C, H, W), cond (B, n_classes)) -> (B, C, H, W). `cond` is the one-hot label
    or any mix of one-hots; the look-up is the bias-free linear map cond @ table, so a mix
    interpolates gains and biases. Tables start at gain 1, bias 0 (not spectrally normalised:
    they are BN parameters, as in the official code). The map runs in float32 under autocast.
    """

    def __init__(self, channels: int, n_classes: int, eps: float = 1e-3, momentum: float = 1e-3,
                 cross_replica: bool = True, running_var: str = "biased"):
        super().__init__()
        self.bn = BatchNorm2d(channels, eps, momentum, affine=False, cross_replica=cross_replica,
                              running_var=running_var)
        self.gain = nn.Parameter(torch.ones(n_classes, channels))
        self.bias = nn.Parameter(torch.zeros(n_classes, channels))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        with autocast_off(x.device.type):
            cond = cond.float()
            gain, bias = cond @ self.gain, cond @ self.bias
        return _affine(self.bn.normalise(x), gain, bias)


class LinearCBN(nn.Module):
    """BigGAN's conditional BN: gain = 1 + W_g c, bias = W_b c, with W_g, W_b bias-free SN
    linear maps of the conditioning vector c (B, cond_dim) (shared class embedding concatenated
    with this block's chunk of z). forward(x (B, C, H, W), c) -> (B, C, H, W)."""

    def __init__(self, channels: int, cond_dim: int, eps: float = 1e-3, momentum: float = 1e-3,
                 cross_replica: bool = True, running_var: str = "biased", sn_kind: str = "exact",
                 sn_eps: float = 1e-6):
        super().__init__()
        self.bn = BatchNorm2d(channels, eps, momentum, affine=False, cross_replica=cross_replica,
                              running_var=running_var)
        self.gain = sn_linear(cond_dim, channels, bias=False, kind=sn_kind, eps=sn_eps)
        self.bias = sn_linear(cond_dim, channels, bias=False, kind=sn_kind, eps=sn_eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return _affine(self.bn.normalise(x), 1 + self.gain(cond), self.bias(cond))


# --------------------------------------------------------------------------- residual blocks


class GBlock(nn.Module):
    """Residual up-block (B, c_in, H, W) -> (B, c_out, 2H, 2W) of SAGAN / BigGAN:

        norm -> ReLU -> 2x nearest -> 3x3 conv -> norm -> ReLU -> 3x3 conv
        skip: 1x1 conv -> 2x nearest   (the same as up then conv, on 4x fewer pixels)

    `make_norm(channels)` builds the (conditional) BNs, called as norm(h, cond); every conv has
    spectral norm of `sn_kind`.
    """

    def __init__(self, c_in: int, c_out: int, make_norm: Callable[[int], nn.Module], sn_kind: str = "exact",
                 sn_eps: float = 1e-6):
        super().__init__()
        self.bn1 = make_norm(c_in)
        self.conv1 = sn_conv2d(c_in, c_out, 3, kind=sn_kind, eps=sn_eps)
        self.bn2 = make_norm(c_out)
        self.conv2 = sn_conv2d(c_out, c_out, 3, kind=sn_kind, eps=sn_eps)
        self.skip = sn_conv2d(c_in, c_out, 1, kind=sn_kind, eps=sn_eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class DBlock(nn.Module):
    """Residual down-block (B, c_in, H, W) -> (B, c_out, H/2, W/2) (or H, W without downsampling):

        [ReLU] -> 3x3 conv -> ReLU -> 3x3 conv -> [2x2 avg-pool]
        skip: [avg-pool -> 1x1 conv] when channels change or it downsamples, else identity

    `preactivation=False` is the "optimised" first block on the image (no ReLU on its input).
    Pooling before the 1x1 skip conv equals conv then pool (both linear) at a quarter the cost.
    Every conv has spectral norm of `sn_kind`.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool = True, preactivation: bool = True,
                 sn_kind: str = "exact", sn_eps: float = 1e-6):
        super().__init__()
        self.downsample, self.preactivation = downsample, preactivation
        self.conv1 = sn_conv2d(c_in, c_out, 3, kind=sn_kind, eps=sn_eps)
        self.conv2 = sn_conv2d(c_out, c_out, 3, kind=sn_kind, eps=sn_eps)
        self.skip = sn_conv2d(c_in, c_out, 1, kind=sn_kind, eps=sn_eps) if (c_in != c_out or downsample) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        skip = x
        if self.downsample:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        if self.skip is not None:
            skip = self.skip(skip)
        return h + skip
