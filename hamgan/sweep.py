"""A sweep: one training run per point and seed, each evaluated the same way, summarised as a
table (mean and std over seeds) in Markdown and JSON and a plot of the metric curves.

Points are the product of grid axes ``KEY=V1,V2`` (values are TOML, split at top-level commas)
and, for comparisons that are not a product (no context block vs a Hamburger vs attention),
named points ``NAME: KEY=V KEY=V`` (shell-quoted overrides). Seeds 0 .. N-1 set `train.seed`.

Each run trains in a process of its own through `hamgan.train.train` (so its peak memory is its
own: host RSS on the CPU, allocated memory on CUDA) and is evaluated by
`metrics.checkpoint_eval.evaluate_checkpoint` against one set of reference statistics of the data
(made once in the sweep folder unless given). Everything lands in the sweep folder:

    runs/<point>-s<seed>/     the run directories (with result.json once evaluated)
    reference.npz             reference statistics (and the classifiers' cache next to it)
    sweep.md, sweep.json      the table
    sweep.png                 the metric curves (in-training evaluations, else the losses)

Running the same command again continues: finished runs are not retrained or re-evaluated.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .atomic import write_text
from .errors import HamganError
from .stopping import SIGNALS, RunStopped

# (table column, result key, format); rows show those present in some run
METRICS = (("FID", "fid", ".2f"), ("KID x 1e3", "kid_mean", ".2f"), ("class acc", "acc_class", ".3f"),
           ("shape acc", "acc_shape", ".3f"), ("intra-class FID", "intra_fid", ".1f"),
           ("s/step", "sec_per_step", ".3f"), ("peak mem GiB", "peak_memory_gib", ".2f"))
SCALE = {"kid_mean": 1e3}
# curves drawn from metrics.jsonl: in-training evaluations when a run has them, else its losses
EVAL_CURVES = (("FID", "eval/fid"), ("KID", "eval/kid_mean"), ("class accuracy", "eval/acc_class"),
               ("shape accuracy", "eval/acc_shape"))
LOSS_CURVES = (("D loss (real + fake)", ("loss/D_real", "loss/D_fake")), ("G loss", ("loss/G",)))


@dataclass
class Point:
    name: str
    overrides: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", re.sub(r"['\"]", "", self.name)).strip("_") or "default"


def split_values(text: str) -> list[str]:
    """'ham,attn' -> ['ham', 'attn']; commas inside [], {}, quotes do not split."""
    values, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += ch
    values.append(current.strip())
    return [v for v in values if v]


def expand(grids: Sequence[str] = (), points: Sequence[str] = ()) -> list[Point]:
    """The sweep's points: every combination of the grid axes, for each named point (or once)."""
    axes = []
    for g in grids:
        key, sep, values = g.partition("=")
        if not sep or not key.strip() or not split_values(values):
            raise HamganError(f"--grid {g!r}: expected KEY=V1,V2,... (e.g. 'model.G.context.0.block=ham,attn')")
        axes.append([(key.strip(), v) for v in split_values(values)])
    named = []
    for p in points:
        name, sep, rest = p.partition(":")
        if not sep or not name.strip():
            raise HamganError(f"--point {p!r}: expected 'NAME: KEY=V KEY=V ...' (NAME alone for the config as it is)")
        overrides = shlex.split(rest)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise HamganError(f"--point {p!r}: {bad[0]!r} is not KEY=VALUE")
        named.append(Point(name.strip(), overrides))
    out = []
    for base in named or [Point("")]:
        for combo in itertools.product(*axes):
            parts = [base.name] + [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo]
            out.append(Point(" ".join(p for p in parts if p) or "config", base.overrides + [f"{k}={v}" for k, v in combo]))
    if len({p.slug for p in out}) != len(out):
        raise HamganError("two sweep points get the same name; give named points distinct names")
    return out


