"""`shapes`: class-conditional procedural images, generated on demand from (seed, index).

Class k is a shape kind and a colour: kind ``k % 5`` of (circle, square, triangle, cross,
ring) and colour ``k % 8`` of (red, green, blue, yellow, magenta, cyan, orange, white), so the
40 possible classes are all distinct pairs and the first eight classes already differ in both
shape and colour: a few minutes of CPU training at 32 px gives samples whose class is plain to
the eye. Position, size, rotation, exact shade and the dark background vary per image.
Image i has label ``i % n_classes`` and depends only on (seed, i, resolution), not on `size`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import HamganError
from .transforms import hwc_to_chw

KINDS = ("circle", "square", "triangle", "cross", "ring")
COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (235, 220, 50),
           "magenta": (220, 50, 220), "cyan": (50, 220, 230), "orange": (245, 140, 30), "white": (240, 240, 240)}
MAX_CLASSES = len(KINDS) * len(COLOURS)  # 40: k -> (k % 5, k % 8) is one-to-one below lcm(5, 8)

_TRIANGLE_NORMALS = [(float(np.cos(a)), float(np.sin(a))) for a in np.radians([-90.0, 30.0, 150.0])]


def _distance(kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the shape (negative inside), shape units (radius ~1)."""
    if kind == "circle":
        return np.hypot(x, y) - 1.0
    if kind == "square":
        return np.maximum(np.abs(x), np.abs(y)) - 0.8
    if kind == "triangle":  # equilateral, circumradius 1.2
        (a, b), (c, d), (e, f) = _TRIANGLE_NORMALS
        return np.maximum(np.maximum(a * x + b * y, c * x + d * y), e * x + f * y) - 0.6
    if kind == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return np.minimum(np.maximum(ax - 0.3, ay - 1.0), np.maximum(ax - 1.0, ay - 0.3))
    if kind == "ring":
        return np.abs(np.hypot(x, y) - 0.75) - 0.25
    raise ValueError(kind)


def render(kind: str, colour: tuple[int, int, int], resolution: int, rng: np.random.Generator) -> np.ndarray:
    """One antialiased shape on a dark, slightly graded background -> uint8 (resolution, resolution, 3)."""
    scale = rng.uniform(0.4, 0.65)
    cx, cy = rng.uniform(-(0.95 - scale), 0.95 - scale, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    shade = rng.uniform(0.8, 1.0) * np.asarray(colour) + rng.uniform(-15, 15, size=3)
    bg_from, bg_to = rng.uniform(0, 60, size=3), rng.uniform(0, 60, size=3)

    t = ((np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1)  # pixel centres in [-1, 1]
    py, px = t[:, None], t[None, :]  # broadcast to (resolution, resolution) in the arithmetic below
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    x = (c * (px - cx) + s * (py - cy)) / scale
    y = (-s * (px - cx) + c * (py - cy)) / scale
    # coverage from distance in pixels: a one-pixel soft edge instead of jagged steps
    alpha = np.clip(0.5 - _distance(kind, x, y) * np.float32(scale * resolution / 2), 0, 1)[..., None]
    ramp = ((px + py) / 4 + 0.5)[..., None]  # 0 .. 1 along the diagonal
    background = bg_from.astype(np.float32) + ramp * (bg_to - bg_from).astype(np.float32)
    image = background + alpha * (shade.astype(np.float32) - background)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


class ShapesDataset(torch.utils.data.Dataset):
    """`size` procedural images at `resolution` px in `n_classes` (2..40) classes.

    Items: (uint8 (3, resolution, resolution), int label); deterministic in (seed, index)."""

    def __init__(self, resolution: int, n_classes: int = 10, size: int = 10000, seed: int = 0):
        if not 2 <= n_classes <= MAX_CLASSES:
            raise HamganError(f"shapes: n_classes must be in 2..{MAX_CLASSES}, got {n_classes}")
        if size < 1 or resolution < 4:
            raise HamganError(f"shapes: need size >= 1 and resolution >= 4, got {size}, {resolution}")
        self.resolution, self.n_classes, self.size, self.seed = resolution, n_classes, size, seed
        colours = list(COLOURS)
        self.classes = [(KINDS[k % len(KINDS)], colours[k % len(colours)]) for k in range(n_classes)]
        self.class_names = [f"{colour} {kind}" for kind, colour in self.classes]

    def __len__(self) -> int:
        return self.size

    def label(self, i: int) -> int:
        return i % self.n_classes

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.size:
            raise IndexError(i)
        y = self.label(i)
        kind, colour = self.classes[y]
        rng = np.random.default_rng([self.seed, i])
        image = render(kind, COLOURS[colour], self.resolution, rng)
        return hwc_to_chw(image), y

    def __repr__(self) -> str:
        return f"ShapesDataset({self.size} images, {self.resolution} px, {self.n_classes} classes, seed {self.seed})"
