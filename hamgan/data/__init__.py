"""Training data: procedural shapes, ImageFolder trees, prepared stores, and the loader.

Every dataset yields (uint8 (3, H, W) image, int label) and has `class_names` and `len()`;
`build_loader` turns one into endless, sharded, resumable (uint8 (b, 3, H, W), int64 (b,))
batches. `open_dataset` picks the kind from a source string, `open_training_data` from a config.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import HamganError
from .folder import ImageFolderDataset, LayoutError, scan_class_folders, scan_labelled_folder
from .loader import InfiniteLoader, build_loader
from .prepare import prepare
from .sampler import InfiniteShardedSampler
from .shapes import ShapesDataset
from .store import PreparedStore, is_store


def open_dataset(source: str, resolution: int | None, resize: str = "tf_bilinear", **shapes_opts):
    """'shapes' -> `ShapesDataset(resolution, **shapes_opts)` (n_classes, size, seed); a folder
    written by `hamgan prepare` -> `PreparedStore` (its resolution must equal `resolution`,
    unless that is None); any other folder -> `ImageFolderDataset` (layout validated,
    transformed on the fly)."""
    if source == "shapes":
        return ShapesDataset(resolution, **shapes_opts)
    path = Path(os.path.expanduser(source))
    if not path.is_dir():
        raise HamganError(f"data.source = {source!r}: no such folder (expected 'shapes', a store written by "
                          f"`hamgan prepare`, or an ImageFolder with one sub-folder per class)")
    if is_store(path):
        store = PreparedStore(path)
        if resolution is not None and store.resolution != resolution:
            raise HamganError(f"{path} holds {store.resolution} px images but the model is {resolution} px: "
                              f"prepare the data with --size {resolution}, or set model.resolution = "
                              f"{store.resolution}")
        return store
    return ImageFolderDataset(path, resolution, resize)


def open_training_data(cfg):
    """The training data a `Config` names (data.source, with its resize and shapes settings)."""
    return open_dataset(cfg.data.source, cfg.model.resolution, resize=cfg.data.resize,
                        n_classes=cfg.data.shapes_classes, size=cfg.data.shapes_size, seed=cfg.train.seed)


__all__ = ["open_dataset", "open_training_data", "build_loader", "InfiniteLoader", "InfiniteShardedSampler", "ShapesDataset",
           "PreparedStore", "ImageFolderDataset", "LayoutError", "prepare", "scan_class_folders",
           "scan_labelled_folder", "is_store"]
