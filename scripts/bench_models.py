"""G and D of each preset: forward and forward+backward time per image, as a markdown table.

    python scripts/bench_models.py                       # CPU: batch 2, fp32 (+ CUDA rows when present)
    python scripts/bench_models.py --device cuda --batch 128 --precision fp32 bf16

Networks in training mode, as in a training step: batch-norm statistics of the batch, one
spectral-norm power iteration per forward, fresh Hamburger bases. "forward" is G(z, y) or
D(x, y) under no_grad (how the other network's step uses it); "fwd+bwd" adds the backward of
the mean output to every parameter. Presets with identical networks (hamgan_baby and
hamgan_strong differ only in the recipe) are timed once. Repetitions of the variants are
interleaved and the median is reported, so a shared machine's drifts hit all alike.
CUDA rows use channels_last (``--no-channels-last`` to compare) and report peak memory.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hamgan.config import load_config, to_dict  # noqa: E402
from hamgan.models import build_discriminator, build_generator  # noqa: E402


def presets(names: list[str] | None) -> dict[str, object]:
    """{'hamgan_baby, hamgan_strong': model config, 'sagan': ...}: one entry per distinct network."""
    paths = sorted((ROOT / "configs").glob("*.toml"))
    if names:
        paths = [p for p in paths if p.stem in names]
    groups: dict[str, tuple[list[str], object]] = {}
    for p in paths:
        model = load_config(p).model
        key = json.dumps(to_dict(model), sort_keys=True)
        groups.setdefault(key, ([], model))[0].append(p.stem)
    return {", ".join(stems): model for stems, model in groups.values()}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Case:
    """One network at one setting; `run(kind)` times one forward or forward+backward."""

    def __init__(self, net_name, model, device, batch, precision, channels_last):
        self.device, self.precision = device, precision
        torch.manual_seed(0)
        self.G = build_generator(model).to(device)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = (self.G if net_name == "G" else build_discriminator(model).to(device)).to(memory_format=fmt)
        self.is_g = net_name == "G"
        self.z = torch.randn(batch, model.z_dim, device=device)
        self.y = torch.randint(0, max(model.n_classes, 1), (batch,), device=device) if model.n_classes else None
        if not self.is_g:
            with torch.no_grad():
                self.x = self.G(self.z, self.y).contiguous(memory_format=fmt)
            del self.G

    def _output(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
            return self.net(self.z, self.y) if self.is_g else self.net(self.x, self.y)

    def run(self, kind: str) -> float:
        self.net.zero_grad(set_to_none=True)
        sync(self.device)
        t = time.perf_counter()
        if kind == "forward":
            with torch.no_grad():
                self._output()
        else:
            self._output().float().mean().backward()
        sync(self.device)
        return time.perf_counter() - t

    def peak_mib(self) -> float:
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self.run("fwd+bwd")
        return (torch.cuda.max_memory_allocated(self.device) - base) / 2 ** 20


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device) -> str:
    text = (f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"Python {platform.python_version()}, torch {torch.__version__}")
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text


def bench(device, batch, precisions, channels_last, reps, names):
    cases = {}
    for label, model in presets(names).items():
        for net in ("G", "D"):
            for precision in precisions:
                cases[(label, net, precision)] = Case(net, model, device, batch, precision, channels_last)
    times = {(key, kind): [] for key in cases for kind in ("forward", "fwd+bwd")}
    for case in cases.values():                             # warm-up: kernels, allocator, autotuning
        case.run("forward"), case.run("fwd+bwd")
    for _ in range(reps):
        for key, case in cases.items():
            for kind in ("forward", "fwd+bwd"):
                times[(key, kind)].append(case.run(kind))
    layout = "channels_last" if channels_last else "NCHW"
    print(f"\n{device.type.upper()}: {machine(device)}; batch {batch}, {layout}, median of {reps}\n")
    mem = device.type == "cuda"
    print("| preset | net | precision | forward ms/img | fwd+bwd ms/img |" + (" peak MiB (fwd+bwd) |" if mem else ""))
    print("|---|---|---|---:|---:|" + ("---:|" if mem else ""))
    for key, case in cases.items():
        label, net, precision = key
        f, fb = (1e3 * statistics.median(times[(key, k)]) / batch for k in ("forward", "fwd+bwd"))
        row = f"| {label} | {net} | {precision} | {f:.2f} | {fb:.2f} |"
        print(row + (f" {case.peak_mib():.0f} |" if mem else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="'all': CPU, then CUDA when present (default)")
    p.add_argument("--batch", type=int, help="images per step (default: 2 on CPU, 64 on CUDA)")
    p.add_argument("--precision", nargs="+", choices=["fp32", "bf16", "fp16"],
                   help="(default: fp32 on CPU, fp32 and bf16 on CUDA)")
    p.add_argument("--no-channels-last", action="store_true", help="CUDA: keep NCHW")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--presets", nargs="+", help="config names in configs/ (default: all)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            if args.device == "cuda":
                sys.exit("CUDA is not available")
            continue
        device = torch.device(name)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        bench(device, args.batch or (64 if cuda else 2), args.precision or (["fp32", "bf16"] if cuda else ["fp32"]),
              cuda and not args.no_channels_last, args.reps, args.presets)


if __name__ == "__main__":
    main()