@dataclass
class Settings:
    """How every run of a sweep is evaluated."""

    num_samples: int = 2000
    reference_num: int = 2000
    batch_size: int = 100
    stats: Optional[str] = None


def run_sweep(config: Optional[str], points: list[Point], seeds: int, out: str | os.PathLike, *,
              overrides: Sequence[str] = (), settings: Optional[Settings] = None, device: Optional[str] = None,
              progress: bool = True) -> dict:
    """Train and evaluate every (point, seed) not done yet, then write the table and plot."""
    settings = settings or Settings()
    from .cli import resolve_device
    from .config import load_config, to_dict
    from .metrics.checkpoint_eval import reference_stats

    if seeds < 1:
        raise HamganError(f"--seeds must be at least 1, got {seeds}")
    out = Path(out)
    configs = {(p.slug, s): load_config(config, list(overrides) + p.overrides + [f"train.seed={s}"])
               for p in points for s in range(seeds)}  # every config checked before anything runs
    dev = str(resolve_device(device))
    stats = Path(settings.stats) if settings.stats else reference_stats(
        next(iter(configs.values())), out / "reference.npz", num=settings.reference_num, device=dev, progress=progress)
    evaluation = {"num_samples": settings.num_samples, "batch_size": settings.batch_size, "stats": str(stats)}
    for (slug, seed), cfg in configs.items():
        run_dir = out / "runs" / f"{slug}-s{seed}"
        done = run_dir / "result.json"
        if done.is_file() and json.loads(done.read_text()).get("evaluation") == evaluation:
            continue
        if not cfg.eval.stats:
            cfg.eval.stats = str(stats)  # in-training evaluations (if any) against the same statistics
        print(f"sweep: {slug}, seed {seed} -> {run_dir}", flush=True)
        _in_child(_train_and_evaluate, to_dict(cfg), str(run_dir), evaluation, dev, progress)
    table = summarize(out, points, seeds)
    write_table(table, out)
    plot_curves(out, points, seeds)
    return table


