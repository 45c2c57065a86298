"""The one image transform of the project (REFERENCE §3), shared by `hamgan prepare`, the
on-the-fly ImageFolder and reference statistics, so that all produce the same pixels: any PIL
image -> RGB -> largest centred square -> `size` x `size` -> uint8 (size, size, 3).

Resize methods (`RESIZES`):

- ``tf_bilinear`` (default; the official run's pipeline): TF's ``crop_and_resize`` of the
  centred square, whose offsets are ``ceil((H - side) / 2)`` and ``ceil((W - side) / 2)`` (an
  odd margin puts the extra pixel top/left): bilinear point sampling of size x size positions
  spaced evenly from the square's first to its last pixel centre, no antialiasing. TF computes
  it in float32 and the official input pipeline keeps the floats; `tf_crop_and_resize` returns
  them, `crop_resize` rounds them to the nearest uint8 for stores and loaders.
- ``bilinear``, ``lanczos``, ``box``: PIL's `Image.resize` of the centred square (odd margins
  put the extra pixel right/bottom). When shrinking, PIL widens the filter support by the scale
  factor, i.e. it is antialiased (torchvision's ``resize(..., antialias=True)`` on PIL images):
  a smoother image than the official one. The crop is taken explicitly before resizing:
  ``resize(box=...)`` would let the filter read pixels from outside the square.

EXIF orientation is ignored, as torchvision's ImageFolder and TF's decode_jpeg do. The JPEG
decoder is PIL's (libjpeg-turbo, accurate integer IDCT); TF's default IDCT differs by a level or
two on some pixels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..errors import HamganError

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX}
RESIZES = ("tf_bilinear", *RESAMPLE)


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
    """(left, top, right, bottom) of the largest centred square as PIL crops it; odd margins put
    the extra pixel on the right/bottom."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def check_resize(resize: str, what: str = "resize") -> None:
    if resize not in RESIZES:
        raise HamganError(f"{what} must be one of {', '.join(RESIZES)}, got {resize!r}")


def _sample_points(start: int, side: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """crop_and_resize's positions along one axis: `size` points from pixel `start` to pixel
    `start + side - 1` (the centre for size 1) -> (lower index, upper index, float32 weight of
    the upper one), all (size,)."""
    if size > 1:
        pos = start + np.arange(size) * ((side - 1) / (size - 1))
    else:
        pos = np.full(1, start + (side - 1) / 2)
    lower = np.floor(pos).astype(np.int64)
    return lower, np.ceil(pos).astype(np.int64), (pos - lower).astype(np.float32)


def tf_crop_and_resize(array: np.ndarray, size: int) -> np.ndarray:
    """uint8 or float (H, W, C) -> float32 (size, size, C) in the input's range: TF's
    crop_and_resize of the centred square with ceil offsets (the official input pipeline)."""
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = math.ceil((h - side) / 2), math.ceil((w - side) / 2)
    y0, y1, wy = _sample_points(top, side, size)
    x0, x1, wx = _sample_points(left, side, size)
    # the four neighbours of every output pixel (size, size, C), gathered (rows, then columns:
    # np.take is several times faster than 2-d fancy indexing) before any conversion
    upper_rows, lower_rows = np.take(array, y0, axis=0), np.take(array, y1, axis=0)
    tl, tr = (np.take(upper_rows, x, axis=1).astype(np.float32) for x in (x0, x1))
    bl, br = (np.take(lower_rows, x, axis=1).astype(np.float32) for x in (x0, x1))
    # TF's order of operations: along x on the upper and the lower row, then along y
    wx = wx[None, :, None]
    upper = tl + (tr - tl) * wx
    lower = bl + (br - bl) * wx
    return upper + (lower - upper) * wy[:, None, None]


def round_to_uint8(array: np.ndarray) -> np.ndarray:
    """float in [0, 255] -> nearest uint8 (halves up, as `hamgan.images.to_uint8` rounds)."""
    return np.floor(np.clip(array, 0, 255) + 0.5).astype(np.uint8)


def crop_resize(img: Image.Image, size: int, resize: str = "tf_bilinear", quantize: bool = True) -> np.ndarray:
    """PIL image of any mode and shape -> uint8 array (size, size, 3); with ``quantize=False``
    (``tf_bilinear`` only) the float32 values in [0, 255] before rounding."""
    check_resize(resize)
    img = to_rgb(img)
    if resize == "tf_bilinear":
        out = tf_crop_and_resize(np.asarray(img, dtype=np.uint8), size)
        return round_to_uint8(out) if quantize else out
    if not quantize:
        raise ValueError(f"resize {resize!r} makes uint8 images; only 'tf_bilinear' has float output")
    img = img.crop(center_crop_box(*img.size))
    if img.size != (size, size):
        img = img.resize((size, size), RESAMPLE[resize])
    return np.asarray(img, dtype=np.uint8)


def load_image(path, size: int, resize: str = "tf_bilinear", quantize: bool = True) -> np.ndarray:
    """Decode an image file fully (truncated files raise) -> `crop_resize`'s (size, size, 3).

    Raises OSError / PIL errors / ValueError for unreadable files."""
    with Image.open(path) as img:
        img.load()
        return crop_resize(img, size, resize, quantize)


def hwc_to_chw(array: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) array -> contiguous uint8 tensor (..., 3, H, W).

    Copied one channel at a time: for uint8, torch's permute().contiguous() and numpy's
    transpose copy are several times slower (8 ms for one 128 px image in torch)."""
    out = np.empty(array.shape[:-3] + (array.shape[-1],) + array.shape[-3:-1], dtype=array.dtype)
    for c in range(array.shape[-1]):
        out[..., c, :, :] = array[..., c]
    return torch.from_numpy(out)
