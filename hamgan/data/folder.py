"""Image folders: listing and validating their layout, and the on-the-fly ImageFolder dataset.

Two layouts are understood:

* class sub-folders (ImageFolder): ``ROOT/<class name>/**/<image>``. Classes are the sorted
  sub-folder names (Python string order, as torchvision); files inside a class are found
  recursively and sorted by relative path.
* a flat folder plus a label file (e.g. the ImageNet validation split): ``ROOT/<image>`` and a
  text file with one image per line, ``<file> <label>``, see `read_label_file`.

Any layout mistake raises `LayoutError` before any image is decoded, because the usual failure
of other codebases (every image silently gets label 0) costs a whole training run.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import HamganError
from .transforms import check_resize, hwc_to_chw, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


class LayoutError(HamganError):
    """An image folder whose layout cannot be used (raised before any work)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class Listing:
    """The images of a folder, in the order they are stored: `files[i]` (path relative to
    `root`, '/'-separated) has label `labels[i]`, an index into `class_names`."""

    root: Path
    class_names: list[str]
    files: list[str]
    labels: list[int]
    ignored: list[str] = field(default_factory=list)  # non-image files that were left out

    def fingerprint(self) -> str:
        """Hash of classes, files and labels: a resumed `prepare` must see the same listing."""
        h = hashlib.sha256()
        for name in self.class_names:
            h.update(f"c\t{name}\n".encode("utf-8", "surrogateescape"))
        for f, y in zip(self.files, self.labels):
            h.update(f"{f}\t{y}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = [0] * len(self.class_names)
        for y in self.labels:
            counts[y] += 1
        return dict(zip(self.class_names, counts))


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _examples(names, k: int = 5) -> str:
    names = list(names)
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(repr(n) for n in names[:k]) + more


def _check_root(root: Path) -> None:
    if not root.exists():
        raise LayoutError(f"{root}: no such folder")
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder (expected an image folder with one sub-folder per class)")


def _walk_images(folder: Path) -> tuple[list[str], list[str]]:
    """(images, other files) under `folder`, recursively, sorted, relative '/'-separated paths."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        rel = Path(dirpath).relative_to(folder)
        for name in filenames:
            if not _visible(name):
                continue
            path = (rel / name).as_posix()
            (images if is_image_name(name) else others).append(path)
    return sorted(images), sorted(others)


def warn_if_not_imagenet(root: Path, n_classes: int) -> None:
    """A folder called ImageNet with != 1000 classes is usually the wrong level of the tree."""
    if "imagenet" in str(root).lower() and n_classes != 1000:
        warnings.warn(f"{root} looks like ImageNet but has {n_classes} classes, not 1000: is --src "
                      "the folder whose sub-folders are the classes (e.g. .../train)?", stacklevel=3)


def scan_class_folders(root: str | os.PathLike) -> Listing:
    """List an ImageFolder tree ``root/<class>/**/<image>`` and validate it.

    Raises `LayoutError` for: a missing root, images directly under the root, no class
    sub-folders, fewer than 2 classes, a class without images."""
    root = Path(root)
    _check_root(root)
    entries = sorted(e for e in os.listdir(root) if _visible(e))
    subdirs = [e for e in entries if (root / e).is_dir()]
    loose = [e for e in entries if (root / e).is_file() and is_image_name(e)]
    if loose:
        raise LayoutError(
            f"{root}: {len(loose)} images directly under the root ({_examples(loose, 3)}); expected one "
            f"sub-folder per class (ROOT/CLASS/IMAGE). For a flat folder (e.g. ImageNet val) pass a "
            f"label file with --labels")
    if not subdirs:
        raise LayoutError(f"{root}: no class sub-folders; expected one sub-folder per class "
                          f"(ROOT/CLASS/IMAGE)")
    if len(subdirs) < 2:
        raise LayoutError(f"{root}: only one class sub-folder ({subdirs[0]!r}); a class-conditional "
                          f"dataset needs at least 2 classes. Is {root / subdirs[0]} the right root?")
    files, labels, ignored, empty = [], [], [], []
    for y, name in enumerate(subdirs):
        images, others = _walk_images(root / name)
        if not images:
            empty.append(name)
        files += [f"{name}/{p}" for p in images]
        labels += [y] * len(images)
        ignored += [f"{name}/{p}" for p in others]
    if empty:
        raise LayoutError(f"{root}: {len(empty)} class folders contain no images ({_examples(empty)}); "
                          f"image extensions are {', '.join(IMAGE_EXTENSIONS)}")
    warn_if_not_imagenet(root, len(subdirs))
    return Listing(root, subdirs, files, labels, ignored)


def read_class_names(source: str | os.PathLike) -> list[str]:
    """A class list from a prepared store (its class_names.json), an ImageFolder tree (its
    sub-folders) or a text file with one class name per line."""
    source = Path(source)
    if (source / "class_names.json").is_file():
        import json
        return json.loads((source / "class_names.json").read_text())
    if source.is_dir():
        return scan_class_folders(source).class_names
    if source.is_file():
        names = [ln.strip() for ln in source.read_text().splitlines()]
        return [n for n in names if n and not n.startswith("#")]
    raise LayoutError(f"--classes {source}: no such file or folder")


_HEADER_WORDS = {"imageid", "image", "filename", "file", "path", "name"}


def read_label_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Parse a label file into [(file, label token)].

    Format: one image per line, ``<file> <label>`` separated by whitespace or a comma; `<file>`
    is relative to the image folder and may omit its extension; `<label>` is a class name
    (e.g. a WordNet id ``n01440764``) or a 0-based class index. Further fields are ignored, so
    Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``) works as is. Blank lines,
    ``#`` comments and a header line (``ImageId,...``, ``filename ...``) are skipped."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"label file {path}: no such file")
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in re.split(r"[,\s]+", line) if f]
        if n == 1 and fields[0].lower() in _HEADER_WORDS:
            continue
        if len(fields) < 2:
            raise LayoutError(f"{path}:{n}: expected '<file> <label>', got {line!r} (a file of bare labels, "
                              f"like the devkit's ground truth, must be paired with file names first)")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise LayoutError(f"label file {path} lists no images")
    return pairs


def scan_labelled_folder(root: str | os.PathLike, label_file: str | os.PathLike,
                         class_names: list[str] | None = None) -> Listing:
    """List a flat image folder whose labels come from `label_file` (see `read_label_file`).

    `class_names`: the class list the labels index (e.g. the train store's, so that train and
    val agree); default: the sorted distinct names in the file (integer labels need it, or
    classes are named '0', '1', ...). Files are stored in sorted order. Raises `LayoutError` for
    listed files that do not exist, duplicates, unknown classes or out-of-range indices."""
    root = Path(root)
    _check_root(root)
    pairs = read_label_file(label_file)
    images, others = _walk_images(root)
    by_stem: dict[str, list[str]] = {}
    for f in images:
        by_stem.setdefault(f.rsplit(".", 1)[0], []).append(f)
    present = set(images)

    resolved, missing, dup, seen = [], [], [], set()
    for name, token in pairs:
        candidates = [name] if name in present else by_stem.get(name, [])
        f = candidates[0] if len(candidates) == 1 else None  # a stem matching 2 files is ambiguous
        if f is None:
            missing.append(name)
        elif f in seen:
            dup.append(name)
        else:
            seen.add(f)
            resolved.append((f, token))
    if missing:
        raise LayoutError(f"{label_file}: {len(missing)} listed images are not in {root} ({_examples(missing)})")
    if dup:
        raise LayoutError(f"{label_file}: {len(dup)} images are listed twice ({_examples(dup)})")

    tokens = [t for _, t in resolved]
    numeric = all(t.isdigit() for t in tokens)
    if class_names is None:
        if numeric:
            k = max(int(t) for t in tokens) + 1
            class_names = [str(i) for i in range(k)]
            warnings.warn(f"{label_file}: integer labels without --classes; classes are named 0..{k - 1}. "
                          f"Pass --classes (e.g. the train store) so that indices mean the same classes",
                          stacklevel=2)
        else:
            class_names = sorted(set(tokens))
    index = {c: i for i, c in enumerate(class_names)}
    labels, bad = [], []
    for t in tokens:
        y = index.get(t)
        if y is None and t.isdigit() and int(t) < len(class_names):
            y = int(t)
        if y is None:
            bad.append(t)
        labels.append(y)
    if bad:
        raise LayoutError(f"{label_file}: {len(bad)} labels are neither class names nor indices < "
                          f"{len(class_names)} ({_examples(sorted(set(bad)))})")
    if len(class_names) < 2:
        raise LayoutError(f"{label_file}: only {len(class_names)} class; at least 2 are needed")
    order = sorted(range(len(resolved)), key=lambda i: resolved[i][0])
    unlabelled = len(images) - len(resolved)
    if unlabelled:
        warnings.warn(f"{root}: {unlabelled} images have no line in {label_file} and are left out", stacklevel=2)
    warn_if_not_imagenet(root, len(class_names))
    return Listing(root, list(class_names), [resolved[i][0] for i in order], [labels[i] for i in order],
                   others + [f for f in images if f not in seen])


class ImageFolderDataset(torch.utils.data.Dataset):
    """Train directly from an ImageFolder tree: files decoded and transformed on the fly with
    the same crop and resize as `hamgan prepare`.

    Items: (uint8 (3, resolution, resolution), int label). An unreadable file raises
    `HamganError` naming it (`hamgan prepare` skips such files instead)."""

    def __init__(self, root: str | os.PathLike, resolution: int, resize: str = "tf_bilinear"):
        check_resize(resize, "data.resize")
        self.listing = scan_class_folders(root)
        self.root = self.listing.root
        self.resolution, self.resize = resolution, resize
        self.class_names = self.listing.class_names
        self.labels = self.listing.labels

    def __len__(self) -> int:
        return len(self.listing.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.root / self.listing.files[i]
        try:
            array = load_image(path, self.resolution, self.resize)
        except Exception as e:
            raise HamganError(f"cannot read image {path}: {e} (remove it, or run `hamgan prepare`, "
                              f"which skips unreadable images)") from e
        return hwc_to_chw(array), self.labels[i]
