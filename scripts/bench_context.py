"""Hamburger (NMF) vs self-attention: forward+backward time and peak memory, side by side.

    python scripts/bench_context.py [--batch 8] [--reps 5] [--device cpu|cuda] [--threads N]

Locations: G's context block (C=256 at 32x32), D's (C=128 at 32x32), and the G widths at
64x64 (C=128) and 128x128 (C=64). Blocks are in training mode with sigma/gamma = 1 so the
whole block is differentiated. Repetitions of the variants are interleaved and the median
is reported, so slow drifts of a shared machine hit all variants alike. Peak memory is
the largest amount of tensor memory alive during one forward+backward beyond what was
alive before it (CUDA: the caching allocator's peak; CPU: the profiler's allocation
events).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan.attention import SelfAttention  # noqa: E402
from hamgan.ham import Hamburger  # noqa: E402

LOCATIONS = [  # name, channels, side, NMF rank
    ("G 32x32", 256, 32, 32),
    ("D 32x32", 128, 32, 16),
    ("64x64", 128, 64, 32),
    ("128x128", 64, 128, 32),
]


def variants(channels: int, rank: int) -> dict[str, torch.nn.Module]:
    blocks = {
        "ham NMF (K=6, one-step)": Hamburger(channels, rank=rank, steps=6),
        "attention (SDPA)": SelfAttention(channels, fused=True),
        "attention (explicit map)": SelfAttention(channels, fused=False),
    }
    for b in blocks.values():
        with torch.no_grad():
            (b.sigma if hasattr(b, "sigma") else b.gamma).fill_(1.0)
    return blocks


def step(block, x):
    block(x).square().mean().backward()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_once(block, x, device) -> float:
    sync(device)
    t = time.perf_counter()
    step(block, x)
    sync(device)
    return time.perf_counter() - t


def peak_bytes(block, x, device) -> int:
    """Peak tensor memory of one forward+backward above what was alive before it."""
    block.zero_grad(set_to_none=True)
    x.grad = None
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(block, x)
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(block, x)
    # op events carry the memory they allocated net of what they freed; "[memory]" events are
    # frees outside any op. Replayed in time order, the running sum is the live memory.
    events = sorted((e for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--only", default="", help="comma-separated location names to run")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    where = f"{torch.cuda.get_device_name(device)}" if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# context blocks, batch {args.batch}, {device.type} ({where}), torch {torch.__version__}, "
          f"median of {args.reps}")
    print("| location | block | fwd+bwd ms | peak MiB | time vs SDPA attn | memory vs SDPA attn |"
          " time vs explicit attn | memory vs explicit attn |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    for name, channels, side, rank in LOCATIONS:
        if only and name not in only:
            continue
        blocks = {k: b.to(device) for k, b in variants(channels, rank).items()}
        x = torch.randn(args.batch, channels, side, side, device=device, requires_grad=True)
        for b in blocks.values():  # warm-up
            step(b, x)
        times = {k: [] for k in blocks}
        for _ in range(args.reps):
            for k, b in blocks.items():
                times[k].append(time_once(b, x, device))
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        mem = {k: peak_bytes(b, x, device) / 2**20 for k, b in blocks.items()}
        sdpa, expl = "attention (SDPA)", "attention (explicit map)"
        for k in blocks:
            print(f"| {name} (C={channels}) | {k} | {ms[k]:.1f} | {mem[k]:.1f} | {ms[k] / ms[sdpa]:.2f} | "
                  f"{mem[k] / mem[sdpa]:.2f} | {ms[k] / ms[expl]:.2f} | {mem[k] / mem[expl]:.2f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
