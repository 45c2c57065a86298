"""The generator and discriminator, built from `ModelConfig` (REFERENCE §2), and `describe`.

G: SN linear z -> 4x4 -> residual up-blocks (conditional BN) -> BN -> ReLU -> 3x3 SN conv -> tanh.
D: residual down-blocks -> ReLU -> global sum pool -> SN linear + projection sum(embed(y) * h).
Global-context blocks (`Hamburger` or `SelfAttention`) follow the blocks named in the config.

Class conditioning of G (`model.conditioning`):
- ``cbn`` (official HamGAN): every BN of G, the Hamburger's included, has per-class gain/bias
  tables; the class representation `G.embed(y)` is the one-hot label (B, n_classes).
- ``shared`` (BigGAN-lite): a shared SN class embedding (B, shared_dim) is concatenated with a
  chunk of z for each up-block (hierarchical z; the first chunk feeds the linear layer) and
  mapped to gain/bias by SN linear maps; a context block uses the conditioning of the block it
  follows.
With n_classes = 0 both networks are unconditional (labels are ignored).

Normalisation (`model.sn`, `model.bn_*`, see `hamgan.layers`): with ``sn = "official"`` the
3x3 and skip convs, the linear layers and the class embeddings have "at most 1" spectral norm
(W / max(1, sigma)), the Hamburger's and attention's 1x1 convs exact spectral norm (W / sigma),
as the official TF-GAN code; ``sn = "exact"`` makes every layer exact. Every batch norm of G
(the class tables', the Hamburger's, the output one) has the configured eps, momentum and
running variance.

Initialisation (`model.init`): "xavier" (default; Xavier/Glorot uniform, as TF-GAN's SAGAN used
by the official HamGAN code), "ortho" (orthogonal, BigGAN) or "normal" (N(0, 0.02)); biases 0,
BN gains 1 and biases 0, context-block scales 0. Applied to the weights under spectral norm,
whose power-iteration vectors are then re-estimated.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .arch import Stage, discriminator_stages, generator_stages
from .attention import SelfAttention
from .config import ConfigError, ContextBlock, ModelConfig
from .ham import Bases, Hamburger
from .stats import name_reporters
from .layers import (BatchNorm2d, ClassTableBN, DBlock, GBlock, LinearCBN, refresh_spectral_norm,
                     sn_conv2d, sn_embedding, sn_linear, spectral_norms)

INITS = {
    "xavier": nn.init.xavier_uniform_,
    "ortho": nn.init.orthogonal_,
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
}


def init_weights(model: nn.Module, scheme: str = "xavier") -> nn.Module:
    """Initialise every conv/linear/embedding weight of `model` by `scheme` (see the module
    docstring), zero their biases, refresh their spectral norms. Meta tensors are skipped."""
    if scheme not in INITS:
        raise ConfigError(f"model.init = {scheme!r}: expected one of {', '.join(map(repr, INITS))}")
    for m in model.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            continue
        weight = m.parametrizations["weight"].original if parametrize.is_parametrized(m, "weight") else m.weight
        if weight.is_meta:
            continue
        with torch.no_grad():
            INITS[scheme](weight)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
        refresh_spectral_norm(m)
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_model(cfg: ModelConfig) -> None:
    for name, low in (("n_classes", 0), ("z_dim", 1), ("shared_dim", 1)):
        value = getattr(cfg, name)
        if not (isinstance(value, int) and value >= low):
            raise ConfigError(f"model.{name} = {value!r}: expected an integer >= {low}")
    if cfg.conditioning not in ("cbn", "shared"):
        raise ConfigError(f"model.conditioning = {cfg.conditioning!r}: expected 'cbn' or 'shared'")
    if not cfg.bn_eps > 0 or not cfg.sn_eps > 0:
        raise ConfigError("model.bn_eps and model.sn_eps must be > 0")
    if not 0 < cfg.bn_momentum <= 1:
        raise ConfigError(f"model.bn_momentum = {cfg.bn_momentum!r}: expected a number in (0, 1] "
                          "(1 - the moving-average decay; TF-GAN's 0.001)")


def sn_kind(cfg: ModelConfig) -> str:
    """The spectral-norm kind of every layer but the context blocks' 1x1 convs (always exact)."""
    return "at_most_1" if cfg.sn == "official" else "exact"


