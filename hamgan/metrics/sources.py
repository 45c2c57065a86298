"""Where evaluated images come from, besides a generator: an image folder (any layout,
recursive, sorted), a prepared store, or the procedural 'shapes' data. Labels do not matter
for FID, so unlike training data a flat folder is fine here."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.folder import IMAGE_EXTENSIONS, is_image_name
from ..errors import HamganError

def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, recursively, sorted by relative path (hidden entries skipped)."""
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath) / n for n in filenames
                  if not n.startswith(".") and is_image_name(n)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


class ImageFiles(torch.utils.data.Dataset):
    """Every image under a folder. Items: (uint8 (3, H, W), 0).

    With `resolution`, images get the training data's transform (largest centred square,
    antialiased resize, `hamgan.data.transforms`), so reference statistics see the pixels the
    GAN was trained on; without it they are read as they are (e.g. exported samples)."""

    def __init__(self, root: str | os.PathLike, resolution: int | None = None, resize: str = "bilinear"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise HamganError(f"{self.root}: no such folder")
        self.files = list_images(self.root)
        if not self.files:
            raise HamganError(f"{self.root}: no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        self.resolution, self.resize = resolution, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.files[i]
        from ..data.transforms import hwc_to_chw, load_image, to_rgb
        try:
            if self.resolution is not None:
                array = load_image(path, self.resolution, self.resize)
            else:
                with Image.open(path) as img:
                    array = np.asarray(to_rgb(img), dtype=np.uint8)
        except Exception as e:
            raise HamganError(f"cannot read image {path}: {e}") from e
        return hwc_to_chw(array), 0


def open_images(source: str, resolution: int | None = None, resize: str = "bilinear"):
    """(dataset of (uint8 (3, H, W), label), description for a statistics file's provenance)
    from 'shapes' (needs `resolution`), a prepared store (`hamgan prepare`), or an image folder."""
    from ..data import is_store, open_dataset

    if source == "shapes":
        if resolution is None:
            raise HamganError("the 'shapes' data needs a resolution (--resolution)")
        return open_dataset("shapes", resolution), {"source": "shapes", "source_resize": "procedural"}
    path = Path(source).expanduser()
    if is_store(path):
        store = open_dataset(source, resolution)
        return store, {"source": str(path.resolve()), "source_resize": store.manifest.get("resize", "")}
    if path.is_dir():
        return (ImageFiles(path, resolution, resize),
                {"source": str(path.resolve()), "source_resize": resize if resolution else "none"})
    raise HamganError(f"{source}: neither 'shapes', a prepared store nor an image folder")
