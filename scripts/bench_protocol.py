#!/usr/bin/env python3
"""Which evaluation conventions move FID, and by how much (docs/BENCHMARKS.md, issue 10).

Real images (--images DIR, any folder of photos): the FID between two reference statistics of
the same images that differ in one convention only: training pixels rounded to uint8 or not
(TF crop_and_resize floats), resize to 299 by TF1's legacy bilinear or pytorch-fid's
F.interpolate, training pixels by TF's crop_and_resize or PIL's antialiased bilinear.

A checkpoint (--ckpt, e.g. the demo's): FID against reference statistics of its training data,
under the paper protocol and under each single change of convention: resize to 299, uint8
rounding of the samples, G_ema instead of the raw G, batch statistics instead of running ones in
G's batch norms. IS rows need pytorch-fid's weights with their classifier (the offline
conversion's fc is zero: IS = 1 by construction, the table says so). Plus the cost per image of
the paper protocol against the pytorch-fid protocol's (interleaved repetitions).

    python scripts/bench_protocol.py --images /data/photos --num 2000 --ckpt runs/demo/checkpoints/ckpt-000001500.pt
    python scripts/bench_protocol.py --ckpt CKPT --num 10000 --device cuda      # on a GPU machine
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamgan.checkpoint import load_generator  # noqa: E402
from hamgan.data import open_dataset  # noqa: E402
from hamgan.layers import BatchNorm2d  # noqa: E402
from hamgan.metrics.evaluate import evaluate_generator, evaluate_images  # noqa: E402
from hamgan.metrics.fid import frechet_distance  # noqa: E402
from hamgan.metrics.inception import get_extractor  # noqa: E402
from hamgan.metrics.protocol import PROTOCOLS  # noqa: E402
from hamgan.metrics.sources import ImageFiles  # noqa: E402


def fid(a, b) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def stats_of(dataset, num, resize, extractor, device, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_images(dataset, batch_size=batch, num=num, keep_features=0, device=device,
                               inception=extractor, resize=resize, progress=True, desc=resize)[0]


def real_image_rows(folder, size, num, extractor, device, batch) -> list[str]:
    """FID between statistics of the same `num` images differing in one convention."""
    s = {}
    for key, pixels, resize in [("float/tf1", dict(quantize=False), "tf1_bilinear"),
                                ("uint8/tf1", {}, "tf1_bilinear"),
                                ("float/pfid", dict(quantize=False), "pytorch_fid"),
                                ("uint8/pfid", {}, "pytorch_fid"),
                                ("pil/tf1", dict(resize="bilinear"), "tf1_bilinear")]:
        data = ImageFiles(folder, size, **{"resize": "tf_bilinear", **pixels})
        s[key] = stats_of(data, num, resize, extractor, device, batch)
    n = s["float/tf1"].count
    return [f"| uint8 rounding of the training pixels (resize to 299: TF1) | float vs rounded | {fid(s['float/tf1'], s['uint8/tf1']):.4f} |",
            f"| uint8 rounding of the training pixels (resize to 299: pytorch-fid) | float vs rounded | {fid(s['float/pfid'], s['uint8/pfid']):.4f} |",
            f"| resize to 299 (uint8 pixels) | TF1 legacy vs pytorch-fid | {fid(s['uint8/tf1'], s['uint8/pfid']):.4f} |",
            f"| training pixels (uint8, TF1 resize) | TF crop_and_resize vs PIL antialiased bilinear | {fid(s['uint8/tf1'], s['pil/tf1']):.4f} |",
            f"(each: FID between statistics of the same {n} images of {folder} at {size} px)"]


@contextlib.contextmanager
def batch_statistics(G):
    """G's batch norms normalise by each batch's statistics (training-mode BN) without updating
    their running statistics; everything else stays in eval mode."""
    bns = [m for m in G.modules() if isinstance(m, BatchNorm2d)]
    saved = [(m.training, m.momentum) for m in bns]
    forward = G.forward

    def patched(*args, **kwargs):
        for m in bns:
            m.training, m.momentum = True, 0.0
        try:
            return forward(*args, **kwargs)
        finally:
            for m, (t, mom) in zip(bns, saved):
                m.training, m.momentum = t, mom

    G.forward = patched
    try:
        yield G
    finally:
        del G.forward


def evaluate(G, protocol, num, reference, extractor, device, batch, quantize=None, resize=None, timings=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return evaluate_generator(G, num_samples=num, batch_size=batch, ref_stats=reference, device=device,
                                  inception=extractor, splits=protocol.is_splits,
                                  quantize=protocol.quantized if quantize is None else quantize,
                                  resize=protocol.resize_to_299 if resize is None else resize,
                                  timings=timings, progress=timings is None)


def checkpoint_rows(ckpt, num, extractor, device, batch, has_classifier) -> list[str]:
    G, cfg, _ = load_generator(ckpt, use_ema=False, device=device)
    G_ema = load_generator(ckpt, use_ema=True, device=device)[0]
    data = open_dataset(cfg.data.source, cfg.model.resolution, resize=cfg.data.resize,
                        n_classes=cfg.data.shapes_classes, size=cfg.data.shapes_size, seed=cfg.train.seed)
    ref = {r: stats_of(data, min(num, len(data)), r, extractor, device, batch) for r in ("tf1_bilinear", "pytorch_fid")}
    paper = PROTOCOLS["paper"]
    runs = {"paper protocol (raw G, float, TF1 resize, running BN)": evaluate(G, paper, num, ref["tf1_bilinear"], extractor, device, batch),
            "resize to 299: pytorch-fid's F.interpolate": evaluate(G, paper, num, ref["pytorch_fid"], extractor, device, batch, resize="pytorch_fid"),
            "samples rounded to uint8": evaluate(G, paper, num, ref["tf1_bilinear"], extractor, device, batch, quantize=True),
            "G_ema instead of G": evaluate(G_ema, paper, num, ref["tf1_bilinear"], extractor, device, batch)}
    with batch_statistics(G):
        runs[f"BN: batch statistics (batches of {batch}) instead of running"] = evaluate(
            G, paper, num, ref["tf1_bilinear"], extractor, device, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ten = evaluate_generator(G, num_samples=num, batch_size=batch, device=device, inception=extractor,
                                 splits=10, quantize=False, resize="tf1_bilinear", progress=True)
    base = runs["paper protocol (raw G, float, TF1 resize, running BN)"]["fid"]
    rows = [f"| {name} | {r['fid']:.3f} | {r['fid'] - base:+.3f} | {r['is_mean']:.3f} |" for name, r in runs.items()]
    rows.append(f"| IS over 10 splits instead of 1 | - | - | {ten['is_mean']:.3f} +- {ten['is_std']:.3f} |")
    note = "" if has_classifier else " IS = 1 by construction: these Inception weights have no classifier."
    rows.append(f"({num} samples of {ckpt} against {ref['tf1_bilinear'].count} images of its training data "
                f"({cfg.data.source}, {cfg.model.resolution} px); FID below 2048 samples is biased upwards: "
                f"read the differences.{note})")
    return rows


def cost_rows(ckpt, extractor, device, batch, probe, reps) -> list[str]:
    """Seconds per image of generation + Inception, paper vs pytorch-fid protocol, interleaved."""
    G = load_generator(ckpt, use_ema=False, device=device)[0]
    per = {"paper": [], "pytorch_fid": []}
    for _ in range(reps):
        for name in per:
            t: dict = {}
            start = time.perf_counter()
            evaluate(G, PROTOCOLS[name], probe, None, extractor, device, batch, timings=t)
            per[name].append((time.perf_counter() - start) / probe)
    med = {k: float(np.median(v)) for k, v in per.items()}
    return [f"| paper | {med['paper'] * 1e3:.1f} | {med['paper'] / med['pytorch_fid']:.3f} |",
            f"| pytorch_fid | {med['pytorch_fid'] * 1e3:.1f} | 1.000 |",
            f"(median of {reps} interleaved runs of {probe} images, batch {batch}, {device})"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", help="a folder of photos for the real-image rows")
    p.add_argument("--size", type=int, default=128, help="training resolution of the real-image rows")
    p.add_argument("--ckpt", help="a checkpoint for the generator rows (e.g. the demo's)")
    p.add_argument("--num", type=int, default=2000, help="images per statistic / samples per evaluation")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--probe", type=int, default=64, help="images per timed run of the cost rows")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--weights", help="Inception weights (default: the usual resolution)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    extractor = get_extractor(args.device, args.weights)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; Inception weights {extractor.digest} "
          f"({'with' if extractor.has_classifier else 'without'} classifier)\n")
    if args.images:
        print("| convention changed | values | FID between the two reference statistics |\n|---|---|---:|")
        print("\n".join(real_image_rows(args.images, args.size, args.num, extractor, args.device, args.batch)) + "\n")
    if args.ckpt:
        print("| evaluation | FID | change | IS |\n|---|---:|---:|---:|")
        print("\n".join(checkpoint_rows(args.ckpt, args.num, extractor, args.device, args.batch,
                                        extractor.has_classifier)) + "\n")
        print("| protocol | ms per image (generate + Inception) | vs pytorch_fid |\n|---|---:|---:|")
        print("\n".join(cost_rows(args.ckpt, extractor, args.device, args.batch, args.probe, args.reps)))


if __name__ == "__main__":
    main()
