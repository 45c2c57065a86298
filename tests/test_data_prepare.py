"""`hamgan prepare`, the prepared store, ImageFolder layouts and `open_dataset` (issue 4)."""
import errno
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.cli import main
from hamgan.data import ImageFolderDataset, PreparedStore, ShapesDataset, open_dataset, prepare
from hamgan.data.prepare import STOP_ENV, SimulatedCrash
from hamgan.data.transforms import center_crop_box, crop_resize, tf_crop_and_resize
from hamgan.errors import HamganError

from .test_runlock import holder

SIZE = 32
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
CLASSES = ["Zebra", "n01_cat", "n02_dog"]  # sorted: upper case first
GOOD = {  # class -> readable images
    "Zebra": ["small.png", "stripes.png"],
    "n01_cat": ["cmyk.jpg", "palette.png", "rgba.png", "sub/nested.png", "tall.png"],
    "n02_dog": ["big.jpg", "grey.png", "grey16.png", "wide.png"],
}
BAD = ["Zebra/fake.jpg", "n01_cat/truncated.jpg"]


def solid(w, h, colour, mode="RGB"):
    return Image.new(mode, (w, h), colour)


def split_pattern(w, h):
    """w x h RGB: blue outside the centred square; inside, left half red, right half green."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:] = BLUE
    left, top, right, bottom = center_crop_box(w, h)
    mid = (left + right) // 2
    a[top:bottom, left:mid] = RED
    a[top:bottom, mid:right] = GREEN
    return Image.fromarray(a)


def stripes(w, h):
    """Vertical 1-px stripes, every third column white: mean 85, aliases badly without a low-pass."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, ::3] = 255
    return Image.fromarray(a)


