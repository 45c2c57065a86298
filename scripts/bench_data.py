"""Data benchmark: `hamgan prepare` throughput and training-loader throughput.

    .venv/bin/python scripts/bench_data.py [--jpegs 400] [--store 8192] [--batches 40]

Prepare: generated JPEGs of ImageNet-like sizes (500x375 and friends, photo-like content,
quality 90) -> 128 px store, with 1 and 2 worker processes. Loader: 256-image uint8 batches
from a 128 px prepared store (page cache warm), with 0 and 2 workers, and the cost of assembling
one batch (gather + layout + flips) in one process. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan.data import ShapesDataset, build_loader, open_dataset, prepare  # noqa: E402
from hamgan.data.loader import fetch_batch  # noqa: E402
from hamgan.data.store import PreparedStore  # noqa: E402

SIZES = [(500, 375), (375, 500), (500, 333), (500, 500), (640, 480)]


def photo_like(rng, w, h) -> Image.Image:
    """Smooth colour fields, a few hard-edged blobs and sensor noise: JPEG sizes near ImageNet's
    (~100 KB at 500x375), unlike pure noise (decodes slowly) or flat colour (too fast)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.002, 0.02, 2).tolist() + [rng.uniform(0, 6.3)]
        img[..., c] = 128 + 90 * np.sin(fx * xx + ph) * np.cos(fy * yy)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 120)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_jpegs(root: Path, n: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"n{i % classes:08d}"
        d.mkdir(parents=True, exist_ok=True)
        photo_like(rng, *SIZES[i % len(SIZES)]).save(d / f"img_{i:05d}.JPEG", quality=90)


def bench_prepare(src: Path, work: Path, workers: int, size: int) -> float:
    out = work / f"store_w{workers}"
    t = time.perf_counter()
    m = prepare(src, out, size=size, workers=workers, progress=False)
    return m["count"] / (time.perf_counter() - t)


def tile_store(small: Path, out: Path, n: int) -> PreparedStore:
    """A bigger store in the documented format, made by repeating a prepared one."""
    s = PreparedStore(small)
    out.mkdir()
    reps = -(-n // len(s))
    images = np.lib.format.open_memmap(out / "images.npy", "w+", np.uint8, (n,) + s.images.shape[1:])
    for k in range(0, n, len(s)):
        images[k:k + len(s)] = s.images[:n - k]
    images.flush()
    np.save(out / "labels.npy", np.tile(s.labels, reps)[:n])
    (out / "class_names.json").write_text(json.dumps(s.class_names))
    (out / "manifest.json").write_text(json.dumps({**s.manifest, "count": n}))
    return PreparedStore(out)


def loader_rate(dataset, batch: int, workers: int, batches: int, flip: bool = False) -> float:
    loader = build_loader(dataset, batch, seed=0, workers=workers, flip=flip, pin_memory=False, drop_last=False)
    for _ in range(max(2, workers * 2)):  # start-up and prefetch are not throughput
        next(loader)
    t = time.perf_counter()
    for _ in range(batches):
        next(loader)
    rate = batches * batch / (time.perf_counter() - t)
    loader.close()
    return rate


def batch_ms(store, batch: int, reps: int = 20, flip: bool = True) -> float:
    rng = np.random.default_rng(0)
    times = []
    for _ in range(reps):
        idx = rng.choice(len(store), batch, replace=False)
        flips = rng.random(batch) < 0.5 if flip else np.zeros(batch, bool)
        t = time.perf_counter()
        fetch_batch(store, idx, flips)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jpegs", type=int, default=400, help="generated JPEGs to prepare")
    ap.add_argument("--store", type=int, default=8192, help="images in the 128 px store read by the loader")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per loader measurement")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_jpegs(tmp / "src", args.jpegs)
        kb = sum(p.stat().st_size for p in (tmp / "src").rglob("*.JPEG")) / args.jpegs / 1e3
        for w in (1, 2):
            rows.append((f"prepare {args.size} px, {w} worker{'s' * (w > 1)}",
                         f"{bench_prepare(tmp / 'src', tmp, w, args.size):.0f} images/s",
                         f"{args.jpegs} JPEGs ~500x375, {kb:.0f} KB avg"))
        store = tile_store(tmp / "store_w1", tmp / "big", args.store)
        ms = batch_ms(store, args.batch)
        rows.append((f"assemble one {args.batch}-image batch (store, 1 process)", f"{ms:.1f} ms",
                     f"{args.batch / ms * 1e3:.0f} images/s; gather + HWC->CHW + flips"))
        for w in (0, 2):
            rows.append((f"loader, prepared store {args.size} px, {w} workers",
                         f"{loader_rate(store, args.batch, w, args.batches):.0f} images/s",
                         f"batch {args.batch}, {args.store} images, page cache warm"))
        rows.append(("loader, prepared store, 2 workers, flip",
                     f"{loader_rate(store, args.batch, 2, args.batches, flip=True):.0f} images/s", ""))
        folder = open_dataset(str(tmp / "src"), args.size)
        rows.append((f"loader, ImageFolder on the fly {args.size} px, 2 workers",
                     f"{loader_rate(folder, 64, 2, 4):.0f} images/s", "decode + crop + resize per image"))
        for res in (32, 128):
            rows.append((f"loader, shapes {res} px, 2 workers",
                         f"{loader_rate(ShapesDataset(res), args.batch, 2, 8 if res == 128 else 20):.0f} images/s",
                         "procedural"))
    print(f"Machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores available; Python "
          f"{platform.python_version()}, torch {torch.__version__}, Pillow {Image.__version__}\n")
    print("| measurement | result | notes |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
