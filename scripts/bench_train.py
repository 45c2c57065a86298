"""Training throughput of a preset (default HamGAN-baby, 128 px) against the hardware, and where
the time goes.

    python scripts/bench_train.py [--config configs/hamgan_baby.toml] [--batch 4] [--steps 3]
                                  [--device cpu|cuda] [--variants plain,fp32,bf16,bf16-cl,bf16-cl-compile]
                                  [--accum 1] [--categories] [key=value ...]

Trains on random uint8 images with 1000 classes (the data pipeline is measured separately by
bench_data.py; here the loader only slices a pre-made tensor) with hamgan's own training step
(`hamgan.train.build` and `train_step`). Images/s come from plain steps (median, variants run
one after the other); with the model FLOP per image counted from the networks
(`hamgan.flops`), they give the FLOP/s achieved and, on a known GPU, the fraction of its dense
peak at the variant's precision. Where the time goes comes from the profiler over further
steps: the trainer's own ranges (each phase, its backward, its optimizer step) and the
forwards of G, D and the Hamburgers, marked through module hooks; on CUDA the device time of
each range, on the CPU its wall time (module hooks do not fire inside compiled graphs).
"warm-up s": the untimed first steps (compilation, cuDNN autotuning). `--categories` adds, per
variant, the time by kind of work (convolutions, batch norm, matrix products, optimiser, ...)
and the GPU's idle time.
"""
from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan.config import load_config  # noqa: E402
from hamgan.flops import compute_precision, step_flops, throughput  # noqa: E402
from hamgan.ham import Hamburger  # noqa: E402
from hamgan.train import build, train_step  # noqa: E402

VARIANTS = {  # name -> overrides; all but "plain" with the fast settings (train.fast, hamgan/fast.py)
    "plain": ["train.fast=false", "train.amp=none", "train.channels_last=false"],
    "fp32": ["train.amp=none", "train.channels_last=false"],
    "fp32-compile": ["train.amp=none", "train.channels_last=false", "train.compile=true"],
    "fp32-cl": ["train.amp=none", "train.channels_last=true"],
    "bf16": ["train.amp=bf16", "train.channels_last=false"],
    "bf16-cl": ["train.amp=bf16", "train.channels_last=true"],
    "bf16-cl-compile": ["train.amp=bf16", "train.channels_last=true", "train.compile=true"],
    "fp16-cl": ["train.amp=fp16", "train.channels_last=true"],
}
# columns: profiler range -> heading (ranges nest: the phases hold their forwards and backwards)
COLUMNS = {"G forward": "G fwd", "D forward": "D fwd", "D backward": "D-step bwd",
           "G backward": "G-step bwd (D+G)", "D optimizer": "D opt", "G optimizer": "G opt",
           "Hamburger": "Hamburgers (fwd)"}


