"""The classifiers behind conditional accuracy: small CNNs trained on real images, cached per data.

Conditional accuracy asks "does a sample of class c look like class c?", a question of class
fidelity, not realism (FID/KID measure that). It is answered by a classifier trained on the
real training data, so its ceiling is that classifier's accuracy on real images it did not
train on (held out from the same data): samples that look like real images of their class
score about the ceiling.

* `class`: the data's own classes, from the colour images (any data set with labels).
* `shape` (built-in shapes only): the silhouette's shape, circle / square / triangle / cross /
  ring, and nothing else. On the shapes, colour alone tells most classes apart, so a generator
  that paints a blob of the right colour scores well on `class`; this classifier is blind to
  colour by construction: it sees one channel, the per-pixel maximum over R, G, B stretched to
  [0, 1] per image (any colour of the same brightness gives the same input), trained with
  colour jitter on shapes of all 40 colour x shape pairs. A blob of the right colour therefore
  gets the same prediction in every class: chance accuracy.

Both are trained once (about a minute of CPU time for the shapes) and cached in one file keyed
by the data: a content fingerprint (class names, size, pixels and labels of evenly spaced images)
plus the recipe version. A cached file made for other data is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..atomic import atomic_write
from ..errors import HamganError

FORMAT = "hamgan-classifiers"
VERSION = 1
RECIPE = 1          # bump when the networks or their training change: old caches are then retrained
FINGERPRINT_ITEMS = 64
MAX_TRAIN = 5000    # real images a classifier trains on (a random subset of the data)
MAX_HELD_OUT = 1000  # real images held out to measure its ceiling
STEPS, BATCH = 300, 64  # training steps and batch: ~25 CPU-seconds per classifier at 32 px
SHAPE_TRAIN_CLASSES = 40  # every colour x shape pair, so no colour predicts a shape


class ClassifierCacheError(HamganError):
    """A cached classifier file that is damaged or was made for other data."""


# --------------------------------------------------------------------------- networks


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """(B, in_ch, R, R) float -> logits (B, n_out): a 3x3 conv at full resolution, then one
    stride-2 3x3 conv per halving down to 4x4 px, global average pooling, linear. 0.1 M
    parameters and 4 M multiply-adds per image at 32 px."""

    def __init__(self, in_ch: int, n_out: int, resolution: int, width: int = 16):
        super().__init__()
        layers, ch, r = _conv_bn_relu(in_ch, width), width, resolution
        while r > 4:
            out = min(2 * ch, 256)
            layers += _conv_bn_relu(ch, out, stride=2)
            ch, r = out, (r + 1) // 2
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def colour_view(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, R, R) in [0, 1] -> (B, 3, R, R) in [-1, 1]."""
    return 2 * x - 1


def silhouette_view(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, R, R) in [0, 1] -> (B, 1, R, R): the maximum over channels, stretched to [0, 1]
    per image. Two images that differ only in the hue (or overall brightness) of a shape give
    the same silhouette."""
    v = x.amax(1, keepdim=True)
    lo, hi = v.amin((2, 3), keepdim=True), v.amax((2, 3), keepdim=True)
    return (v - lo) / (hi - lo).clamp_min(1 / 255)


VIEWS = {"colour": (colour_view, 3), "silhouette": (silhouette_view, 1)}


class ImageClassifier(nn.Module):
    """Images (B, 3, R, R) in [0, 1] -> logits (B, n_out) through a view ('colour' or
    'silhouette'); `predict` takes uint8 images.

    `targets` (n_classes,) maps a class of the data to the label this classifier predicts
    (the identity for 'class', the shape kind of each class for 'shape')."""

    def __init__(self, view: str, n_out: int, resolution: int, targets: list[int]):
        super().__init__()
        self.view, self.n_out, self.resolution = view, n_out, resolution
        self.net = SmallCNN(VIEWS[view][1], n_out, resolution)
        self.register_buffer("targets", torch.tensor(targets, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(VIEWS[self.view][0](x))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, R, R) -> predicted labels (B,) on this model's device, in eval mode."""
        from ..layers import eval_mode
        with eval_mode(self):
            return self(images.to(self.targets.device).float() / 255).argmax(1)


# --------------------------------------------------------------------------- data


