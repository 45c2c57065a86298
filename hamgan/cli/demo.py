"""`hamgan demo`: the README's main job. Trains a small HamGAN on the built-in procedural shapes
on the CPU (configs/demo.toml, 15-20 minutes on 2 cores), samples a class sheet from its
checkpoint next to real images of the same classes, and measures it: FID/KID against the real
shapes (pool3 of pytorch-fid's Inception, when its weights are there) and the conditional
accuracies (colour and colour-blind shape), each with its ceiling.

What is shown and measured is the run's best kept snapshot, not always its last: one this short
and at this learning rate still swings per class between snapshots (a triangle at 0.98 of its
ceiling at step 3,000 and 0.77 at 4,000, docs/BENCHMARKS.md), so the demo keeps the last five
and takes the newest whose worst class (either classifier) is drawn about as well as in the best
one, scored on samples of another seed than the final measurement's.

Re-running continues the same run (`--resume auto`): a finished demo only chooses, samples and
measures again. Reference statistics and classifiers are made once, in OUT/stats/.
"""
from __future__ import annotations

from pathlib import Path

from . import resolve_device

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"
DEMO_SAMPLES = 300       # FID/KID: Inception costs ~0.12 s per image on 2 CPU cores (300 + 300 real: ~1 minute)
ACCURACY_SAMPLES = 2000  # conditional accuracy: 200 per class, a few seconds
CHOICE_SAMPLES = 2000    # per kept snapshot when choosing one: 200 per class, ~10 s each
CHOICE_SEED = 1          # not the final measurement's seed 0: the choice is not scored on its own samples
CHOICE_MARGIN = 0.05     # one snapshot's score on two sets of 2,000 samples differed by up to 0.04: a tie


def add_arguments(p):
    p.add_argument("--config", default=str(DEMO_CONFIG), help="config (default: configs/demo.toml)")
    p.add_argument("--out", default="runs", help="folder of run directories (default: runs)")
    p.add_argument("--name", default="demo", help="run directory name (default: demo)")
    p.add_argument("--fresh", action="store_true", help="start over instead of continuing an earlier demo run")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--num", type=int, default=DEMO_SAMPLES, help=f"samples (and real images) of the final FID/KID "
                   f"(default {DEMO_SAMPLES})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.steps=200")


def run(args):
    import shutil

    import torch

    from ..checkpoint import load_generator
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
        device = resolve_device(args.device)

        ckpt = choose_snapshot(run_dir / "checkpoints", Path(args.out) / "stats", device)
        G, cfg, payload = load_generator(ckpt, device=device)
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
    measure(cfg, ckpt, Path(args.out) / "stats", args.num, device)


def choose_snapshot(ckpt_dir: Path, stats_dir: Path, device) -> Path:
    """The newest kept snapshot whose worst class is drawn about as well as in the best one. A
    snapshot's score is its lowest accuracy / ceiling over the classes and both classifiers
    (colour and shape), on CHOICE_SAMPLES samples of CHOICE_SEED; the newest whose score is within
    CHOICE_MARGIN of the highest wins, as it trained longest at the lowest rates (the best FID).
    The newest good snapshot when there is nothing to score (an unconditional G)."""
    from ..checkpoint import CheckpointError, latest_good_snapshot, list_snapshots
    from ..metrics.checkpoint_eval import ceiling_ratios, evaluate_checkpoint

    newest, payload = latest_good_snapshot(ckpt_dir)
    if not payload["config"]["model"]["n_classes"]:
        return newest
    print(f"\nChoosing the snapshot to show: each kept one's worst class (accuracy / ceiling, colour or "
          f"shape) on {CHOICE_SAMPLES} samples")
    snapshots, scores, steps = list_snapshots(ckpt_dir), {}, {}
    for path in snapshots:
        try:   # progress shown for the first only: it trains the classifiers on first use
            result = evaluate_checkpoint(path, num_samples=CHOICE_SAMPLES, seed=CHOICE_SEED, extras=False,
                                         cache_dir=stats_dir, device=device, inception=False,
                                         progress=path == snapshots[0])
        except CheckpointError as e:
            print(f"  skipping {e}")
            continue
        scores[path] = min(ceiling_ratios(result, "class") + ceiling_ratios(result, "shape"), default=0.0)
        steps[path] = result["step"]
        print(f"  step {steps[path]}: {scores[path]:.2f}")
    if not scores:
        return newest
    # snapshot names sort by step: the largest path is the newest
    chosen = max(p for p, score in scores.items() if score >= max(scores.values()) - CHOICE_MARGIN)
    print(f"  shown: step {steps[chosen]}, the newest within {CHOICE_MARGIN} of the best")
    return chosen


def measure(cfg, ckpt, stats_dir: Path, num: int, device) -> dict:
    """Print and return the conditional accuracies of `ckpt` on ACCURACY_SAMPLES samples (cheap:
    small CNNs) and, when the Inception weights are there, FID/KID on `num` samples against `num`
    real images (Inception is the slow part on a CPU)."""
    import warnings

    from ..errors import HamganError
    from ..metrics.inception import get_extractor
    from ..metrics.checkpoint_eval import accuracy_lines, evaluate_checkpoint, reference_stats

    result = evaluate_checkpoint(ckpt, num_samples=ACCURACY_SAMPLES, extras=False, cache_dir=stats_dir,
                                 device=device, inception=False)
    print(f"\nMeasured (G_ema), conditional accuracy on {ACCURACY_SAMPLES} samples:")
    for line in accuracy_lines(result):
        print(f"  {line}")
    try:
        inception = get_extractor(device)
    except HamganError as e:
        print(f"  FID/KID skipped: {e}")
        return result
    stats = reference_stats(cfg, stats_dir / f"shapes-{cfg.model.resolution}px-{num}.npz", num=num,
                            device=device, inception=inception)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the few-samples caveat is printed with the numbers
        fid = evaluate_checkpoint(ckpt, num_samples=num, stats=stats, accuracy=False, device=device,
                                  inception=inception)
    print(f"  FID {fid['fid']:.2f}   KID {fid['kid_mean']:.4f}   ({num} samples against {num} real images: "
          f"compare only at equal sample counts)")
    return {**result, **{k: fid[k] for k in ("fid", "kid_mean", "kid_std")}}
