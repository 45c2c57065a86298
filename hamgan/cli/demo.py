"""`hamgan demo`: the README's main job. Trains a small HamGAN on the built-in procedural shapes
on the CPU (configs/demo.toml, a few minutes), then samples a class sheet from its checkpoint
next to real images of the same classes.

Re-running continues the same run (`--resume auto`): a finished demo only samples again.
"""
from __future__ import annotations

from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def add_arguments(p):
    p.add_argument("--config", default=str(DEMO_CONFIG), help="config (default: configs/demo.toml)")
    p.add_argument("--out", default="runs", help="folder of run directories (default: runs)")
    p.add_argument("--name", default="demo", help="run directory name (default: demo)")
    p.add_argument("--fresh", action="store_true", help="start over instead of continuing an earlier demo run")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.steps=200")


def run(args):
    import shutil

    import torch

    from ..checkpoint import latest_good_snapshot, load_generator
    from ..config import load_config
    from ..data import open_training_data
    from ..images import save_grid
    from ..runlock import LOCK_NAME, RunLock
    from ..sample import class_sheet
    from ..train import train

    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.out) / args.name
    with RunLock(run_dir, "hamgan demo"):   # the whole demo: no second one may clear or write this folder
        for p in run_dir.iterdir() if args.fresh else ():   # all but the lock
            if p.is_dir():
                shutil.rmtree(p)
            elif p.name != LOCK_NAME:
                p.unlink()
        train(cfg, out=args.out, name=args.name, resume="auto", device=args.device)

        ckpt, _ = latest_good_snapshot(run_dir / "checkpoints")
        G, cfg, payload = load_generator(ckpt, device="cpu")
        n, cols = cfg.model.n_classes, 8
        sheet = class_sheet(G, columns=cols, seed=0)          # one row per class, the same z in every row
        save_grid(sheet.images, run_dir / "demo_samples.png", nrow=cols)

        data = open_training_data(cfg)
        by_class = {c: [i for i in range(min(len(data), 50 * n)) if data[i][1] == c][:cols] for c in range(n)}
        real = torch.stack([data[i][0] for c in range(n) for i in by_class[c]])
        save_grid(real, run_dir / "demo_real.png", nrow=cols)
    print(f"\nDemo done: step {payload['step']} of {cfg.name}.")
    print(f"  samples, one row per class (G_ema): {run_dir / 'demo_samples.png'}")
    print(f"  real images of the same classes:    {run_dir / 'demo_real.png'}")
    print(f"  training curves: tensorboard --logdir {run_dir / 'tensorboard'}")