def make_tree(root: Path) -> Path:
    """The tiny ImageFolder of issue 4: PNG and JPEG, sizes and aspect ratios, colour modes,
    a truncated JPEG, a text file named .jpg and a non-image file."""
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir(parents=True)
    z, cat, dog = (root / c for c in CLASSES)
    stripes(240, 240).save(z / "stripes.png")
    solid(20, 30, (10, 200, 30)).save(z / "small.png")  # smaller than SIZE: upscaled
    (z / "fake.jpg").write_text("this is not a JPEG")
    split_pattern(100, 300).save(cat / "tall.png")
    solid(90, 70, (0, 255, 255, 0), "CMYK").save(cat / "cmyk.jpg", quality=95)  # CMYK red
    solid(50, 50, (0, 0, 255, 128), "RGBA").save(cat / "rgba.png")
    pal = solid(40, 60, 1, "P")
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.save(cat / "palette.png", transparency=0)
    (cat / "sub").mkdir()
    solid(64, 48, (7, 8, 9)).save(cat / "sub" / "nested.png")
    noise = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    noise.save(cat / "truncated.jpg")
    data = (cat / "truncated.jpg").read_bytes()
    (cat / "truncated.jpg").write_bytes(data[: len(data) * 2 // 5])
    (cat / "notes.txt").write_text("not an image")
    split_pattern(300, 100).save(dog / "wide.png")
    Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(dog / "big.jpg")
    Image.fromarray(rng.integers(0, 255, (120, 80), dtype=np.uint8), "L").save(dog / "grey.png")
    Image.fromarray(np.full((64, 64), 32768, np.uint16)).save(dog / "grey16.png")  # 16-bit mid grey
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("imagefolder") / "train")


@pytest.fixture(scope="module")
def store_dir(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("stores") / "full"
    prepare(tree, out, size=SIZE, workers=0, progress=False)
    return out


def row(store, path):
    """The stored image (H, W, 3) of source file `path` (relative to the tree)."""
    files = (store.path / "files.txt").read_text().splitlines()
    return np.asarray(store.images[files.index(path)])


def store_bytes(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# --------------------------------------------------------------------------- the store


def test_store_shape_dtype_and_labels_follow_sorted_class_names(store_dir):
    store = PreparedStore(store_dir)
    n = sum(len(v) for v in GOOD.values())
    assert store.images.shape == (n, SIZE, SIZE, 3) and store.images.dtype == np.uint8
    assert isinstance(store.images, np.memmap)
    assert np.load(store_dir / "images.npy", mmap_mode="r").shape == (n, SIZE, SIZE, 3)  # plain .npy
    assert store.class_names == CLASSES == sorted(CLASSES)
    files = (store_dir / "files.txt").read_text().splitlines()
    assert files == [f"{c}/{f}" for c in CLASSES for f in GOOD[c]]
    assert store.labels.tolist() == [CLASSES.index(f.split("/")[0]) for f in files]
    assert store.manifest["class_counts"] == {c: len(GOOD[c]) for c in CLASSES}
    assert (store.manifest["size"], store.manifest["resize"], store.manifest["count"]) == (SIZE, "tf_bilinear", n)
    image, label = store[5]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8 and label == store.labels[5]
    assert torch.equal(image, torch.from_numpy(np.array(store.images[5])).permute(2, 0, 1))
    batch, labels = store.get_batch([7, 2, 9])
    assert torch.equal(batch, torch.stack([store[i][0] for i in (7, 2, 9)]))
    assert labels.dtype == torch.int64 and labels.tolist() == [store[i][1] for i in (7, 2, 9)]


def test_known_pattern_is_centre_cropped_then_resized(store_dir):
    store = PreparedStore(store_dir)
    for path in ("n02_dog/wide.png", "n01_cat/tall.png"):
        img = row(store, path)
        assert img[..., 2].max() == 0, f"{path}: the blue margins outside the centred square leaked in"
        # left of the square's middle pure red, right pure green (13 of 32 px from each side)
        assert (img[:, :13] == RED).all() and (img[:, -13:] == GREEN).all(), path
    assert center_crop_box(301, 100) == (100, 0, 200, 100)
    assert center_crop_box(100, 301) == (0, 100, 100, 200)
    # exactly TF's crop_and_resize (the default), rounded, nothing else
    ref = crop_and_resize_reference(np.asarray(split_pattern(300, 100)), SIZE)
    assert np.abs(row(store, "n02_dog/wide.png") - np.floor(ref + 0.5)).max() <= 1
    assert (row(store, "Zebra/small.png") == (10, 200, 30)).all()  # upscaled small image
    # with resize='bilinear': exactly crop -> PIL bilinear resize, nothing else
    src = split_pattern(300, 100).crop((100, 0, 200, 100)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    assert np.array_equal(crop_resize(split_pattern(300, 100), SIZE, "bilinear"), np.asarray(src))


def crop_and_resize_reference(a: np.ndarray, size: int) -> np.ndarray:
    """The official input pipeline's tf.image.crop_and_resize, written out pixel by pixel in
    float64 from its definition: the box [y1, x1, y2, x2] of the centred square with ceil
    offsets, normalised by (H - 1, W - 1); output (i, j) reads in_y = y1 (H - 1) + i (y2 - y1)
    (H - 1) / (size - 1) (in_x likewise), bilinear between floor and ceil of each."""
    h, w = a.shape[:2]
    side = min(h, w)
    top, left = np.ceil(0.5 * (h - side)), np.ceil(0.5 * (w - side))
    y1, x1, y2, x2 = top / (h - 1), left / (w - 1), (top + side - 1) / (h - 1), (left + side - 1) / (w - 1)
    a = a.astype(np.float64)
    out = np.zeros((size, size, a.shape[2]))
    for i in range(size):
        in_y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (size - 1)
        t, b, fy = int(np.floor(in_y)), int(np.ceil(in_y)), in_y - np.floor(in_y)
        for j in range(size):
            in_x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (size - 1)
            l, r, fx = int(np.floor(in_x)), int(np.ceil(in_x)), in_x - np.floor(in_x)
            upper = a[t, l] + (a[t, r] - a[t, l]) * fx
            lower = a[b, l] + (a[b, r] - a[b, l]) * fx
            out[i, j] = upper + (lower - upper) * fy
    return out


@pytest.mark.parametrize("h, w", [(37, 52), (37, 49), (52, 37), (49, 37), (40, 40), (9, 12)],
                         ids=["landscape-odd", "landscape-even", "portrait-odd", "portrait-even", "square", "upscale"])
def test_tf_bilinear_is_crop_and_resize(h, w):
    """Odd and even margins, portrait and landscape, down- and upscaling: the floats equal the
    reference to float32 rounding, the stored uint8 are those floats rounded."""
    a = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = crop_and_resize_reference(a, 16)
    ours = tf_crop_and_resize(a, 16)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    stored = crop_resize(Image.fromarray(a), 16, "tf_bilinear")
    assert stored.dtype == np.uint8 and np.abs(stored - np.floor(ref + 0.5)).max() <= 1
    assert (stored == np.floor(ref + 0.5)).mean() > 0.99
    # corners are the square's corner pixels: the extra pixel of an odd margin is top/left
    top, left = -(-(h - min(h, w)) // 2), -(-(w - min(h, w)) // 2)
    side = min(h, w)
    np.testing.assert_array_equal(ours[0, 0], a[top, left])
    np.testing.assert_array_equal(ours[-1, -1], a[top + side - 1, left + side - 1])


def test_tf_bilinear_is_not_antialiased():
    """Point sampling keeps 1-px stripes as stripes (a PIL filter would average them to grey)."""
    out = crop_resize(stripes(241, 241), SIZE, "tf_bilinear").astype(float)
    assert out.std() > 50


@pytest.mark.parametrize("resize", ["bilinear", "lanczos", "box"])
def test_resize_is_antialiased(resize):
    out = crop_resize(stripes(240, 240), SIZE, resize).astype(float)
    # a low-pass filter turns the stripes into near-flat grey 85; point sampling keeps 0 and 255
    assert abs(out.mean() - 85) < 3 and out.std() < 15, (out.mean(), out.std())
    aliased = np.asarray(stripes(240, 240).resize((SIZE, SIZE), Image.Resampling.NEAREST), float)
    assert aliased.std() > 50


def test_colour_modes_become_rgb(store_dir):
    store = PreparedStore(store_dir)
    grey = row(store, "n02_dog/grey.png")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert np.abs(row(store, "n02_dog/grey16.png").astype(int) - 128).max() <= 1  # scaled, not clipped
    assert np.abs(row(store, "n01_cat/cmyk.jpg").astype(int) - RED).max() <= 8
    assert (row(store, "n01_cat/rgba.png") == BLUE).all()
    assert (row(store, "n01_cat/palette.png") == (200, 100, 50)).all()


def test_unreadable_files_are_skipped_counted_and_reported(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    assert manifest["skipped"] == 2 and manifest["skipped_files"] == BAD
    assert manifest["candidates"] == manifest["count"] + 2
    report = (store_dir / "report.txt").read_text()
    assert "Zebra/fake.jpg\tUnidentifiedImageError" in report
    assert "n01_cat/truncated.jpg\tOSError" in report and "truncated" in report
    assert "n01_cat/notes.txt" in report  # ignored non-image file is listed too
    files = (store_dir / "files.txt").read_text()
    assert "fake" not in files and "truncated" not in files and "notes" not in files


# --------------------------------------------------------------------------- resuming


def test_interrupted_prepare_resumes_to_an_identical_store(tree, store_dir, tmp_path):
    out = tmp_path / "resumed"
    # crash twice: images written after the last progress record are redone on resume
    with pytest.raises(SimulatedCrash):
        prepare(tree, out, size=SIZE, workers=2, progress=False, checkpoint_every=2, _stop_after=5)
    with pytest.raises(HamganError, match="not finished"):
        open_dataset(str(out), SIZE)
    assert json.loads((out / "progress.json").read_text())["done"] == 4
    with pytest.raises(SimulatedCrash):
        prepare(tree, out, size=SIZE, workers=0, progress=False, checkpoint_every=3, _stop_after=5)
    prepare(tree, out, size=SIZE, workers=2, progress=False)
    assert store_bytes(out) == store_bytes(store_dir)
    assert not (out / "progress.json").exists()


@pytest.mark.parametrize("where", ["images", "record"])
def test_a_full_disk_stops_prepare_and_the_same_command_continues(where, tree, store_dir, tmp_path, monkeypatch):
    """ENOSPC while flushing the memory-mapped images or writing the progress record: a
    WriteError naming the file and the free space, no temporary file; once there is space
    again the same call finishes an identical store."""
    import hamgan.atomic
    out, calls = tmp_path / "full", []
    real_flush = np.memmap.flush

    def flush(self):
        calls.append(1)
        if where == "images" and len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush(self)

    def open_(path, *args, **kwargs):
        if where == "record" and ".progress.json.tmp" in str(path) and len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, *args, **kwargs)
    monkeypatch.setattr(np.memmap, "flush", flush)
    monkeypatch.setattr(hamgan.atomic, "open", open_, raising=False)
    name = "images.npy" if where == "images" else "progress.json"
    with pytest.raises(HamganError, match=rf"cannot write {out / name}: No space left on device \(.* free\)"):
        prepare(tree, out, size=SIZE, workers=0, progress=False, checkpoint_every=2)
    assert json.loads((out / "progress.json").read_text())["done"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "progress.json"]   # no temporary, no lock
    monkeypatch.undo()
    prepare(tree, out, size=SIZE, workers=0, progress=False)
    assert store_bytes(out) == store_bytes(store_dir)


def test_killed_cli_prepare_resumes_to_an_identical_store(tree, store_dir, tmp_path):
    out = tmp_path / "killed"
    args = ["prepare", "--src", str(tree), "--out", str(out), "--size", str(SIZE), "--workers", "1", "--no-progress"]
    env = {**os.environ, STOP_ENV: "7"}
    proc = subprocess.run([sys.executable, "-m", "hamgan", *args], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == -9, proc.stderr  # SIGKILL mid-run
    assert (out / "progress.json").exists() and not (out / "manifest.json").exists()
    assert main(args) == 0
    assert store_bytes(out) == store_bytes(store_dir)


def test_rerun_of_finished_store_is_noop_other_options_refused(tree, store_dir, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in store_dir.iterdir()}
    prepare(tree, store_dir, size=SIZE, workers=0, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in store_dir.iterdir()} == before
    with pytest.raises(HamganError, match="another source or options"):
        prepare(tree, store_dir, size=16, workers=0, progress=False)
    busy = tmp_path / "busy"
    with pytest.raises(SimulatedCrash):
        prepare(tree, busy, size=SIZE, workers=0, progress=False, _stop_after=1)
    other = holder(busy)  # as if a second prepare were running
    try:
        with pytest.raises(HamganError, match=rf"in use by hamgan train \(pid {other.pid} on host"):
            prepare(tree, busy, size=SIZE, workers=0, progress=False)
    finally:
        other.communicate("")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    with pytest.raises(HamganError, match="not empty"):
        prepare(tree, foreign, size=SIZE, workers=0, progress=False)


# --------------------------------------------------------------------------- layout errors


def layout(root: Path, files: list[str]) -> Path:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        if f.endswith("/"):
            (root / f).mkdir()
            continue
        solid(8, 8, RED).save(root / f) if f.endswith(".png") else (root / f).write_text("x")
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.parametrize("files, message", [
    ([], "no class sub-folders"),
    (["notes.txt"], "no class sub-folders"),
    (["a.png", "b.png"], "2 images directly under the root"),
    (["loose.png", "cat/1.png", "dog/1.png"], "1 images directly under the root"),
    (["only/1.png", "only/2.png"], "only one class sub-folder"),
    (["cat/1.png", "dog/readme.txt", "eel/"], "2 class folders contain no images ('dog', 'eel')"),
    (None, "no such folder"),
])
def test_layout_errors_are_reported_before_any_work(tmp_path, capsys, files, message):
    root = tmp_path / "src" if files is None else layout(tmp_path / "src", files)
    out = tmp_path / "out"
    assert main(["prepare", "--src", str(root), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err
    assert not out.exists()
    if files is not None:  # training straight from the folder says the same
        with pytest.raises(HamganError, match=re.escape(message)):
            open_dataset(str(root), SIZE)


def test_imagenet_with_wrong_class_count_warns(tmp_path):
    root = layout(tmp_path / "ImageNet" / "train", ["n01/a.png", "n02/b.png"])
    with pytest.warns(UserWarning, match="looks like ImageNet but has 2 classes"):
        prepare(root, tmp_path / "out", size=8, workers=0, progress=False)


# --------------------------------------------------------------------------- flat folder + label file


def test_flat_folder_with_label_file(store_dir, tmp_path):
    val = layout(tmp_path / "val", ["v1.png", "v2.png", "v3.png", "v4.png", "extra.png"])
    labels = tmp_path / "LOC_val_solution.csv"
    # Kaggle style: header, ids without extension, label = first word of the second field
    labels.write_text("ImageId,PredictionString\nv3,n02_dog 1 2 3 4\nv1,Zebra 5 6 7 8\n"
                      "v2,n01_cat 0 0 1 1\n# a comment\n\nv4.png,n02_dog\n")
    with pytest.warns(UserWarning, match="1 images have no line"):
        m = prepare(val, tmp_path / "valstore", size=8, workers=0, progress=False, label_file=labels,
                    classes=store_dir)
    s = PreparedStore(tmp_path / "valstore")
    assert s.class_names == CLASSES and m["count"] == 4
    assert (s.path / "files.txt").read_text().split() == ["v1.png", "v2.png", "v3.png", "v4.png"]
    assert s.labels.tolist() == [0, 1, 2, 2]
    # integer labels index the given class list
    ints = tmp_path / "val.txt"
    ints.write_text("v1.png 2\nv2.png 0\n")
    with pytest.warns(UserWarning):
        prepare(val, tmp_path / "ints", size=8, workers=0, progress=False, label_file=ints, classes=CLASSES)
    assert PreparedStore(tmp_path / "ints").labels.tolist() == [2, 0]


@pytest.mark.parametrize("text, message", [
    ("v1.png cat\nmissing.png dog\n", "1 listed images are not in"),
    ("v1.png cat\nv1.png dog\n", "listed twice"),
    ("v1.png cat\nv2.png 7\n", "neither class names nor indices"),
    ("v1.png\n", "expected '<file> <label>'"),
])
def test_label_file_errors(tmp_path, text, message):
    val = layout(tmp_path / "val", ["v1.png", "v2.png"])
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(HamganError, match=message):
        prepare(val, tmp_path / "out", size=8, workers=0, progress=False, label_file=tmp_path / "labels.txt",
                classes=["cat", "dog"])
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- open_dataset


def test_open_dataset_dispatch_and_on_the_fly_folder_matches_store(tree, store_dir):
    shapes = open_dataset("shapes", 16, n_classes=4, size=20)
    assert isinstance(shapes, ShapesDataset) and len(shapes) == 20 and len(shapes.class_names) == 4
    store = open_dataset(str(store_dir), SIZE)
    assert isinstance(store, PreparedStore)
    with pytest.raises(HamganError, match="holds 32 px images but the model is 64 px"):
        open_dataset(str(store_dir), 64)
    folder = open_dataset(str(tree), SIZE)
    assert isinstance(folder, ImageFolderDataset) and folder.class_names == store.class_names
    files = folder.listing.files
    for path in ("n02_dog/wide.png", "n01_cat/cmyk.jpg", "n02_dog/grey16.png", "Zebra/stripes.png"):
        image, label = folder[files.index(path)]
        assert image.dtype == torch.uint8 and image.shape == (3, SIZE, SIZE)
        assert np.array_equal(image.permute(1, 2, 0).numpy(), row(store, path))
        assert label == CLASSES.index(path.split("/")[0])
    with pytest.raises(HamganError, match="truncated.jpg"):
        folder[files.index("n01_cat/truncated.jpg")]
    with pytest.raises(HamganError, match="no such folder"):
        open_dataset(str(tree / "nope"), SIZE)


def test_store_pickles_without_its_images(store_dir):
    store = PreparedStore(store_dir)
    store.images  # opened
    blob = pickle.dumps(store)
    assert len(blob) < 10_000  # the memmap is reopened in the worker, not copied
    clone = pickle.loads(blob)
    assert torch.equal(clone[3][0], store[3][0])
