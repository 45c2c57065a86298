"""Image conversions and image files shared by training, sampling and evaluation."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] (B, 3, H, W) -> uint8 (B, 3, H, W), rounded exactly as a
    saved PNG would be, so features of in-memory samples equal those of exported files."""
    return ((x.detach().float() + 1) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, 3, H, W) -> float in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: int = 255) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> one uint8 (3, H', W') sheet with `nrow` images per row."""
    b, c, h, w = images.shape
    rows = -(-b // nrow)
    sheet = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value,
                       dtype=torch.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        sheet[:, top:top + h, left:left + w] = images[i].cpu()
    return sheet


def save_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """uint8 (3, H, W) tensor -> PNG file, written atomically (`hamgan.atomic`)."""
    with atomic_write(path) as f:
        Image.fromarray(image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)).save(f, format="PNG")


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> torch.Tensor:
    """Save uint8 (B, 3, H, W) images as one PNG sheet; returns the sheet (3, H', W')."""
    sheet = make_grid(images, nrow)
    save_png(sheet, path)
    return sheet