def _in_child(fn, *args) -> None:
    """fn(*args) in a fresh process (spawn): its peak memory is its own; errors come back.
    A stop signal to the sweep alone (a scheduler's SIGTERM to one pid) is passed on to the run,
    which checkpoints and stops; the sweep then stops too, with the run's exit code 75."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    proc = ctx.Process(target=_catching, args=(errors, fn, *args))
    proc.start()

    def forward(signum, _frame):
        try:
            os.kill(proc.pid, signum)
        except ProcessLookupError:   # the run has just ended
            pass

    forwarding = threading.current_thread() is threading.main_thread()   # handlers: main thread only
    previous = {s: signal.signal(s, forward) for s in SIGNALS} if forwarding else {}
    try:
        proc.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if not errors.empty():
        stopped, message = errors.get()
        if stopped:
            raise RunStopped(f"{message.split(';')[0]}; the same sweep command continues the sweep")
        raise HamganError(message)
    if proc.exitcode:
        raise HamganError(f"a sweep run ended with exit code {proc.exitcode}")


def _catching(errors, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as e:  # sent to the parent, which stops the sweep with it
        stopped = isinstance(e, RunStopped)
        errors.put((stopped, str(e) if stopped else f"{type(e).__name__}: {e}"))
        raise SystemExit(1)


def _train_and_evaluate(cfg_dict: dict, run_dir: str, evaluation: dict, device: str, progress: bool) -> None:
    import resource

    import torch

    from .checkpoint import latest_good_snapshot
    from .config import Config, from_dict
    from .metrics.checkpoint_eval import evaluate_checkpoint
    from .train import train

    cfg, run_dir = from_dict(Config, cfg_dict), Path(run_dir)
    is_cuda = torch.device(device).type == "cuda"
    train(cfg, out=run_dir.parent, name=run_dir.name, resume="auto", progress=progress, device=device)
    peak = (torch.cuda.max_memory_allocated() if is_cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    ckpt, _ = latest_good_snapshot(run_dir / "checkpoints")
    result = evaluate_checkpoint(ckpt, num_samples=evaluation["num_samples"], stats=evaluation["stats"],
                                 batch_size=evaluation["batch_size"], device=device, progress=progress)
    result.update(evaluation=evaluation, peak_memory_gib=peak, memory="cuda allocated" if is_cuda else "host RSS",
                  sec_per_step=_median_sec_per_step(run_dir / "metrics.jsonl"), ckpt=str(ckpt))
    write_text(run_dir / "result.json", json.dumps(result, indent=1) + "\n")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _median_sec_per_step(path: Path) -> Optional[float]:
    """Median of the logged seconds per step, without the first interval (start-up)."""
    import numpy as np
    times = [m["time/sec_per_step"] for m in read_metrics(path) if "time/sec_per_step" in m][1:]
    return float(np.median(times)) if times else None


def summarize(out: Path, points: list[Point], seeds: int) -> dict:
    """{'columns': [...], 'rows': [{point, overrides, seeds, <key>: [mean, std] or None}]}."""
    import numpy as np
    results = {(p.slug, s): json.loads((out / "runs" / f"{p.slug}-s{s}" / "result.json").read_text())
               for p in points for s in range(seeds)}
    present = [m for m in METRICS if any(r.get(m[1]) is not None for r in results.values())]
    rows = []
    for p in points:
        row = {"point": p.name, "overrides": p.overrides, "seeds": seeds}
        for _, key, _ in present:
            values = [results[p.slug, s].get(key) for s in range(seeds)]
            values = [v * SCALE.get(key, 1) for v in values if v is not None]
            row[key] = [float(np.mean(values)), float(np.std(values))] if values else None
        rows.append(row)
    return {"columns": [[title, key, fmt] for title, key, fmt in present], "rows": rows,
            "notes": sorted({n for r in results.values() for n in r.get("notes", [])})}


def write_table(table: dict, out: Path) -> None:
    header = ["point", "seeds"] + [title for title, _, _ in table["columns"]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(table["columns"])]
    for row in table["rows"]:
        cells = [row["point"], str(row["seeds"])]
        for _, key, fmt in table["columns"]:
            v = row[key]
            cells.append("-" if v is None else f"{v[0]:{fmt}} +- {v[1]:{fmt}}" if row["seeds"] > 1 else f"{v[0]:{fmt}}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- `{row['point']}`: {' '.join(row['overrides']) or '(the config as it is)'}" for row in table["rows"]]
    if table["notes"]:
        lines += [""] + [f"Note: {n}" for n in table["notes"]]
    write_text(out / "sweep.md", "\n".join(lines) + "\n")
    write_text(out / "sweep.json", json.dumps(table, indent=1) + "\n")


def plot_curves(out: Path, points: list[Point], seeds: int) -> Path:
    """sweep.png: per metric, one line per point (mean over seeds, band of +- std)."""
    import numpy as np

    from .plot import line_panels
    logs = {(p.slug, s): read_metrics(out / "runs" / f"{p.slug}-s{s}" / "metrics.jsonl") for p in points for s in range(seeds)}
    has_eval = any(key in m for log in logs.values() for m in log for _, key in EVAL_CURVES)
    curves = [(t, (k,)) for t, k in EVAL_CURVES] if has_eval else list(LOSS_CURVES)
    panels = []
    for title, keys in curves:
        series = {}
        for p in points:
            per_seed = [{m["step"]: sum(m[k] for k in keys) for m in logs[p.slug, s] if all(k in m for k in keys)}
                        for s in range(seeds)]
            steps = sorted(set.intersection(*(set(d) for d in per_seed)))
            if steps:
                values = np.array([[d[step] for step in steps] for d in per_seed], float)
                series[p.name] = (steps, values.mean(0), values.std(0) if seeds > 1 else None)
        if series:
            panels.append((title, series))
    return line_panels(panels, out / "sweep.png")