def bn_settings(cfg: ModelConfig) -> dict:
    """Keyword arguments of every batch norm of G (`hamgan.layers.BatchNorm2d` and the conditional ones)."""
    return dict(eps=cfg.bn_eps, momentum=cfg.bn_momentum, running_var=cfg.bn_running_var,
                cross_replica=cfg.cross_replica_bn)


def _context_module(ctx: ContextBlock, channels: int, norm: nn.Module | None, sn_eps: float, where: str):
    """The Hamburger / self-attention block a `ContextBlock` describes, on `channels` channels."""
    try:
        if ctx.block == "ham":
            return Hamburger(channels, **ctx.ham_kwargs(), norm=norm, sn_eps=sn_eps)
        if ctx.block == "attn":
            return SelfAttention(channels, sn_eps=sn_eps)
        raise ValueError(f"block must be 'ham' or 'attn', got {ctx.block!r}")
    except ValueError as e:
        raise ConfigError(f"{where} ({ctx.block} at {ctx.at} px, {channels} channels): {e}") from None


class Generator(nn.Module):
    """G(z (B, z_dim), y (B,) long) -> images (B, 3, R, R) in [-1, 1].

    `G(z, embedding=e)` takes class representations e (B, embed_dim) instead of labels: any
    convex mix of rows of `G.embed(y)` (class interpolation). Labels are not needed when
    n_classes == 0.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _check_model(cfg)
        self.stages: list[Stage] = generator_stages(cfg)
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, cfg.n_classes, cfg.resolution
        self.conditioning = cfg.conditioning
        n_blocks = len(self.stages)
        bn, kind = bn_settings(cfg), sn_kind(cfg)
        if cfg.conditioning == "shared":
            chunk = cfg.z_dim // (n_blocks + 1)
            if chunk < 1:
                raise ConfigError(f"model.z_dim = {cfg.z_dim}: hierarchical z needs at least {n_blocks + 1} "
                                  f"latent dimensions (one chunk per up-block plus one for the linear layer)")
            self.z_split = [cfg.z_dim - chunk * n_blocks] + [chunk] * n_blocks
            self.embed_dim = cfg.shared_dim if cfg.n_classes else 0
            self.shared = sn_embedding(cfg.n_classes, cfg.shared_dim, kind, cfg.sn_eps) if cfg.n_classes else None
            cond_dim = self.embed_dim + chunk

            def make_norm(c):
                return LinearCBN(c, cond_dim, sn_kind=kind, sn_eps=cfg.sn_eps, **bn)
        else:
            self.z_split = [cfg.z_dim]
            self.embed_dim = cfg.n_classes
            self.shared = None

            def make_norm(c):
                return ClassTableBN(c, cfg.n_classes, **bn) if cfg.n_classes else BatchNorm2d(c, **bn)

        self.linear = sn_linear(self.z_split[0], 4 * 4 * self.stages[0].c_in, kind=kind, eps=cfg.sn_eps)
        self.blocks = nn.ModuleList(GBlock(s.c_in, s.c_out, make_norm, kind, cfg.sn_eps) for s in self.stages)
        self.context = nn.ModuleList(
            nn.ModuleList(_context_module(ctx, s.c_out, make_norm(s.c_out) if ctx.block == "ham" else None,
                                          cfg.sn_eps, f"model.G.context[{i}]") for i, ctx in s.context)
            for s in self.stages)
        c_last = self.stages[-1].c_out
        self.out_bn = BatchNorm2d(c_last, **bn)
        self.out_conv = sn_conv2d(c_last, 3, 3, kind=kind, eps=cfg.sn_eps)
        init_weights(self, cfg.init)
        name_reporters(self, "G")

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Class representation (B, embed_dim) of labels y (B,): one-hot for per-class BN
        tables, the shared embedding for BigGAN-lite."""
        if self.n_classes == 0:
            raise ValueError("this generator is unconditional (n_classes = 0): it has no class representation")
        if y.dim() != 1 or y.dtype.is_floating_point:
            raise ValueError(f"expected integer labels of shape (B,), got {tuple(y.shape)} {y.dtype}")
        if self.shared is not None:
            return self.shared(y)
        return F.one_hot(y, self.n_classes).float()

    def _class_input(self, batch: int, y, embedding):
        if self.n_classes == 0:
            if embedding is not None:
                raise ValueError("this generator is unconditional (n_classes = 0): it takes no embedding")
            return None
        if embedding is None:
            if y is None:
                raise ValueError(f"this generator is conditional on {self.n_classes} classes: pass labels y (B,) "
                                 f"or embedding=G.embed(y)")
            embedding = self.embed(y)
        if embedding.shape != (batch, self.embed_dim):
            raise ValueError(f"expected an embedding of shape ({batch}, {self.embed_dim}), got {tuple(embedding.shape)}")
        return embedding

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None,
                embedding: torch.Tensor | None = None, bases: Bases = "sample") -> torch.Tensor:
        """`bases`: how its Hamburgers draw their random starting bases (`hamgan.ham.Bases`)."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        e = self._class_input(z.shape[0], y, embedding)
        zs = z.split(self.z_split, dim=1)
        if self.conditioning == "shared":
            conds = [zc if e is None else torch.cat([e.to(zc.dtype), zc], dim=1) for zc in zs[1:]]
        else:
            conds = [e] * len(self.blocks)
        h = self.linear(zs[0]).view(z.shape[0], -1, 4, 4)
        for block, context, cond in zip(self.blocks, self.context, conds):
            h = block(h, cond)
            for m in context:
                h = m(h, cond, bases=bases)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class Discriminator(nn.Module):
    """D(x (B, 3, R, R), y (B,) long) -> scores (B,) float32: linear(h) + sum(embed(y) * h), h the
    ReLU'd, sum-pooled features of the last block (projection discriminator; the projection term
    is absent when n_classes == 0)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _check_model(cfg)
        self.stages: list[Stage] = discriminator_stages(cfg)
        self.n_classes, self.resolution = cfg.n_classes, cfg.resolution
        kind = sn_kind(cfg)
        self.blocks = nn.ModuleList(DBlock(s.c_in, s.c_out, downsample=s.resample, preactivation=k > 0,
                                           sn_kind=kind, sn_eps=cfg.sn_eps) for k, s in enumerate(self.stages))
        self.context = nn.ModuleList(
            nn.ModuleList(_context_module(ctx, s.c_out, None, cfg.sn_eps, f"model.D.context[{i}]")
                          for i, ctx in s.context)
            for s in self.stages)
        c_last = self.stages[-1].c_out
        self.linear = sn_linear(c_last, 1, kind=kind, eps=cfg.sn_eps)
        self.embed = sn_embedding(cfg.n_classes, c_last, kind, cfg.sn_eps) if cfg.n_classes else None
        init_weights(self, cfg.init)
        name_reporters(self, "D")

    def features(self, x: torch.Tensor, bases: Bases = "sample") -> torch.Tensor:
        """(B, 3, R, R) -> (B, C) pooled features h."""
        if x.dim() != 4 or x.shape[1:] != (3, self.resolution, self.resolution):
            raise ValueError(f"expected images (B, 3, {self.resolution}, {self.resolution}), got {tuple(x.shape)}")
        h = x
        for block, context in zip(self.blocks, self.context):
            h = block(h)
            for m in context:
                h = m(h, bases=bases)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, bases: Bases = "sample") -> torch.Tensor:
        """`bases`: how its Hamburgers draw their random starting bases (`hamgan.ham.Bases`)."""
        h = self.features(x, bases)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError(f"this discriminator is conditional on {self.n_classes} classes: pass labels y (B,)")
            out = out + (self.embed(y) * h).sum(dim=1)
        return out.float()


