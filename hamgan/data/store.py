"""The prepared store: a folder written by `hamgan prepare`, read through a memory map.

    images.npy        uint8 (N, H, W, 3), plain .npy: `np.load(path, mmap_mode="r")` works too
    labels.npy        int64 (N,), indices into class_names
    class_names.json  sorted class names (ImageFolder sub-folders, or the --classes list)
    files.txt         source file of each image, relative to the source folder (N lines)
    report.txt        unreadable images that were skipped (with the reason), ignored files
    manifest.json     source, size, resize filter, counts, version; written last
    progress.json     only while `prepare` is unfinished
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import HamganError
from .transforms import hwc_to_chw
from .prepare import IMAGES, LABELS, CLASSES, MANIFEST, PROGRESS, STORE_FORMAT, STORE_VERSION


def is_store(path: str | os.PathLike) -> bool:
    """A folder that is (or is becoming) a prepared store."""
    path = Path(path)
    return (path / MANIFEST).is_file() or (path / PROGRESS).is_file()


class PreparedStore(torch.utils.data.Dataset):
    """Random access to a prepared store without reading it into RAM.

    `store[i]` -> (uint8 (3, H, W), int label); `store.get_batch(indices)` -> (uint8 (b, 3, H, W),
    int64 (b,)) in one gather; `.images` is the (N, H, W, 3) uint8 memmap, `.labels` (N,) int64,
    `.class_names`, `.manifest`. Safe to send to DataLoader workers: the memmap is reopened in
    each process rather than pickled."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if (self.path / PROGRESS).is_file() and not (self.path / MANIFEST).is_file():
            raise HamganError(f"{self.path}: `hamgan prepare` has not finished writing this store; "
                              f"re-run the same prepare command to complete it")
        if not (self.path / MANIFEST).is_file():
            raise HamganError(f"{self.path}: not a prepared store (no {MANIFEST})")
        self.manifest = json.loads((self.path / MANIFEST).read_text())
        if self.manifest.get("format") != STORE_FORMAT:
            raise HamganError(f"{self.path}/{MANIFEST}: not a hamgan store (format {self.manifest.get('format')!r})")
        if self.manifest.get("version", 0) > STORE_VERSION:
            raise HamganError(f"{self.path}: store version {self.manifest['version']} is newer than this "
                              f"hamgan understands ({STORE_VERSION}); upgrade hamgan")
        self.class_names = json.loads((self.path / CLASSES).read_text())
        self.labels = np.load(self.path / LABELS)
        self._images = None
        n, size = self.manifest["count"], self.manifest["size"]
        shape = self.images.shape
        if shape != (n, size, size, 3) or self.images.dtype != np.uint8 or len(self.labels) != n:
            raise HamganError(f"{self.path}: damaged store: images {shape} {self.images.dtype}, "
                              f"{len(self.labels)} labels, manifest says {n} images of {size} px")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise HamganError(f"{self.path}: damaged store: labels outside 0..{len(self.class_names) - 1}")

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / IMAGES, mmap_mode="r")
        return self._images

    @property
    def resolution(self) -> int:
        return self.manifest["size"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return hwc_to_chw(self.images[i]), int(self.labels[i])

    def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """indices (b,) -> (uint8 (b, 3, H, W), int64 (b,)); reads in file order."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        gathered = np.empty((len(indices),) + self.images.shape[1:], np.uint8)
        gathered[order] = self.images[indices[order]]
        return hwc_to_chw(gathered), torch.from_numpy(self.labels[indices].astype(np.int64))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = None  # pickling a memmap would copy the whole store
        return state

    def __repr__(self) -> str:
        return (f"PreparedStore({str(self.path)!r}: {len(self)} images, {self.resolution} px, "
                f"{len(self.class_names)} classes)")
