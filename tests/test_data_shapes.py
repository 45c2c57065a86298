"""The procedural `shapes` dataset: deterministic, any size, and its classes really differ."""
import time

import numpy as np
import pytest
import torch

from hamgan.data import ShapesDataset
from hamgan.data.shapes import COLOURS, KINDS
from hamgan.errors import HamganError


def shape_mask(image):
    """Shape pixels: the shapes are bright (a channel > 150), backgrounds dark (< 76)."""
    return image.numpy().max(0) > 120


def silhouette(image):
    """Rotation-, scale- and position-free shape features: (moment of inertia / area^2,
    squared farthest distance / area) of the mask."""
    ys, xs = np.nonzero(shape_mask(image))
    r2 = (ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2
    return np.array([r2.sum() / len(ys) ** 2, r2.max() / len(ys)])


def test_deterministic_in_seed_and_index_and_independent_of_size():
    a, b = ShapesDataset(32, seed=0), ShapesDataset(32, seed=0, size=50)
    for i in (0, 7, 49):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    other = ShapesDataset(32, seed=1)
    assert not torch.equal(a[7][0], other[7][0])
    assert not torch.equal(a[0][0], a[10][0])  # same class, different image
    x, y = a[3]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and isinstance(y, int)
    assert ShapesDataset(16)[0][0].shape == (3, 16, 16) and ShapesDataset(128)[0][0].shape == (3, 128, 128)
    with pytest.raises(IndexError):
        a[len(a)]


def test_labels_are_balanced_and_class_names_distinct():
    d = ShapesDataset(16, n_classes=40, size=400)
    assert [d[i][1] for i in range(80)] == [i % 40 for i in range(80)]
    assert len(set(d.class_names)) == 40 and d.class_names[:2] == ["red circle", "green square"]
    for bad in (1, 41):
        with pytest.raises(HamganError, match="n_classes"):
            ShapesDataset(16, n_classes=bad)


def test_colour_follows_the_class():
    d = ShapesDataset(32, n_classes=16)
    names, palette = list(COLOURS), np.array(list(COLOURS.values()), float)
    for i in range(64):
        x, y = d[i]
        mean = x.numpy()[:, shape_mask(x)].mean(1)
        nearest = names[np.argmin(((palette * 0.9 - mean) ** 2).sum(1))]
        assert nearest == d.classes[y][1], (i, y, mean)


def test_shape_follows_the_class():
    """A nearest-centroid rule on silhouette features, fitted on 100 images, names the shape
    kind of 100 others: the kinds are genuinely different shapes, not only colours."""
    d = ShapesDataset(64, n_classes=10)
    feats = np.array([silhouette(d[i][0]) for i in range(200)])
    kinds = np.array([KINDS.index(d.classes[d[i][1]][0]) for i in range(200)])
    scale = feats.std(0)
    centroids = np.array([feats[:100][kinds[:100] == k].mean(0) for k in range(len(KINDS))]) / scale
    guess = np.argmin(((feats[100:, None] / scale - centroids) ** 2).sum(-1), axis=1)
    assert (guess == kinds[100:]).mean() >= 0.97


def test_generation_is_cheap():
    d = ShapesDataset(32)
    t = time.perf_counter()
    for i in range(200):
        d[i]
    per_image = (time.perf_counter() - t) / 200
    assert per_image < 0.005, f"{per_image * 1e3:.2f} ms per 32 px image"
