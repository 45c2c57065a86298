"""The Hamburger block: global context from a low-rank matrix decomposition.

Geng et al., "Is Attention Better Than Matrix Decomposition?" (ICLR 2021). A feature map
(B, C, H, W) is squeezed by a 1x1 conv (lower bread) into S groups of D x N matrices
(N = H*W), each replaced by a rank-R reconstruction (the ham), then expanded back by a 1x1
conv (upper bread) and added to the input with a learnable scale starting at 0.

The decompositions run in float32 even under autocast: eps = 1e-6 in the multiplicative
updates underflows in half precision.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import stats
from .layers import sn_conv1x1

GRAD_MODES = ("one_step", "bptt", "none")
BASES_INITS = ("rand", "rand_l2", "online")


class Rows(NamedTuple):
    """A forward's batch (or a part of it) as rows [first, first + count) of a global batch of
    `total` rows: this process's share in one accumulation round of a training step."""

    first: int
    count: int
    total: int


# How a forward draws the random starting bases of its decompositions, from torch's global RNG
# (stylegan2's noise_mode, as an explicit argument of G, D and every context block):
# - "sample": fresh bases per sample (training and evaluation);
# - "shared": one draw repeated over the batch, so a sample's output depends on its own input
#   alone, not on its batch or position (what sample sheets and interpolations need);
# - a tuple of Rows, one per global batch concatenated in this forward (e.g. real and fake
#   images): each decomposition draws bases for the whole global batch and keeps its rows, so
#   2 processes x b samples draw exactly the bases of 1 process x 2b (seed the RNG alike first).
Bases = Union[str, tuple[Rows, ...]]