def build_generator(model_cfg: ModelConfig) -> Generator:
    return Generator(model_cfg)


def build_discriminator(model_cfg: ModelConfig) -> Discriminator:
    return Discriminator(model_cfg)


# --------------------------------------------------------------------------- describe


def _context_text(ctx: ContextBlock, channels: int) -> str:
    if ctx.block == "attn":
        return "attn (SAGAN self-attention)"
    dim = ctx.dim or channels // ctx.groups
    eval_k = "" if ctx.eval_steps in (None, ctx.steps) else f"/{ctx.eval_steps} eval"
    return f"ham {ctx.ham} S={ctx.groups} D={dim} R={ctx.rank} K={ctx.steps}{eval_k} {ctx.grad}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M"


SN_NAMES = {"at_most_1": "at most 1", "exact": "exact"}


def _sn_text(*modules: nn.Module) -> str:
    """The spectral-norm kinds of the layers in `modules`, e.g. 'at most 1' or 'exact'."""
    kinds = {p.kind for module in modules for m in module.modules() for p in spectral_norms(m)}
    return " + ".join(SN_NAMES[k] for k in sorted(kinds))


def _table(rows: list[tuple[str, str, str, str, str, int]]) -> list[str]:
    header = ("stage", "output", "channels", "context", "spectral norm", "params")
    widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(5)]
    fmt = "  {:<%d}  {:<%d}  {:<%d}  {:<%d}  {:<%d}  {:>11}" % tuple(widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*r[:5], f"{r[5]:,}") for r in rows]


