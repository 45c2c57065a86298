"""What surviving the cluster costs (issue 13): writing a checkpoint, and checking for stop signals.

    python scripts/bench_robustness.py [--config configs/hamgan_baby.toml] [--device cpu|cuda]
                                       [--steps-config configs/demo.toml] [--steps 40] [--rounds 5]

1. Checkpoint: a training snapshot of `--config` (G, D, G_ema, both Adam states with their
   moments, scalers, RNG states), written with `save_checkpoint` to --dir (default: a temporary
   folder on the same disk as the runs would be: pass one), its size, and the times to write,
   to verify (CRC-32 of every member) and to load it. Median of 3.
2. Stop signals: steps of `--steps-config` side by side, plain and with the loop's stop check
   (`StopRequests` active, `requested(step)` after every step), alternating blocks of --steps
   steps for --rounds rounds; the median seconds per step of each, and the check alone.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hamgan import fast  # noqa: E402
from hamgan.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint  # noqa: E402
from hamgan.config import load_config  # noqa: E402
from hamgan.stopping import StopRequests  # noqa: E402
from hamgan.train import Split, Training, build, train_step  # noqa: E402


def median_seconds(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checkpoint_costs(config: str, device: torch.device, folder: Path) -> None:
    cfg = load_config(config)
    training = Training(cfg, Split(cfg.train.batch_size, 1, 1, 0), device, [f"c{i}" for i in range(cfg.model.n_classes)],
                        fast.resolve(cfg.train, device))
    for net in ("G", "D"):      # Adam's moments exist after the first update: make them
        for p in training.opt[net].param_groups[0]["params"]:
            p.grad = torch.zeros_like(p)
        training.opt[net].step()
    path = folder / "ckpt-000000001.pt"
    write = median_seconds(lambda: save_checkpoint(training.state_dict(), path))
    size = path.stat().st_size
    verify = median_seconds(lambda: verify_checkpoint(path))
    load = median_seconds(lambda: load_checkpoint(path))
    print(f"| {Path(config).name} | {size / 2**30:.2f} GiB | {write:.2f} s | {verify:.2f} s | {load:.2f} s |")
    path.unlink()


def stop_check_costs(config: str, device: torch.device, steps: int, rounds: int) -> None:
    cfg = load_config(config, ["data.workers=0"])
    training, runner, _ = build(cfg, device)
    train_step(training, runner)                       # warm-up
    plain, checked = [], []
    with StopRequests(device, announce=False) as stop:
        for _ in range(rounds):
            for sink, check in ((plain, False), (checked, True)):
                start = time.perf_counter()
                for _ in range(steps):
                    train_step(training, runner)
                    if check:
                        stop.requested(training.step)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                sink.append((time.perf_counter() - start) / steps)
        n = 100_000
        start = time.perf_counter()
        for i in range(n):
            stop.requested(i)
        alone = (time.perf_counter() - start) / n
    a, b = statistics.median(plain), statistics.median(checked)
    print(f"| {Path(config).name} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {100 * (b - a) / a:+.1f}% | "
          f"{alone * 1e9:.0f} ns |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/hamgan_baby.toml", help="preset whose checkpoint is measured")
    p.add_argument("--dir", help="where to write it (default: a temporary folder)")
    p.add_argument("--steps-config", default="configs/demo.toml", help="preset whose steps are timed")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# {device.type} ({where}), torch {torch.__version__}\n")
    print("| preset | checkpoint size | write | verify | load |\n|---|---:|---:|---:|---:|")
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        checkpoint_costs(args.config, device, Path(folder))
    print("\n| preset | s/step plain | s/step with the stop check | difference | the check alone |")
    print("|---|---:|---:|---:|---:|")
    stop_check_costs(args.steps_config, device, args.steps, args.rounds)


if __name__ == "__main__":
    main()
