"""Architecture tables as data, and the validated stage plans of G and D built from them.

Channel multipliers (channels = ch * multiplier) per image resolution, after SAGAN (TF-GAN)
and BigGAN-PyTorch:

- G: one multiplier per resolution 4, 8, ..., R: the 4x4 tensor made from z, then the output
  of each 2x up-block. At 128 px, ch = 64: 1024 (4x4) -> 1024, 512, 256, 128, 64 (128x128).
- D: one multiplier per down-block output. Blocks halve the resolution until `d_bottom`; any
  further blocks keep it. At 128 px: 64 (64x64), 128 (32x32), 256, 512, 1024 (4x4), 1024 (4x4).

A context block ``at = r`` follows the block whose output is r x r (in D the first such block).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ContextBlock, ConfigError, ModelConfig, NetConfig


@dataclass(frozen=True)
class Arch:
    g: tuple[int, ...]
    d: tuple[int, ...]
    d_bottom: int


ARCHS: dict[int, Arch] = {
    32: Arch(g=(4, 4, 4, 4), d=(4, 4, 4, 4), d_bottom=8),
    64: Arch(g=(16, 16, 8, 4, 2), d=(1, 2, 4, 8, 16), d_bottom=4),
    128: Arch(g=(16, 16, 8, 4, 2, 1), d=(1, 2, 4, 8, 16, 16), d_bottom=4),
    256: Arch(g=(16, 16, 8, 8, 4, 2, 1), d=(1, 2, 4, 8, 8, 16, 16), d_bottom=4),
}


@dataclass(frozen=True)
class Stage:
    """One residual block and the context blocks after it (with their index in the config list)."""

    resolution: int                                   # side of the block's output, px
    c_in: int
    c_out: int
    resample: bool                                    # up (G) / down (D) by 2
    context: tuple[tuple[int, ContextBlock], ...] = ()


def _arch(model: ModelConfig) -> Arch:
    if model.resolution not in ARCHS:
        raise ConfigError(f"model.resolution = {model.resolution}: no architecture table for it; "
                          f"choose one of {', '.join(map(str, ARCHS))}")
    return ARCHS[model.resolution]


def _multipliers(net: NetConfig, default: tuple[int, ...], where: str) -> list[int]:
    if not (isinstance(net.ch, int) and net.ch >= 1):
        raise ConfigError(f"{where}.ch = {net.ch!r}: the base width must be an integer >= 1")
    mults = list(net.multipliers) or list(default)
    bad = [m for m in mults if not (isinstance(m, int) and m >= 1)]
    if bad:
        raise ConfigError(f"{where}.multipliers = {mults}: every multiplier must be an integer >= 1")
    return mults


def _check_fit(ctx: ContextBlock, channels: int, where: str) -> None:
    """A context block must fit the `channels` of the stage it follows: a Hamburger's groups
    divide them and its rank is at most the dimension D it decomposes (a rank-R decomposition
    of D-dimensional columns is low-rank only for R <= D); attention needs a multiple of 8."""
    at = f"at {ctx.at} px the network has {channels} channels"
    if ctx.block == "attn":
        if channels % 8:
            raise ConfigError(f"{where}.block = 'attn': self-attention needs a multiple of 8 channels, but {at}; "
                              f"change the width (ch) or the multipliers")
        return
    if channels % ctx.groups:
        raise ConfigError(f"{where}.groups = {ctx.groups}: must divide the channels, but {at}")
    dim = ctx.dim or channels // ctx.groups
    if ctx.rank > dim:
        raise ConfigError(f"{where}.rank = {ctx.rank}: must be at most D = {dim} (dim, or channels / groups: "
                          f"{at}); lower the rank or the groups")


def _place_context(stages: list[Stage], context: list[ContextBlock], where: str) -> list[Stage]:
    """Attach each context block to the first stage whose output has its resolution, and check
    that it fits the channels there."""
    placed = [list() for _ in stages]
    for i, ctx in enumerate(context):
        index = next((k for k, s in enumerate(stages) if s.resolution == ctx.at), None)
        if index is None:
            have = sorted({s.resolution for s in stages})
            raise ConfigError(f"{where}.context[{i}].at = {ctx.at}: this network has no block with "
                              f"{ctx.at}x{ctx.at} output; block outputs are {', '.join(map(str, have))} px")
        _check_fit(ctx, stages[index].c_out, f"{where}.context[{i}]")
        placed[index].append((i, ctx))
    return [Stage(s.resolution, s.c_in, s.c_out, s.resample, tuple(p)) for s, p in zip(stages, placed)]


def generator_stages(model: ModelConfig) -> list[Stage]:
    """G's up-blocks for `model`: stage k maps 2^(k+2) px to 2^(k+3) px."""
    arch = _arch(model)
    mults = _multipliers(model.G, arch.g, "model.G")
    n_blocks = int(math.log2(model.resolution // 4))
    if len(mults) != n_blocks + 1:
        raise ConfigError(f"model.G.multipliers = {mults}: a {model.resolution} px generator needs "
                          f"{n_blocks + 1} multipliers (4x4 input, then {n_blocks} up-block outputs), "
                          f"e.g. {list(arch.g)}")
    ch = model.G.ch
    stages = [Stage(4 * 2 ** (k + 1), ch * mults[k], ch * mults[k + 1], True) for k in range(n_blocks)]
    return _place_context(stages, model.G.context, "model.G")


def discriminator_stages(model: ModelConfig) -> list[Stage]:
    """D's down-blocks for `model`; the first one reads the RGB image."""
    arch = _arch(model)
    mults = _multipliers(model.D, arch.d, "model.D")
    n_down = int(math.log2(model.resolution // arch.d_bottom))
    if len(mults) < n_down:
        raise ConfigError(f"model.D.multipliers = {mults}: a {model.resolution} px discriminator needs at "
                          f"least {n_down} down-blocks (to {arch.d_bottom}x{arch.d_bottom}), "
                          f"e.g. {list(arch.d)}")
    ch, stages, c_in, res = model.D.ch, [], 3, model.resolution
    for k, m in enumerate(mults):
        down = k < n_down
        res = res // 2 if down else res
        stages.append(Stage(res, c_in, ch * m, down))
        c_in = ch * m
    return _place_context(stages, model.D.context, "model.D")