def describe(cfg) -> str:
    """Both networks of `cfg` (a Config or ModelConfig) per resolution: channels, context
    blocks, parameters; ends each with 'G parameters: N' / 'D parameters: N'. Built on the meta
    device: no memory, no initialisation, fast at any size."""
    model = getattr(cfg, "model", cfg)
    with torch.device("meta"):
        G, D = Generator(model), Discriminator(model)
    classes = f"{model.n_classes} classes" if model.n_classes else "unconditional"
    if G.conditioning == "shared":
        hier = f"hierarchical z ({G.z_split[0]} + {len(G.z_split) - 1} x {G.z_split[1]})"
        cond = f"shared embedding ({model.shared_dim}) + {hier}" if model.n_classes else hier
    else:
        cond = "per-class BN gain/bias tables" if model.n_classes else "plain BN"
    out = [f"Generator: {model.resolution} px, ch = {model.G.ch}, z_dim = {model.z_dim}, {classes}, "
           f"conditioning = {G.conditioning} ({cond}), init = {model.init}"]
    s0 = G.stages[0]
    stem = "linear z" + (" + shared embedding" if G.shared is not None else "")
    shared = G.shared or nn.Module()
    rows = [(stem, "4x4", f"{s0.c_in}", "", _sn_text(G.linear, shared),
             count_parameters(G.linear) + count_parameters(shared))]
    for k, (s, block, context) in enumerate(zip(G.stages, G.blocks, G.context)):
        rows.append((f"up-block {k + 1}", f"{s.resolution}x{s.resolution}", f"{s.c_in} -> {s.c_out}", "",
                     _sn_text(block), count_parameters(block)))
        for (_, ctx), m in zip(s.context, context):
            rows.append(("", "", "", _context_text(ctx, s.c_out), _sn_text(m), count_parameters(m)))
    r = model.resolution
    rows.append(("output", f"{r}x{r}", f"{G.stages[-1].c_out} -> 3", "BN, ReLU, 3x3 conv, tanh",
                 _sn_text(G.out_conv), count_parameters(G.out_bn) + count_parameters(G.out_conv)))
    n_g = count_parameters(G)
    bn = (f"batch norm: eps {model.bn_eps:g}, running statistics with momentum {model.bn_momentum:g} "
          f"(decay {1 - model.bn_momentum:g}), {model.bn_running_var} variance")
    out += _table(rows) + [f"  {bn}", f"G parameters: {n_g}", ""]

    out.append(f"Discriminator: {model.resolution} px, ch = {model.D.ch}, "
               f"{'projection over ' + classes if model.n_classes else classes}, init = {model.init}")
    rows = []
    for k, (s, block, context) in enumerate(zip(D.stages, D.blocks, D.context)):
        kind = "down-block" if s.resample else "block"
        rows.append((f"{kind} {k + 1}", f"{s.resolution}x{s.resolution}", f"{s.c_in} -> {s.c_out}", "",
                     _sn_text(block), count_parameters(block)))
        for (_, ctx), m in zip(s.context, context):
            rows.append(("", "", "", _context_text(ctx, s.c_out), _sn_text(m), count_parameters(m)))
    head = f"ReLU, sum pool, linear {D.stages[-1].c_out} -> 1"
    if D.embed is not None:
        head += f" + projection {model.n_classes} x {D.stages[-1].c_out}"
    embed = D.embed or nn.Module()
    rows.append(("output", "1", f"{D.stages[-1].c_out} -> 1", head, _sn_text(D.linear, embed),
                 count_parameters(D.linear) + count_parameters(embed)))
    n_d = count_parameters(D)
    out += _table(rows) + [f"D parameters: {n_d}"]
    out.append(f"(G {_millions(n_g)}, D {_millions(n_d)}; the paper's HamGAN: G 42.6 M, D 39.5 M)")
    out.append("spectral norm: 'at most 1' = W / max(1, sigma), 'exact' = W / sigma (model.sn)")
    return "\n".join(out) + "\n"
