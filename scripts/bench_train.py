"""Training throughput of a preset (default HamGAN-baby, 128 px) and where the time goes.

    python scripts/bench_train.py [--config configs/hamgan_baby.toml] [--batch 4] [--steps 3]
                                  [--device cpu|cuda] [--variants fp32,bf16,bf16-cl,bf16-cl-compile]
                                  [--accum 1] [key=value ...]

Trains on random uint8 images with 1000 classes (the data pipeline is measured separately by
bench_data.py; here the loader only slices a pre-made tensor) with hamgan's own training step
(`hamgan.train.build` and `train_step`). Images/s come from plain steps. Where the time goes
comes from the profiler over further steps: the trainer's own ranges (each phase, its
backward, its optimizer step) and the forwards of G, D and the Hamburgers, marked through
module hooks; on CUDA the device time of each range, on the CPU its wall time.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan.config import load_config  # noqa: E402
from hamgan.ham import Hamburger  # noqa: E402
from hamgan.train import build, train_step  # noqa: E402

VARIANTS = {  # name -> overrides
    "fp32": [],
    "bf16": ["train.amp=bf16"],
    "bf16-cl": ["train.amp=bf16", "train.channels_last=true"],
    "bf16-cl-compile": ["train.amp=bf16", "train.channels_last=true", "train.compile=true"],
    "fp32-cl": ["train.channels_last=true"],
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


def run_variant(args, overrides, device):
    cfg = load_config(args.config, [f"train.batch_size={args.batch}", f"train.accum={args.accum}",
                                    "data.workers=0", *args.overrides, *overrides])
    data = RandomImages(max(64, 4 * args.batch), cfg.model.resolution, max(cfg.model.n_classes, 1))
    training, runner, _ = build(cfg, device, dataset=data)
    for _ in range(args.warmup):
        train_step(training, runner)

    def timed_step():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_step(training, runner)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    seconds = statistics.median(timed_step() for _ in range(args.steps))

    mark_forward(training.G, "G forward")
    mark_forward(training.D, "D forward")
    for m in list(training.G.modules()) + list(training.D.modules()):
        if isinstance(m, Hamburger):
            mark_forward(m, "Hamburger")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            with record_function("step"):
                train_step(training, runner)
    attr = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    totals = {e.key: getattr(e, attr) for e in prof.key_averages()}
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, totals, peak


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/hamgan_baby.toml")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: 4 on CPU, 256 on CUDA)")
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variants", default=None, help=f"comma-separated from {', '.join(VARIANTS)} "
                   "(default: fp32 on CPU; fp32,bf16,bf16-cl,bf16-cl-compile on CUDA)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (256 if cuda else 4)
    variants = (args.variants or ("fp32,bf16,bf16-cl,bf16-cl-compile" if cuda else "fp32")).split(",")
    where = torch.cuda.get_device_name(device) if cuda else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# training {args.config}, global batch {args.batch} (accum {args.accum}), {device.type} ({where}), "
          f"torch {torch.__version__}, median of {args.steps} steps")
    print("| variant | s/step | images/s | " + " | ".join(COLUMNS.values()) + " |" + (" peak GiB |" if cuda else ""))
    print("|---|---:|---:|" + "---:|" * len(COLUMNS) + ("---:|" if cuda else ""))
    for name in variants:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds, totals, peak = run_variant(args, VARIANTS[name], device)
        whole = totals.get("step", 0.0) or 1.0
        shares = " | ".join(f"{100 * totals.get(k, 0.0) / whole:.0f}%" for k in COLUMNS)
        print(f"| {name} | {seconds:.3f} | {args.batch / seconds:.1f} | {shares} |" + (f" {peak:.1f} |" if cuda else ""))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