@contextlib.contextmanager
def record_factors(module: nn.Module):
    """Inside this context, each decomposition in `module` keeps its last forward's factors in
    ``.last``: {"x": the decomposed matrices (B, D, N) after `prepare` (ReLU for NMF), "bases":
    (B, D, R), "coef": (B, N, R)}, detached; B = batch * groups. For visualisation
    (`hamgan sample --mode ham-maps`); outside it nothing is kept. Yields
    {qualified name: decomposition}."""
    found = {name: m for name, m in module.named_modules() if isinstance(m, MatrixDecomposition)}
    for m in found.values():
        m.record, m.last = True, None
    try:
        yield found
    finally:
        for m in found.values():
            del m.record, m.last  # back to the class defaults


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@torch.no_grad()
def relative_error(x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||x - bases coef^T|| / ||x|| (Frobenius) for x (B, D, N), bases
    (B, D, R), coef (B, N, R): the convergence diagnostic of the paper, from the factors alone,
    ||X - BC^T||^2 = ||X||^2 - 2 <X^T B, C> + <B^T B, C^T C>, without forming the (B, D, N)
    reconstruction."""
    xx = x.square().sum((1, 2))
    cross = (torch.bmm(x.transpose(1, 2), bases) * coef).sum((1, 2))
    gram = (torch.bmm(bases.transpose(1, 2), bases) * torch.bmm(coef.transpose(1, 2), coef)).sum((1, 2))
    return ((xx - 2 * cross + gram).clamp_min(0) / xx.clamp_min(1e-12)).sqrt().mean()


class MatrixDecomposition(nn.Module):
    """Low-rank reconstruction of a batch of matrices: x (B, D, N) -> bases @ coef^T (B, D, N).

    Subclasses implement `iterate` (K steps, bases (B, D, R) and coef (B, N, R)) and
    `final_coef` (the coefficient update that carries the gradient). `grad` selects how the
    output depends on x for autograd:

    - ``one_step``: the K steps run without autograd; only the final coefficient update,
      with the bases held constant, is differentiated (the paper's one-step gradient);
    - ``bptt``: autograd through all K steps;
    - ``none``: the output is a constant.

    The three modes give the same forward values.
    """

    default_inv_t = 1.0
    record = False  # set by `record_factors`: keep the last forward's factors in `last`
    last = None
    stats_name = "ham"  # the name its statistics are reported under (`stats.name_reporters`)

    def __init__(self, dim: int, rank: int, steps: int = 6, eval_steps: int | None = None, groups: int = 1,
                 eps: float = 1e-6, inv_t: float | None = None, bases_init: str = "rand",
                 grad: str = "one_step", online_eta: float = 0.1):
        super().__init__()
        _check_positive("dim", dim)
        _check_positive("rank", rank)
        _check_positive("steps", steps, allow_zero=True)
        _check_positive("groups", groups)
        eval_steps = steps if eval_steps is None else eval_steps
        _check_positive("eval_steps", eval_steps, allow_zero=True)
        if grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")
        if bases_init not in BASES_INITS:
            raise ValueError(f"bases_init must be one of {BASES_INITS}, got {bases_init!r}")
        self.dim, self.rank, self.groups = dim, rank, groups
        self.steps, self.eval_steps = steps, eval_steps
        self.eps = eps
        self.inv_t = self.default_inv_t if inv_t is None else inv_t
        self.bases_init, self.grad, self.online_eta = bases_init, grad, online_eta
        if bases_init == "online":
            self.register_buffer("bases", F.normalize(torch.rand(groups, dim, rank), dim=1))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, rank={self.rank}, steps={self.steps}, eval_steps={self.eval_steps}, "
                f"groups={self.groups}, inv_t={self.inv_t}, bases_init={self.bases_init}, grad={self.grad}")

    # -- pieces a decomposition defines

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def initial_bases(self, x: torch.Tensor, bases: Bases = "sample") -> torch.Tensor:
        """(B, D, R) starting bases for x (B, D, N); B is batch * groups; `bases` as `Bases` says."""
        g, batch = self.groups, x.shape[0] // self.groups
        if self.bases_init == "online":
            return self.bases.repeat(batch, 1, 1)

        def draw(samples):
            return torch.rand(samples * g, self.dim, self.rank, device=x.device, dtype=x.dtype)

        if bases == "sample":
            start = draw(batch)
        elif bases == "shared":
            start = draw(1).repeat(batch, 1, 1)  # a copy: NMF updates bases in place
        elif isinstance(bases, tuple) and sum(rows.count for rows in bases) == batch:
            start = torch.cat([draw(rows.total)[rows.first * g:(rows.first + rows.count) * g] for rows in bases])
        else:
            raise ValueError(f"bases must be 'sample', 'shared' or Rows adding up to the batch of {batch}, "
                             f"got {bases!r}")
        return F.normalize(start, dim=1) if self.bases_init == "rand_l2" else start

    def iterate(self, x, bases, steps):
        raise NotImplementedError

    def final_coef(self, x, bases, coef):
        raise NotImplementedError

    # -- shared driver

    def factorize(self, x: torch.Tensor, bases: Bases = "sample") -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D, N) -> float32 bases (B, D, R) and coefficients (B, N, R), x ~ bases @ coef^T,
        differentiable as `grad` says; random starting bases drawn as `bases` says."""
        if x.dim() != 3 or x.shape[1] != self.dim:
            raise ValueError(f"expected x of shape (B, {self.dim}, N), got {tuple(x.shape)}")
        steps = self.steps if self.training else self.eval_steps
        grad_on = torch.is_grad_enabled()
        with torch.autocast(x.device.type, enabled=False):
            x = self.prepare(x.float())
            with torch.set_grad_enabled(grad_on and self.grad == "bptt"):
                start = self.initial_bases(x, bases)
                bases, coef = self.iterate(x, start, steps)
            with torch.set_grad_enabled(grad_on and self.grad != "none"):
                coef = self.final_coef(x, bases, coef)
            if self.bases_init == "online" and self.training:
                self._online_update(bases.detach())
            if self.record:
                self.last = {"x": x.detach(), "bases": bases.detach(), "coef": coef.detach()}
            if stats.collecting():
                stats.report(f"recon_error/{self.stats_name}", relative_error(x, bases, coef))
        return bases, coef

    def forward(self, x: torch.Tensor, bases: Bases = "sample") -> torch.Tensor:
        """x (B, D, N) -> its low-rank reconstruction (B, D, N) in x's dtype."""
        bases, coef = self.factorize(x, bases)
        with torch.autocast(x.device.type, enabled=False):
            return torch.bmm(bases, coef.transpose(1, 2)).to(x.dtype)

    @torch.no_grad()
    def _online_update(self, bases: torch.Tensor) -> None:
        mean = bases.view(-1, self.groups, self.dim, self.rank).mean(0)
        self.bases.lerp_(mean, self.online_eta)
        self.bases.copy_(F.normalize(self.bases, dim=1))


class NMF(MatrixDecomposition):
    """Non-negative matrix factorisation by Lee & Seung's multiplicative updates.

    x is made non-negative by ReLU. coef starts as softmax(inv_t * x^T B) over R; each step
    updates coef, then bases:

        C <- C * (X^T B) / (C B^T B + eps),    B <- B * (X C) / (B C^T C + eps)
    """

    def prepare(self, x):
        return F.relu(x)

    # In the K-step loop autograd is off (one_step / none), so the updates run in place: on
    # CPU this saves 10-40% of the loop's time by not allocating (B, N, R) temporaries.

    def _coef_step(self, xtb, bases, coef):
        """C * (X^T B) / (C B^T B + eps); xtb = X^T B (B, N, R), bases (B, D, R), coef (B, N, R)."""
        den = torch.bmm(coef, torch.bmm(bases.transpose(1, 2), bases)).add_(self.eps)
        if torch.is_grad_enabled():
            return coef * xtb / den
        return coef.mul_(xtb).div_(den)

    def _bases_step(self, x, bases, coef):
        """B * (X C) / (B C^T C + eps)."""
        den = torch.bmm(bases, torch.bmm(coef.transpose(1, 2), coef)).add_(self.eps)
        if torch.is_grad_enabled():
            return bases * torch.bmm(x, coef) / den
        return bases.mul_(torch.bmm(x, coef)).div_(den)

    def iterate(self, x, bases, steps):
        xt = x.transpose(1, 2)
        xtb = torch.bmm(xt, bases)                  # (B, N, R), shared with the first coef step
        coef = torch.softmax(self.inv_t * xtb, dim=-1)
        for k in range(steps):
            if k:
                xtb = torch.bmm(xt, bases)
            coef = self._coef_step(xtb, bases, coef)
            bases = self._bases_step(x, bases, coef)
        return bases, coef

    def final_coef(self, x, bases, coef):
        return self._coef_step(torch.bmm(x.transpose(1, 2), bases), bases, coef)


def _cosine_assign(x: torch.Tensor, bases: torch.Tensor, inv_t: float) -> torch.Tensor:
    """Soft assignment (B, N, R): softmax over R of inv_t * cos(x_n, b_r)."""
    sim = torch.bmm(F.normalize(x, dim=1, eps=1e-6).transpose(1, 2), F.normalize(bases, dim=1, eps=1e-6))
    return torch.softmax(inv_t * sim, dim=-1)


def _normalise_over_n(coef: torch.Tensor, eps: float) -> torch.Tensor:
    return coef / (coef.sum(dim=1, keepdim=True) + eps)


class VQ(MatrixDecomposition):
    """Soft vector quantisation (soft spherical k-means).

    Each step: coef = softmax over R of inv_t * cosine(x, bases), normalised over N; bases =
    X coef (the coef-weighted mean of the columns). Output coefficients are the soft
    assignments (not normalised over N), so each column is rebuilt from the centroids.
    """

    default_inv_t = 100.0

    def iterate(self, x, bases, steps):
        coef = None
        for _ in range(steps):
            coef = _normalise_over_n(_cosine_assign(x, bases, self.inv_t), self.eps)
            bases = torch.bmm(x, coef)
        return bases, coef

    def final_coef(self, x, bases, coef):
        return _cosine_assign(x, bases, self.inv_t)


class CD(MatrixDecomposition):
    """Concept decomposition: L2-normalised concept vectors by soft spherical k-means, then the
    coefficients of the least-squares fit by a ridge solve, C = X^T B (B^T B + beta I)^-1."""

    default_inv_t = 100.0

    def __init__(self, *args, beta: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if not beta > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        self.beta = beta

    def initial_bases(self, x, bases: Bases = "sample"):
        return F.normalize(super().initial_bases(x, bases), dim=1)

    def iterate(self, x, bases, steps):
        coef = None
        for _ in range(steps):
            coef = _normalise_over_n(_cosine_assign(x, bases, self.inv_t), self.eps)
            bases = F.normalize(torch.bmm(x, coef), dim=1, eps=1e-6)
        return bases, coef

    def final_coef(self, x, bases, coef):
        gram = torch.bmm(bases.transpose(1, 2), bases)
        gram = gram + self.beta * torch.eye(self.rank, device=x.device, dtype=x.dtype)
        return torch.linalg.solve(gram, torch.bmm(x.transpose(1, 2), bases), left=False)


DECOMPOSITIONS = {"nmf": NMF, "cd": CD, "vq": VQ}


class Hamburger(nn.Module):
    """Lower bread -> ham -> upper bread -> optional norm -> x + sigma * h.

    x: (B, C, H, W) -> (B, C, H, W). The lower bread is a 1x1 spectral-norm conv C -> S*D
    (no bias); the ham decomposes each of the S groups as a (D, H*W) matrix; the upper
    bread is a 1x1 spectral-norm conv S*D -> C (no bias), applied to the factors of the
    reconstruction rather than to the reconstruction itself (the same result, cheaper). `norm` is a module applied to the
    upper bread's output as ``norm(h, *norm_args)``: G passes class-conditional BN and its
    labels/conditioning through `forward(x, *norm_args)`. sigma starts at 0, so a fresh
    block is the identity.
    """

    def __init__(self, channels: int, ham: str = "nmf", groups: int = 1, dim: int | None = None,
                 rank: int = 32, steps: int = 6, eval_steps: int | None = None, inv_t: float | None = None,
                 eps: float = 1e-6, beta: float = 0.1, bases_init: str = "rand", grad: str = "one_step",
                 norm: nn.Module | None = None, sn_eps: float = 1e-6):
        super().__init__()
        _check_positive("channels", channels)
        _check_positive("groups", groups)
        if ham not in DECOMPOSITIONS:
            raise ValueError(f"ham must be one of {tuple(DECOMPOSITIONS)}, got {ham!r}")
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by groups ({groups})")
        dim = channels // groups if dim is None else dim
        _check_positive("dim", dim)
        self.groups, self.dim = groups, dim
        # the breads are normalised exactly (W / sigma) whatever the rest of the network uses,
        # as in the official code (TF-GAN's sn_conv1x1)
        self.lower_bread = sn_conv1x1(channels, groups * dim, kind="exact", eps=sn_eps)
        extra = {"beta": beta} if ham == "cd" else {}
        self.ham = DECOMPOSITIONS[ham](dim, rank, steps=steps, eval_steps=eval_steps, groups=groups, eps=eps,
                                       inv_t=inv_t, bases_init=bases_init, grad=grad, **extra)
        self.upper_bread = sn_conv1x1(groups * dim, channels, kind="exact", eps=sn_eps)
        self.norm = norm
        self.sigma = nn.Parameter(torch.zeros(()))

    stats_name = "hamburger"  # the name its statistics are reported under (`stats.name_reporters`)

    def forward(self, x: torch.Tensor, *norm_args, bases: Bases = "sample") -> torch.Tensor:
        """`bases`: how the ham draws its random starting bases (see `Bases`)."""
        b, c, h, w = x.shape
        s, d = self.groups, self.dim
        z = self.lower_bread(x).reshape(b * s, d, h * w)
        bases, coef = self.ham.factorize(z, bases)                # (B*S, D, R), (B*S, N, R)
        # The upper bread is linear and its input low-rank: W (B C^T) = (W B) C^T costs C*R*(D + N)
        # per sample instead of D*N*(R + C) for the reconstruction and the 1x1 conv on it.
        weight = self.upper_bread.weight.view(c, s, d)          # spectrally normalised
        r = bases.shape[-1]
        wb = torch.einsum("csd,bsdr->bcsr", weight, bases.view(b, s, d, r).to(weight.dtype)).reshape(b, c, s * r)
        coef = coef.view(b, s, h * w, r).transpose(1, 2).reshape(b, h * w, s * r).to(weight.dtype)
        z = torch.bmm(wb, coef.transpose(1, 2)).view(b, c, h, w)
        if self.norm is not None:
            z = self.norm(z, *norm_args)
        stats.report(f"sigma/{self.stats_name}", self.sigma)
        return torch.addcmul(x, self.sigma, z)  # x + sigma * z in one pass
