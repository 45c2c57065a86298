"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for training on small data.

The discriminator sees every image, real or generated, through the same random transform
policy: colour (brightness, saturation, contrast), translation (up to 1/8 of the side, zero
padding) and cutout (a square of half the side set to zero). Every operation is differentiable
in the image, so the generator's gradient passes through it.

Randomness is a function of (seed, row of the global batch) only: `DiffAugment(x, seed, rows)`
draws the parameters of all `total` rows of the global batch from `seed` on the CPU and applies
those of rows first .. first + b - 1 to its b images. Processes and accumulation rounds holding
different rows of one global batch therefore apply exactly what one process holding all of
them would, and a resumed run (seeds derived from (seed, step, phase)) repeats them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .errors import HamganError
from .fast import to_device
from .rng import derive_seed

OPERATIONS = ("color", "translation", "cutout")  # applied in this order, as the original
TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """'translation,cutout' or ['color', ...] -> the operations in application order.
    '' / 'none' -> () (no augmentation); unknown names are an error."""
    names = [p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy)]
    names = [p for p in names if p and p != "none"]
    unknown = sorted(set(names) - set(OPERATIONS))
    if unknown:
        raise HamganError(f"augmentation policy {policy!r}: unknown operation(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(OPERATIONS)} (comma-separated), or 'none'")
    return tuple(op for op in OPERATIONS if op in names)


class DiffAugment:
    """Callable: x (b, 3, H, W) float in [-1, 1] -> augmented x (same shape, dtype, device).

    `rows` = (first, total): these are rows first .. first + b - 1 of a global batch of `total`
    (default: the whole batch, (0, b))."""

    def __init__(self, policy: str | Sequence[str]):
        self.ops = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.ops) or 'none'})"

    def __call__(self, x: torch.Tensor, seed: int, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        if not self.ops:
            return x
        b, _, h, w = x.shape
        first, total = rows if rows is not None else (0, b)
        if first < 0 or first + b > total:
            raise ValueError(f"rows {first}..{first + b - 1} lie outside a global batch of {total}")
        params = draw_parameters(self.ops, total, h, w, seed)
        mine = {k: to_device(v[first:first + b], x.device) for k, v in params.items()}
        for op in self.ops:
            x = _APPLY[op](x, mine)
        return x


def draw_parameters(ops: Sequence[str], total: int, h: int, w: int, seed: int) -> dict[str, torch.Tensor]:
    """The random parameters of `total` rows, on the CPU, in a fixed order whatever the
    policy's subset is (each operation has its own generator), so adding an operation does
    not change the others' draws."""
    out = {}
    for op in ops:
        g = torch.Generator().manual_seed(derive_seed(seed, op))
        if op == "color":  # brightness shift, saturation and contrast factors, as DiffAugment draws them
            u = torch.rand(total, 3, generator=g)
            out["brightness"], out["saturation"], out["contrast"] = u[:, 0] - 0.5, u[:, 1] * 2, u[:, 2] + 0.5
        elif op == "translation":
            sy, sx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
            out["shift_y"] = torch.randint(-sy, sy + 1, (total,), generator=g)
            out["shift_x"] = torch.randint(-sx, sx + 1, (total,), generator=g)
        elif op == "cutout":
            ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
            # centre of the square, anywhere so that at least a quarter of it stays inside
            out["cut_y"] = torch.randint(0, h + (1 - ch % 2), (total,), generator=g)
            out["cut_x"] = torch.randint(0, w + (1 - cw % 2), (total,), generator=g)
    return out


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(b,) parameters -> (b, 1, 1, 1) in x's dtype."""
    return v.to(x.dtype).view(-1, 1, 1, 1)


def _color(x: torch.Tensor, p: dict) -> torch.Tensor:
    x = x + _view(p["brightness"], x)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _view(p["saturation"], x) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _view(p["contrast"], x) + mean


def _translation(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Shift each image by (shift_y, shift_x) pixels; what moves in is zero."""
    b, c, h, w = x.shape
    # the largest shift draw_parameters can draw, not the largest drawn: reading that back would
    # make the step wait for the GPU (the output is the same for any pad that covers the shifts)
    pad = max(int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5))
    padded = F.pad(x, [pad, pad, pad, pad])
    iy = (torch.arange(h, device=x.device)[None, :] - p["shift_y"][:, None] + pad)  # (b, h)
    ix = (torch.arange(w, device=x.device)[None, :] - p["shift_x"][:, None] + pad)  # (b, w)
    out = padded[torch.arange(b, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                 iy[:, None, :, None], ix[:, None, None, :]]
    return out.contiguous(memory_format=_memory_format(x))


def _cutout(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Zero a square of half the side centred at (cut_y, cut_x) (clipped at the border)."""
    b, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    ys = torch.arange(h, device=x.device)[None, :] - (p["cut_y"][:, None] - ch // 2)  # (b, h): offset into the square
    xs = torch.arange(w, device=x.device)[None, :] - (p["cut_x"][:, None] - cw // 2)
    inside = ((ys >= 0) & (ys < ch))[:, :, None] & ((xs >= 0) & (xs < cw))[:, None, :]  # (b, h, w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _memory_format(x: torch.Tensor):
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


_APPLY = {"color": _color, "translation": _translation, "cutout": _cutout}
