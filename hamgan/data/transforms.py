"""The one image transform of the project (REFERENCE §3), shared by `hamgan prepare` and the
on-the-fly ImageFolder so that both produce the same pixels: any PIL image -> RGB -> largest
centred square crop -> antialiased resize to `size` x `size` -> uint8 (size, size, 3).

Resizing uses PIL's `Image.resize` with BILINEAR (default, as the official run), LANCZOS or BOX.
When shrinking, PIL widens the filter support by the scale factor, i.e. it is antialiased (the
same as torchvision's `resize(..., antialias=True)` on PIL images). The crop is taken explicitly
before resizing: `resize(box=...)` would let the filter read pixels from outside the square.
EXIF orientation is ignored, as torchvision's ImageFolder does.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX}


def to_rgb(img: Image.Image) -> Image.Image:
    """Greyscale (L, I;16, I, F), CMYK, palette, alpha (RGBA, LA, PA) -> RGB.

    Alpha is dropped (as `convert("RGB")` in every PyTorch loader), not composited: the stored
    colour under transparent pixels is kept. 16-bit and float greyscale are scaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # PIL's convert("L") clips these at 255 instead of scaling; do the scaling ourselves
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            top = 1.0 if a.max() <= 1.0 else 255.0
        else:  # 16-bit files may open as "I": anything above 8 bits is taken as 16-bit
            top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        grey = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # avoids PIL's warning about palette transparency
    return img.convert("RGB")


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square; odd margins put the extra
    pixel on the right/bottom."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def crop_resize(img: Image.Image, size: int, resize: str = "bilinear") -> np.ndarray:
    """PIL image of any mode and shape -> uint8 array (size, size, 3)."""
    if resize not in RESAMPLE:
        raise ValueError(f"resize must be one of {', '.join(RESAMPLE)}, got {resize!r}")
    img = to_rgb(img)
    img = img.crop(center_crop_box(*img.size))
    if img.size != (size, size):
        img = img.resize((size, size), RESAMPLE[resize])
    return np.asarray(img, dtype=np.uint8)


def load_image(path, size: int, resize: str = "bilinear") -> np.ndarray:
    """Decode an image file fully (truncated files raise) -> uint8 (size, size, 3).

    Raises OSError / PIL errors / ValueError for unreadable files."""
    with Image.open(path) as img:
        img.load()
        return crop_resize(img, size, resize)


def hwc_to_chw(array: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) array -> contiguous uint8 tensor (..., 3, H, W).

    Copied one channel at a time: for uint8, torch's permute().contiguous() and numpy's
    transpose copy are several times slower (8 ms for one 128 px image in torch)."""
    out = np.empty(array.shape[:-3] + (array.shape[-1],) + array.shape[-3:-1], dtype=array.dtype)
    for c in range(array.shape[-1]):
        out[..., c, :, :] = array[..., c]
    return torch.from_numpy(out)