class RandomImages:
    """n random uint8 images (3, R, R) with labels over `classes` classes."""

    def __init__(self, n: int, resolution: int, classes: int):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, resolution, resolution), dtype=torch.uint8, generator=g)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.class_names = [f"class{i:04d}" for i in range(classes)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def get_batch(self, indices):
        idx = torch.as_tensor(indices)
        return self.images[idx].clone(), self.labels[idx].clone()


def mark_forward(module: torch.nn.Module, name: str) -> None:
    """Make every forward of `module` a profiler range called `name` (through public hooks)."""
    open_ranges = []

    def enter(*_):
        open_ranges.append(record_function(name))
        open_ranges[-1].__enter__()

    def leave(*_):
        open_ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


# --categories: aten operators by the kind of work they do (first match; on CUDA by the device
# time of the kernels each launches itself, on the CPU by its own CPU time)
CATEGORIES = (
    ("convolutions", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("matrix products (NMF, breads, linear)", ("bmm", "addmm", "aten::mm", "matmul", "linear")),
    ("all-reduces (cross-replica BN, DDP)", ("nccl", "all_reduce", "allreduce")),
    ("optimisers and EMA", ("adam", "_foreach_", "lerp")),
    ("compiled graphs' kernels", ("triton", "compiled")),
    ("copies and casts", ("copy", "_to_copy", "memcpy", "contiguous", "clone")),
)


def categories(prof, device, wall_seconds: float) -> dict[str, float]:
    """Seconds of the profiled steps per kind of work, plus 'other' and, on CUDA, 'GPU idle'
    (wall time the device ran no kernel of these steps: launches, host work, waits)."""
    cuda = device.type == "cuda"
    seconds = dict.fromkeys([name for name, _ in CATEGORIES] + ["other"], 0.0)
    for e in prof.key_averages():
        if getattr(e, "device_type", None) is not None and str(e.device_type) != "DeviceType.CPU":
            continue                                       # kernels: counted through their operators
        own = (e.self_device_time_total if cuda else e.self_cpu_time_total) / 1e6
        key = e.key.lower()
        if own <= 0 or (not cuda and not key.startswith("aten::") and "compiled" not in key):
            continue                      # the CPU: operators and compiled graphs, not the ranges around them
        name = next((name for name, marks in CATEGORIES if any(m in key for m in marks)), "other")
        seconds[name] += own
    if cuda:
        seconds["GPU idle"] = max(wall_seconds - sum(seconds.values()), 0.0)
    return seconds


def run_variant(args, overrides, device, flops):
    """(seconds per step, seconds of the warm-up steps, profiler totals per range, peak GPU GiB
    or None, throughput report, seconds per kind of work or None, the run's settings)."""
    gc.collect()                      # the previous variant's networks, before measuring memory
    cfg = load_config(args.config, [f"train.batch_size={args.batch}", f"train.accum={args.accum}",
                                    "data.workers=0", *args.overrides, *overrides])
    data = RandomImages(max(64, 4 * args.batch), cfg.model.resolution, max(cfg.model.n_classes, 1))
    training, runner, _ = build(cfg, device, dataset=data)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed_step():
        sync()
        start = time.perf_counter()
        train_step(training, runner)
        sync()
        return time.perf_counter() - start

    warmup = sum(timed_step() for _ in range(args.warmup))     # compiling, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = statistics.median(timed_step() for _ in range(args.steps))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    mark_forward(training.G, "G forward")
    mark_forward(training.D, "D forward")
    for m in list(training.G.modules()) + list(training.D.modules()):
        if isinstance(m, Hamburger):
            mark_forward(m, "Hamburger")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            with record_function("step"):
                train_step(training, runner)
        sync()
    wall = time.perf_counter() - start
    attr = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    totals = {e.key: getattr(e, attr) for e in prof.key_averages()}
    kinds = categories(prof, device, wall) if args.categories else None
    report = throughput(flops, args.batch / seconds, device, training.settings.amp)
    return seconds, warmup, totals, peak, report, kinds, training.settings


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/hamgan_baby.toml")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: 4 on CPU, 256 on CUDA)")
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 2 on CUDA)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variants", default=None, help=f"comma-separated from {', '.join(VARIANTS)} "
                   "(default: plain,fp32 on CPU; plain,fp32,bf16,bf16-cl,bf16-cl-compile on CUDA)")
    p.add_argument("--categories", action="store_true", help="also the time per kind of work, per variant")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (256 if cuda else 4)
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    variants = (args.variants or ("plain,fp32,bf16,bf16-cl,bf16-cl-compile" if cuda else "plain,fp32")).split(",")
    where = torch.cuda.get_device_name(device) if cuda else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    flops = step_flops(load_config(args.config, [f"train.batch_size={args.batch}", *args.overrides]))
    print(f"# training {args.config}, global batch {args.batch} (accum {args.accum}), {device.type} ({where}), "
          f"torch {torch.__version__}, median of {args.steps} steps; model GFLOP per image counted from the "
          f"networks: " + ", ".join(f"{k} {v}" for k, v in flops.gflop_per_image().items()))
    print("| variant | s/step | images/s | TFLOP/s | % of peak | warm-up s | " + " | ".join(COLUMNS.values()) + " |"
          + (" peak GiB |" if cuda else ""))
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(COLUMNS) + ("---:|" if cuda else ""))
    kinds_of = {}
    for name in variants:
        seconds, warmup, totals, peak, report, kinds, settings = run_variant(args, VARIANTS[name], device, flops)
        whole = totals.get("step", 0.0) or 1.0
        shares = " | ".join(f"{100 * totals.get(k, 0.0) / whole:.0f}%" for k in COLUMNS)
        fraction = report.get("fraction_of_peak")
        of_peak = "-" if fraction is None else f"{100 * fraction:.1f}% of {compute_precision(settings.amp)}"
        print(f"| {name} | {seconds:.3f} | {args.batch / seconds:.1f} | {report['achieved_TFLOP_per_second']:.3g} | "
              f"{of_peak} | {warmup:.1f} | {shares} |" + (f" {peak:.1f} |" if cuda else ""))
        sys.stdout.flush()
        kinds_of[name] = kinds
    if args.categories:
        names = list(next(iter(kinds_of.values())))
        what = "GPU kernel time by operator; idle = wall - busy" if cuda else "CPU time by operator"
        print(f"\nWhere the profiled steps' time goes ({what}), % of the total:\n")
        print("| variant | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
        for name, kinds in kinds_of.items():
            total = sum(kinds.values()) or 1.0
            print(f"| {name} | " + " | ".join(f"{100 * kinds[k] / total:.0f}%" for k in names) + " |")


if __name__ == "__main__":
    main()
