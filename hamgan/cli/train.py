"""`hamgan train`: start or resume a run; `--dry-run` to check a config before spending GPU days."""
from __future__ import annotations

import json
import os
from pathlib import Path


def add_arguments(p):
    p.add_argument("--config", help="config file (TOML/JSON); default: the checkpoint's when resuming, else the defaults")
    p.add_argument("--data", help="training data: 'shapes', a prepared store or an ImageFolder (sets data.source)")
    p.add_argument("--out", default="runs", help="folder of run directories (default: runs)")
    p.add_argument("--name", help="run directory OUT/NAME instead of a numbered OUT/NNNNN-<config name>")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': newest good checkpoint of the newest matching run (starts fresh if none); "
                        "or a run directory / checkpoint file")
    p.add_argument("--dry-run", action="store_true", help="build everything, run one step, report time and memory")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available; under torchrun, the local GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.steps=1000")


def run(args):
    from ..config import load_config
    from ..rundir import find_resume
    from ..train import dry_run, train

    overrides = list(args.overrides) + ([f"data.source={json.dumps(args.data)}"] if args.data else [])
    resume = args.resume
    if resume and not args.config:   # continue with the checkpoint's own config
        resume = find_resume(Path(args.out), args.name, args.resume) or resume
    base = None if isinstance(resume, str) or resume is None else resume.state["config"]
    cfg = load_config(args.config, overrides, base=base)
    if args.dry_run:
        report = dry_run(cfg, device=args.device)
        for k, v in report.items():
            print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
        return
    run_dir = train(cfg, out=args.out, name=args.name, resume=resume, progress=not args.no_progress,
                    device=args.device)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"run directory: {run_dir}")