def data_fingerprint(dataset) -> dict:
    """What identifies a labelled data set: class names, size, image shape, and a digest of the
    pixels and labels of `FINGERPRINT_ITEMS` evenly spaced images (cheap for any size)."""
    n = len(dataset)
    h = hashlib.sha256()
    shape = None
    for i in np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ITEMS)).round().astype(np.int64)):
        image, label = dataset[int(i)]
        shape = tuple(image.shape)
        h.update(np.ascontiguousarray(image.numpy()).tobytes())
        h.update(str(int(label)).encode())
    return {"class_names": list(dataset.class_names), "count": n, "image_shape": list(shape or ()),
            "digest": h.hexdigest()[:32]}


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a seeded random split of range(n), held-out first."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    held = min(MAX_HELD_OUT, max(1, n // 10))
    return np.sort(order[held:held + MAX_TRAIN]), np.sort(order[:held])


def _load(dataset, indices: np.ndarray, desc: str, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, 3, R, R) and int64 (n,) of dataset[indices]."""
    from tqdm import tqdm

    from ..data.loader import fetch_batch
    images, labels = [], []
    with tqdm(total=len(indices), desc=desc, unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for chunk in np.array_split(indices, max(1, len(indices) // 256)):
            x, y = fetch_batch(dataset, chunk, np.zeros(len(chunk), bool))
            images.append(x)
            labels.append(y)
            bar.update(len(chunk))
    return torch.cat(images), torch.cat(labels)


# --------------------------------------------------------------------------- training


def fit(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch: int,
        lr: float = 3e-3, seed: int = 0, jitter: bool = False, device="cpu",
        progress: bool = False, desc: str = "classifier") -> ImageClassifier:
    """Train `model` on uint8 images (n, 3, R, R) with labels (n,) (already its targets) by Adam
    with a cosine schedule; random translations (DiffAugment's, 1/8 of the side), and with
    `jitter` DiffAugment's colour jitter too. Deterministic in `seed`. Returns it in eval mode."""
    from tqdm import tqdm

    from ..augment import DiffAugment
    from ..images import to_float
    from ..rng import derive_seed
    model.to(device).train()
    augment = DiffAugment("color,translation" if jitter else "translation")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    for step in tqdm(range(steps), desc=desc, unit="step", disable=not progress, dynamic_ncols=True):
        idx = torch.randint(len(images), (batch,), generator=g)
        x = augment(to_float(images[idx].to(device)), derive_seed(seed, step))
        loss = F.cross_entropy(model((x.clamp(-1, 1) + 1) / 2), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy_by_class(model: ImageClassifier, images: torch.Tensor, classes: torch.Tensor,
                      n_classes: int, batch: int = 500) -> tuple[float, list]:
    """(overall, per class) accuracy of `model` on uint8 `images` of data classes `classes`,
    counted against its targets: the classifier's ceiling when the images are held-out reals."""
    from .conditional import ClassAccuracy
    acc = ClassAccuracy(n_classes)
    for lo in range(0, len(images), batch):
        y = classes[lo:lo + batch]
        acc.update(model.predict(images[lo:lo + batch]).cpu() == model.targets.cpu()[y], y)
    return acc.result()


# --------------------------------------------------------------------------- the cached pair


@dataclass
class Classifiers:
    """The classifiers of one data set: `class` always, `shape` for the built-in shapes;
    `ceilings[name]` = (overall, per class) accuracy on held-out real images."""

    key: dict
    models: dict[str, ImageClassifier]
    ceilings: dict[str, tuple[float, list[float]]]

    @property
    def class_names(self) -> list[str]:
        return self.key["data"]["class_names"]

    def to(self, device) -> "Classifiers":
        for m in self.models.values():
            m.to(device)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        payload = {"format": FORMAT, "version": VERSION, "key": self.key,
                   "models": {name: {"view": m.view, "n_out": m.n_out, "resolution": m.resolution,
                                     "targets": m.targets.tolist(),
                                     "state": {k: v.cpu() for k, v in m.state_dict().items()}}
                              for name, m in self.models.items()},
                   "ceilings": {k: [v[0], list(v[1])] for k, v in self.ceilings.items()}}
        with atomic_write(path) as f:
            torch.save(payload, f)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, key: Optional[dict] = None) -> "Classifiers":
        """Read a cache file; with `key`, refuse one made for other data (or another recipe)."""
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            assert payload["format"] == FORMAT
        except Exception as e:
            raise ClassifierCacheError(f"{path} is damaged or not a hamgan classifier file "
                                       f"({type(e).__name__}: {e}); delete it to retrain") from None
        if key is not None and payload["key"] != key:
            diffs = [k for k in sorted(set(key) | set(payload["key"])) if key.get(k) != payload["key"].get(k)]
            raise ClassifierCacheError(
                f"{path} holds classifiers trained on other data or by another recipe (differs in "
                f"{', '.join(diffs)}): accuracies measured with them would be meaningless; delete it "
                "or point the cache elsewhere to train classifiers for this data")
        models = {}
        for name, m in payload["models"].items():
            net = ImageClassifier(m["view"], m["n_out"], m["resolution"], m["targets"])
            net.load_state_dict(m["state"])
            models[name] = net.eval()
        return cls(payload["key"], models, {k: (v[0], v[1]) for k, v in payload["ceilings"].items()})


def cache_key(dataset, seed: int) -> dict:
    """What a cached file must match: the data, and how its classifiers were trained."""
    return {"data": data_fingerprint(dataset), "recipe": [RECIPE, STEPS, BATCH, MAX_TRAIN, MAX_HELD_OUT], "seed": seed}


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    """<cache_dir>/classifiers-<n classes>c-<R>px-<hash of key>.pt"""
    data = key["data"]
    return Path(cache_dir) / f"classifiers-{len(data['class_names'])}c-{data['image_shape'][-1]}px-{_key_hash(key)}.pt"


def get_classifiers(dataset, cache_dir: str | os.PathLike, *, seed: int = 0, device="cpu",
                    progress: bool = True) -> Classifiers:
    """The classifiers of `dataset` (uint8 (3, R, R), label items with `class_names`): read from
    `cache_dir` when trained before on the same data, else trained now (and cached)."""
    from ..rng import private_rng
    key = cache_key(dataset, seed)
    path = cache_path(cache_dir, key)
    if path.is_file():
        return Classifiers.load(path, key).to(device)
    with private_rng():  # e.g. mid-training: the run's random streams stay as they were
        found = train_classifiers(dataset, seed=seed, device=device, progress=progress, key=key)
    found.save(path)
    return found.to(device)


def train_classifiers(dataset, *, seed: int = 0, device="cpu", progress: bool = True,
                      key: Optional[dict] = None) -> Classifiers:
    """Train the `class` classifier on a random subset of `dataset` (and the colour-blind
    `shape` classifier when it is the built-in shapes) and measure both on held-out images."""
    from ..data.shapes import KINDS, ShapesDataset
    n_classes = len(dataset.class_names)
    if n_classes < 2:
        raise HamganError(f"conditional accuracy needs labelled data with at least 2 classes, got {n_classes}")
    train_idx, held_idx = _split(len(dataset), seed)
    images, labels = _load(dataset, train_idx, "classifier data", progress)
    held_images, held_labels = _load(dataset, held_idx, "held-out data", progress)
    resolution = images.shape[-1]
    models, ceilings = {}, {}
    recipe = dict(steps=STEPS, batch=BATCH, seed=seed, device=device, progress=progress)
    models["class"] = fit(ImageClassifier("colour", n_classes, resolution, list(range(n_classes))), images, labels,
                          desc="class classifier", **recipe)
    if isinstance(dataset, ShapesDataset):
        kinds = [KINDS.index(kind) for kind, _ in dataset.classes]
        every_pair = ShapesDataset(resolution, SHAPE_TRAIN_CLASSES, size=len(train_idx), seed=dataset.seed + 1)
        shapes, shape_classes = _load(every_pair, np.arange(len(every_pair)), "shape data", progress)
        pair_kinds = torch.tensor([KINDS.index(kind) for kind, _ in every_pair.classes])
        models["shape"] = fit(ImageClassifier("silhouette", len(KINDS), resolution, kinds), shapes,
                              pair_kinds[shape_classes], jitter=True, desc="shape classifier", **recipe)
    for name, model in models.items():
        ceilings[name] = accuracy_by_class(model, held_images, held_labels, n_classes)
    return Classifiers(key if key is not None else cache_key(dataset, seed), models, ceilings)


def training_data(cfg, source: Optional[str] = None):
    """The labelled real data of a run (`cfg.data`, or `source` instead) for its classifiers and
    reference statistics. The procedural shapes are opened with seed 0 whatever the run's seed:
    they are one distribution, and runs of different seeds are then measured alike."""
    from dataclasses import replace

    from ..data import open_training_data
    d = cfg.data
    dataset = open_training_data(replace(cfg, data=replace(d, source=source or d.source), train=replace(cfg.train, seed=0)))
    if cfg.model.n_classes and len(dataset.class_names) != cfg.model.n_classes:
        hint = " (data.shapes_classes)" if (source or d.source) == "shapes" else ""
        raise HamganError(f"the data {source or d.source!r} has {len(dataset.class_names)} classes{hint} but the "
                          f"generator {cfg.model.n_classes}; give the data it was trained on")
    return dataset
