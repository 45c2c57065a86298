"""Training throughput of a preset (default HamGAN-baby, 128 px) and where the time goes.

    python scripts/bench_train.py [--config configs/hamgan_baby.toml] [--batch 4] [--steps 3]
                                  [--device cpu|cuda] [--variants fp32,bf16,bf16-cl,bf16-cl-compile]
                                  [--accum 1] [key=value ...]

Trains on random uint8 images with 1000 classes (the data pipeline is measured separately by
bench_data.py; here the loader only slices a pre-made tensor) with the real trainer, and
times, per step: the forwards of G and D, the backward of the D step (through D) and of the G
step (through D into G), the Hamburgers alone (forward and backward, part of the former), the
two optimizer steps, fetching the data, and the rest (losses, EMA, latents). Times come from
hooks (with a CUDA synchronisation at each hook on the GPU, which costs some throughput:
images/s are measured in separate, hook-free steps).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan.config import load_config  # noqa: E402
from hamgan.data import build_loader  # noqa: E402
from hamgan.ham import Hamburger  # noqa: E402
from hamgan.train import Trainer  # noqa: E402

VARIANTS = {  # name -> overrides
    "fp32": [],
    "bf16": ["train.amp=bf16"],
    "bf16-cl": ["train.amp=bf16", "train.channels_last=true"],
    "bf16-cl-compile": ["train.amp=bf16", "train.channels_last=true", "train.compile=true"],
    "fp32-cl": ["train.channels_last=true"],
}


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


class Timers:
    """Wall time of named intervals, summed; on CUDA every boundary synchronises."""

    def __init__(self, device):
        self.device, self.total, self.open = device, defaultdict(float), {}

    def _now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self, name):
        self.open[name] = self._now()

    def stop(self, name):
        if name in self.open:
            self.total[name] += self._now() - self.open.pop(name)

    def watch_forward(self, module, name):
        module.register_forward_pre_hook(lambda *a: self.start(name))
        module.register_forward_hook(lambda *a: self.stop(name))

    def watch_backward(self, module, name):
        """Only for modules whose inputs require gradients (else the hooks fire at once)."""
        module.register_full_backward_pre_hook(lambda *a: self.start(name))
        module.register_full_backward_hook(lambda *a: self.stop(name))

    def wrap(self, fn, name):
        def timed(*args, **kwargs):
            self.start(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(name)
        return timed

    def watch_optimizer(self, opt, name):
        opt.register_step_pre_hook(lambda *a: self.start(name))
        opt.register_step_post_hook(lambda *a: self.stop(name))


def run_variant(args, overrides, device):
    cfg = load_config(args.config, [f"train.batch_size={args.batch}", f"train.accum={args.accum}",
                                    "data.workers=0", *args.overrides, *overrides])
    data = RandomImages(max(64, 4 * args.batch), cfg.model.resolution, max(cfg.model.n_classes, 1))
    trainer = Trainer(cfg, None, device, dataset=data, progress=False)
    loader = build_loader(data, trainer.split.per, seed=0, accum=trainer.split.rounds, workers=0)
    for _ in range(args.warmup):
        trainer.train_step(loader)

    step_times = []
    for _ in range(args.steps):
        t = Timers(device)
        t.start("step")
        trainer.train_step(loader)
        t.stop("step")
        step_times.append(t.total["step"])
    seconds = statistics.median(step_times)

    timers = Timers(device)
    timers.watch_forward(trainer.G, "G forward")
    timers.watch_forward(trainer.D, "D forward")
    for m in list(trainer.G.modules()) + list(trainer.D.modules()):
        if isinstance(m, Hamburger):
            timers.watch_forward(m, "Hamburgers")
            timers.watch_backward(m, "Hamburgers")
    timers.watch_optimizer(trainer.opt_G, "optimizers")
    timers.watch_optimizer(trainer.opt_D, "optimizers")
    phase = {"name": None}

    def in_phase(fn, name):
        def run(*args):
            phase["name"] = name
            return fn(*args)
        return run

    trainer._d_step = in_phase(trainer._d_step, "D step backward")     # instance attributes shadow
    trainer._g_step = in_phase(trainer._g_step, "G step backward")     # the methods train_step calls
    backward = torch.Tensor.backward
    torch.Tensor.backward = lambda self, *a, **k: timers.wrap(backward, phase["name"])(self, *a, **k)
    timed_loader = type("TimedLoader", (), {"__next__": lambda self: timers.wrap(next, "data")(loader)})()
    try:
        timers.start("hooked steps")
        for _ in range(args.steps):
            trainer.train_step(timed_loader)
        timers.stop("hooked steps")
    finally:
        torch.Tensor.backward = backward
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, timers.total, peak


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
    columns = ("G forward", "D forward", "D step backward", "G step backward", "optimizers", "data")
    print("| variant | s/step | images/s | G fwd | D fwd | D-step bwd | G-step bwd (D+G) | optimizers | data | other "
          "| Hamburgers (fwd+bwd) |" + (" peak GiB |" if cuda else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else ""))
    for name in variants:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds, t, peak = run_variant(args, VARIANTS[name], device)
        total = t["hooked steps"]
        other = total - sum(t.get(k, 0.0) for k in columns)
        share = lambda v: f"{100 * v / total:.0f}%"  # noqa: E731
        row = (f"| {name} | {seconds:.3f} | {args.batch / seconds:.1f} | "
               + " | ".join(share(t.get(k, 0.0)) for k in columns)
               + f" | {share(other)} | {share(t.get('Hamburgers', 0.0))} |")
        print(row + (f" {peak:.1f} |" if cuda else ""))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
