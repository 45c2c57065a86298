#!/usr/bin/env python3
"""Benchmark of a 50k-sample evaluation: generation, Inception and statistics, timed on a short
run through `hamgan.metrics.evaluate.evaluate_generator` and scaled to --num samples, on the CPU
and on CUDA when present; plus the Frechet distance of 2048-d statistics (hamgan's routes vs
scipy's sqrtm, the formula of pytorch-fid) and of the extras (KID, precision/recall on 10k
features). Prints markdown tables.

    python scripts/bench_eval.py                      # CPU (+ CUDA when available), HamGAN-128 G
    python scripts/bench_eval.py --devices cuda --probe 5000
    python scripts/bench_eval.py --cpu-probe 32 --set model.G.ch=32    # a quicker, smaller G

Inception weights: the usual resolution (--weights, $HAMGAN_INCEPTION_WEIGHTS, hub cache); when
absent, seeded random weights (same network, same cost) are used and the table says so.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamgan.config import load_config  # noqa: E402
from hamgan.metrics.evaluate import evaluate_generator  # noqa: E402
from hamgan.metrics.fid import frechet_distance  # noqa: E402
from hamgan.metrics.inception import (InceptionFeatures, InceptionWeightsError, WEIGHTS_FILE,  # noqa: E402
                                      resolve_weights, write_random_weights)
from hamgan.models import build_generator  # noqa: E402


def inception_for(device: str, weights: str | None) -> tuple[InceptionFeatures, str]:
    try:
        path = resolve_weights(weights, download=False)
        what = "pytorch-fid file" if InceptionFeatures(path).has_classifier else "offline conversion"
    except InceptionWeightsError:
        path = write_random_weights(Path(tempfile.mkdtemp()) / WEIGHTS_FILE)
        what = "random (real weights absent)"
    return InceptionFeatures(path).to(device), what


def time_evaluation(G, extractor, device: str, probe: int, batch: int) -> dict:
    """Seconds per phase for `probe` images, after one warm-up batch (kernel selection, caches);
    no reference statistics, so 'summary' excludes the Frechet distance (timed on its own)."""
    G.to(device)
    evaluate_generator(G, num_samples=max(2, min(batch, probe)), batch_size=batch, device=device,
                       inception=extractor, progress=False)
    timings: dict = {}
    start = time.perf_counter()
    evaluate_generator(G, num_samples=probe, batch_size=batch, device=device, inception=extractor,
                       progress=False, timings=timings)
    timings["total"] = time.perf_counter() - start
    return timings


def frechet_timings(repeats: int, with_sqrtm: bool) -> dict:
    """Seconds for one 2048-d Frechet distance between full-rank covariances."""
    import scipy.linalg
    rng = np.random.default_rng(0)

    def stats():
        feats = rng.gamma(1.0, 0.3, (4096, 2048)) @ (np.eye(2048) + 0.05 * rng.standard_normal((2048, 2048)))
        return feats.mean(0), np.cov(feats, rowvar=False)

    (m1, s1), (m2, s2) = stats(), stats()

    def sqrtm_route():  # pytorch-fid's formula, sqrtm without the removed disp argument
        covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
        d = m1 - m2
        return d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)

    routes = {"hamgan auto (pivoted Cholesky + eigvalsh)": lambda: frechet_distance(m1, s1, m2, s2, "auto"),
              "hamgan eigh (symmetric square root)": lambda: frechet_distance(m1, s1, m2, s2, "eigh")}
    if with_sqrtm:
        routes["scipy sqrtm (pytorch-fid formula)"] = sqrtm_route
    out = {}
    for name, fn in routes.items():
        best, value = float("inf"), None
        for _ in range(repeats):
            start = time.perf_counter()
            value = fn()
            best = min(best, time.perf_counter() - start)
        out[name] = (best, float(value))
    return out


def extras_timings(device: str, n: int = 10_000) -> tuple[float, float]:
    """Seconds for KID (100 subsets of 1000) and precision/recall (k = 3) on n vs n features."""
    from hamgan.metrics.kid import kernel_inception_distance
    from hamgan.metrics.precision_recall import precision_recall
    rng = np.random.default_rng(0)
    a, b = (rng.gamma(1.0, 0.3, (n, 2048)).astype(np.float32) for _ in range(2))
    start = time.perf_counter()
    kernel_inception_distance(a, b, device=device)
    kid = time.perf_counter() - start
    start = time.perf_counter()
    precision_recall(a, b, device=device)
    return kid, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num", type=int, default=50_000, help="evaluation size to project to (default 50000)")
    p.add_argument("--devices", default="auto", help="comma list of cpu, cuda (default: cpu, plus cuda if present)")
    p.add_argument("--cpu-probe", type=int, default=64, help="images timed on the CPU (default 64)")
    p.add_argument("--probe", type=int, default=2000, help="images timed on CUDA (default 2000)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: 32 on CPU, 250 on CUDA)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for G")
    p.add_argument("--weights", help="Inception weights file")
    p.add_argument("--fd-repeats", type=int, default=3, help="Frechet distance timings: best of N (default 3)")
    p.add_argument("--no-sqrtm", action="store_true", help="skip timing scipy's sqrtm (slow)")
    p.add_argument("--no-extras", action="store_true", help="skip timing KID and precision/recall")
    args = p.parse_args()

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" \
        else args.devices.split(",")
    cfg = load_config(overrides=args.set)
    torch.manual_seed(0)
    G = build_generator(cfg.model)
    n_params = sum(p.numel() for p in G.parameters()) / 1e6

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print(f"generator: {cfg.model.resolution} px, G.ch {cfg.model.G.ch}, {n_params:.1f} M parameters\n")
    rows = []
    for device in devices:
        probe = args.cpu_probe if device == "cpu" else args.probe
        batch = args.batch or (32 if device == "cpu" else 250)
        extractor, weights_kind = inception_for(device, args.weights)
        t = time_evaluation(G, extractor, device, probe, batch)
        scale = args.num / probe
        # per-image phases scale with the sample count; the summary (mean/covariance, IS) is paid once
        projected = {k: t.get(k, 0.0) * scale for k in ("generate", "inception", "statistics")}
        projected["summary"] = t.get("summary", 0.0)
        total = sum(projected.values())
        for phase in ("generate", "inception", "statistics", "summary"):
            rows.append((device, phase, probe, t.get(phase, 0.0), 1e3 * t.get(phase, 0.0) / probe,
                         projected[phase], 100 * projected[phase] / total))
        rows.append((device, "total", probe, t["total"], 1e3 * t["total"] / probe, total, 100.0))
        print(f"[{device}] Inception weights: {weights_kind}; batch {batch}")

    print(f"\n| device | phase | timed images | seconds | ms / image | projected {args.num:,} (s) | share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for device, phase, probe, sec, ms, proj, share in rows:
        print(f"| {device} | {phase} | {probe} | {sec:.2f} | {ms:.1f} | {proj:,.0f} | {share:.1f}% |")

    if not args.no_extras:
        print("\n| extras, 10,000 vs 10,000 features | device | seconds |")
        print("|---|---|---:|")
        for device in devices:
            kid, pr = extras_timings(device)
            print(f"| KID, 100 subsets of 1000 (float64) | {device} | {kid:.2f} |")
            print(f"| precision/recall, k = 3 (float32) | {device} | {pr:.2f} |")

    fd = frechet_timings(args.fd_repeats, not args.no_sqrtm)
    print("\n| Frechet distance, 2048-d, float64 | seconds (best of %d) | value |" % args.fd_repeats)
    print("|---|---:|---:|")
    for name, (sec, value) in fd.items():
        print(f"| {name} | {sec:.2f} | {value:.6f} |")


if __name__ == "__main__":
    main()
