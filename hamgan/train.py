"""The training loop: the phases of every step (what they compute: hamgan.loss) run through one
piece of plumbing, then the EMA of G, logging, sample grids, evaluation and checkpoints.

Randomness is a function of (seed, step, phase), never of how the global batch is split:
latents and labels are drawn for the whole global batch and each (process, accumulation round)
keeps its rows, the Hamburgers' random bases are drawn the same way (`bases=` rows, after the
same seeding in every round and process), and the data stream hands process r the chunks
r, r + W, r + 2W, ... of b images. Hence 1 process x batch 2b, 2 processes x b and 1 process x
2 rounds x b see the same samples, and a resumed run continues exactly where the uninterrupted
one would be.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.profiler import record_function
from tqdm.auto import tqdm

from . import distributed as dist
from . import fast, stats
from .atomic import remove_temporaries
from .augment import DiffAugment
from .checkpoint import CheckpointError, list_snapshots, load_checkpoint, load_state, prune_snapshots, \
    save_checkpoint, snapshot_path
from .config import Config, TrainConfig, check_config, check_files, differences, from_dict, save_config, to_dict
from .data import build_loader, open_training_data
from .ema import EMA
from .errors import HamganError
from .flops import step_flops, throughput
from .ham import Rows
from .images import save_grid, to_float, to_uint8
from .layers import eval_mode, power_iteration_paused
from .loss import Batch, HingeLoss, Phase
from .models import build_discriminator, build_generator
from .monitor import RunMonitor
from .rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from .rundir import ResumePoint, find_resume, make_run_dir
from .runlock import LockedError, RunLock
from .stopping import RunStopped, StopRequests


class TrainingDiverged(HamganError):
    """A reported statistic (a loss, a scale) or a weight became NaN/inf."""


@dataclass(frozen=True)
class Split:
    """How one global batch of `total` images is cut: `rounds` accumulation rounds x `world`
    processes x `per` images. Round k of process r holds rows [(k*world + r)*per, ... + per)."""

    total: int
    world: int
    rounds: int
    rank: int

    def __post_init__(self):
        if self.total % (self.world * self.rounds):
            raise HamganError(f"train.batch_size ({self.total}) must be divisible by processes ({self.world}) "
                              f"x train.accum ({self.rounds})")

    @property
    def per(self) -> int:
        return self.total // (self.world * self.rounds)

    def rows(self, k: int) -> Rows:
        return Rows((k * self.world + self.rank) * self.per, self.per, self.total)


class Training:
    """What a checkpoint holds: G, D, the EMA of G, their optimisers and gradient scalers, and
    the counters (steps done, data batches taken by this process, best FID). `settings`: the
    run's precision, memory format and fast settings, decided for its device."""

    def __init__(self, cfg: Config, split: Split, device: torch.device, class_names: list[str],
                 settings: fast.Settings):
        t = cfg.train
        self.cfg, self.split, self.class_names, self.settings = cfg, split, list(class_names), settings
        seed_everything(t.seed)  # identical initial weights on every process
        self.G, self.D = build_generator(cfg.model).to(device), build_discriminator(cfg.model).to(device)
        if settings.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema else None
        self.opt = {"G": fast.adam(self.G.parameters(), t.lr_g, t.betas_g, t.eps_g, settings),
                    "D": fast.adam(self.D.parameters(), t.lr_d, t.betas_d, t.eps_d, settings)}
        self.scaler = {net: torch.amp.GradScaler(device.type, enabled=settings.amp == "fp16") for net in ("G", "D")}
        self.step, self.batches, self.best_fid, self.best_step = 0, 0, math.inf, -1

    @property
    def G_eval(self) -> nn.Module:
        """The generator that sample grids and FID see: G_ema, or G without EMA."""
        return self.ema.shadow if self.ema is not None else self.G

    def state_dict(self) -> dict:
        rng = dist.all_gather_object(get_rng_state())   # every process's, so each resumes its own
        s = self.split
        return {
            "config": to_dict(self.cfg), "step": self.step,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_G": self.opt["G"].state_dict(), "opt_D": self.opt["D"].state_dict(),
            "scaler_G": self.scaler["G"].state_dict(), "scaler_D": self.scaler["D"].state_dict(),
            "best_fid": self.best_fid, "best_step": self.best_step, "rng": rng,
            "data": {"batches_consumed": self.batches, "per_batch": s.per, "world": s.world, "accum": s.rounds},
            "class_names": self.class_names,
        }

    def load_state_dict(self, state: dict, source: str) -> list[str]:
        """Continue from a checkpoint's `state`; returns notes for the log."""
        saved = from_dict(Config, state["config"])
        if saved.model != self.cfg.model:
            diff = differences(to_dict(saved.model), to_dict(self.cfg.model), "model", ("checkpoint", "now"))
            raise CheckpointError(f"{source} was trained with a different network: {'; '.join(diff[:5])}. "
                                  "Resume with the checkpoint's own config (omit --config) or fix the overrides.")
        load_state(self.G, state["G"], f"{source} [G]")
        load_state(self.D, state["D"], f"{source} [D]")
        if self.ema is not None:
            load_state(self.ema.shadow, state["G_ema"] if state.get("G_ema") is not None else state["G"],
                       f"{source} [G_ema]")
        for net in ("G", "D"):
            self.opt[net].load_state_dict(state[f"opt_{net}"])
            self.scaler[net].load_state_dict(state[f"scaler_{net}"])
        self.step, self.best_fid, self.best_step = state["step"], state["best_fid"], state["best_step"]
        notes = self._adam_settings_from_config(saved.train)
        rng = state["rng"]
        set_rng_state(rng[self.split.rank] if len(rng) == self.split.world else rng[0])
        data, s = state["data"], self.split
        if (data["per_batch"], data["world"], data["accum"]) == (s.per, s.world, s.rounds):
            self.batches = data["batches_consumed"]
            return notes
        # the same number of images into the stream, in batches of the new size
        self.batches = data["batches_consumed"] * data["per_batch"] * data["world"] // (s.per * s.world)
        return notes + ["note: batch split differs from the checkpoint's; the data order will differ from an "
                        "uninterrupted run"]

    def _adam_settings_from_config(self, saved: TrainConfig) -> list[str]:
        """Adam's lr, betas and eps from this run's config: loading the optimiser state brought
        back the checkpoint's, and a run resumed with e.g. a lower `train.lr_g` must use it."""
        def adam(t: TrainConfig, net: str) -> dict:
            return {"lr": getattr(t, f"lr_{net}"), "betas": tuple(getattr(t, f"betas_{net}")),
                    "eps": getattr(t, f"eps_{net}")}

        notes = []
        for net in ("g", "d"):
            now, before = adam(self.cfg.train, net), adam(saved, net)
            for group in self.opt[net.upper()].param_groups:
                group.update(now)
            notes += [f"note: train.{key}_{net} = {now[key]} from step {self.step} on (the checkpoint's run "
                      f"used {before[key]})" for key in now if now[key] != before[key]]
        return notes


# DDP's per-forward buffer broadcast, off (torch >= 2.14 renamed the option)
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


class PhaseRunner:
    """The plumbing every phase shares: one optimiser update of the phase's network from the
    loss accumulated over this process's rounds of the global batch.

    Per round: this process's rows of the global latents (and a batch of real images when the
    phase takes them), the Hamburgers' bases seeded alike in every round and process, DDP's
    gradient all-reduce only in the last round, autocast and the fp16 gradient scaler, and one
    spectral-norm power iteration per step (rounds after the first reuse u, v), and with
    `train.augment` every image D sees augmented (`_augmented`). Only the phase's network's
    parameters require gradients; it runs under DDP, the other one plainly (`torch.compile`d
    when asked)."""

    def __init__(self, training: Training, loss, loader, device: torch.device):
        self.training, self.loss, self.loader, self.device = training, loss, loader, device
        t, settings = training.cfg.train, training.settings
        self.seed, self.amp, self.channels_last = t.seed, settings.amp, settings.channels_last
        self.augment = DiffAugment(t.augment)
        plain = {"G": training.G, "D": training.D}
        if settings.compile:
            plain = {net: torch.compile(m) for net, m in plain.items()}
        self.plain = plain
        self.trained = {net: self._ddp(m) for net, m in plain.items()}

    def _ddp(self, module: nn.Module) -> nn.Module:
        if self.training.split.world == 1:
            return module
        # buffers (spectral-norm vectors, cross-replica BN statistics) are identical on every
        # process by construction, so DDP need not broadcast them each forward
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, **_NO_BUFFER_SYNC)

    def _latents(self, *key) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z (total, z_dim) and labels (total,) (None: unconditional) of a global batch, on the CPU."""
        model = self.training.cfg.model
        g = torch.Generator().manual_seed(derive_seed(self.seed, *key))
        z = torch.randn(self.training.split.total, model.z_dim, generator=g)
        y = torch.randint(model.n_classes, (self.training.split.total,), generator=g) if model.n_classes else None
        return z, y

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        images, labels = next(self.loader)
        self.training.batches += 1
        x = to_float(images.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        conditional = self.training.cfg.model.n_classes > 0
        return x, labels.to(self.device, non_blocking=True) if conditional else None

    def run(self, phase: Phase, repeat: int) -> None:
        """Repetition `repeat` of `phase` at the current step: zero the gradients of the phase's
        network, accumulate the loss's gradients over the rounds, take the optimiser step."""
        tr, split = self.training, self.training.split
        key = (tr.step, phase.name, repeat)
        z_all, y_all = self._latents(*key)
        for net, module in (("G", tr.G), ("D", tr.D)):
            module.requires_grad_(net == phase.net)
        opt, scaler = tr.opt[phase.net], tr.scaler[phase.net]
        opt.zero_grad(set_to_none=True)
        for k in range(split.rounds):
            rows = split.rows(k)
            real, real_y = self._real_batch() if phase.real else (None, None)
            take = slice(rows.first, rows.first + rows.count)
            batch = Batch(real, real_y, fast.to_device(z_all[take], self.device),
                          None if y_all is None else fast.to_device(y_all[take], self.device))
            G, D = (_with_rows(self.trained[net] if net == phase.net else self.plain[net], rows) for net in "GD")
            if self.augment:
                D = _augmented(D, self.augment, derive_seed(self.seed, *key, "augment"), rows)
            torch.manual_seed(derive_seed(self.seed, *key, "bases"))  # the same draws in every round and process
            one_power_iteration = power_iteration_paused(tr.G, tr.D) if k else contextlib.nullcontext()
            with self._no_sync(phase.net, k), self._autocast(), one_power_iteration:
                loss = self.loss.accumulate(phase, batch, G, D)
                with record_function(f"{phase.name} backward"):
                    scaler.scale(loss.float() / split.rounds).backward()
        with record_function(f"{phase.name} optimizer"):
            scaler.step(opt)
            scaler.update()

    def _no_sync(self, net: str, k: int):
        """DDP all-reduces gradients only in the last accumulation round."""
        if self.training.split.world > 1 and k < self.training.split.rounds - 1:
            return self.trained[net].no_sync()
        return contextlib.nullcontext()

    def _autocast(self):
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "none")


def _with_rows(net: nn.Module, rows: Rows):
    """net(x, *args) whose random bases are those of `rows` of global batches; x may be several
    such shares concatenated (e.g. real and fake images)."""
    def forward(x, *args):
        return net(x, *args, bases=(rows,) * (len(x) // rows.count))
    return forward


def _augmented(D, augment: DiffAugment, seed: int, rows: Rows):
    """D(x, *args) that sees x augmented; x may be several shares of `rows` concatenated (real
    and fake images), share i augmented as rows of global batch i of this (step, phase, repeat)."""
    def forward(x, *args):
        shares = x.split(rows.count)
        return D(torch.cat([augment(s, derive_seed(seed, i), (rows.first, rows.total)) for i, s in enumerate(shares)]),
                 *args)
    return forward


def train_step(training: Training, runner: PhaseRunner) -> None:
    """One training step: every phase of the loss that is due, in order, then the EMA of G."""
    for net, lr in learning_rates(training.cfg.train, training.step).items():
        for group in training.opt[net].param_groups:
            group["lr"] = lr
    for phase in runner.loss.phases:
        if training.step % phase.interval == 0:
            for repeat in range(phase.repeats):
                with record_function(phase.name):
                    runner.run(phase, repeat)
    if training.ema is not None:
        training.ema.update(training.G, training.step)
    training.step += 1


def learning_rates(t: TrainConfig, step: int) -> dict[str, float]:
    """{'G': lr, 'D': lr} for step `step` (0-based): the config's rates, and over the last
    `t.lr_decay` of the run (from step round(steps * (1 - lr_decay)) on) falling linearly, so that
    the last step takes 1 / (steps - that step) of them. A function of the step alone: a resumed
    run takes the rates an uninterrupted one would."""
    start = round(t.steps * (1 - t.lr_decay))
    scale = (t.steps - step) / (t.steps - start) if start <= step < t.steps else 1.0
    return {"G": t.lr_g * scale, "D": t.lr_d * scale}


# ---------------------------------------------------------------------- the loop


def build(cfg: Config, device: torch.device, *, dataset=None, loss=None,
          resume: ResumePoint | None = None) -> tuple[Training, PhaseRunner, list[str]]:
    """Everything a run needs before its first step: (state, phase runner, notes for the log)."""
    t = cfg.train

    # Data: fails on bad input before anything is built.
    dataset = dataset if dataset is not None else open_training_data(cfg)
    if cfg.model.n_classes and len(dataset.class_names) != cfg.model.n_classes:
        n = len(dataset.class_names)
        raise HamganError(f"the data has {n} classes but model.n_classes = {cfg.model.n_classes}: set "
                          f"model.n_classes={n}, or train on data with {cfg.model.n_classes} classes")
    settings = fast.resolve(t, device)
    fast.apply_backend(settings, device)
    split = Split(t.batch_size, dist.world_size(), t.accum, dist.rank())

    # Networks, optimisers, and the loss that says what each phase computes.
    training = Training(cfg, split, device, dataset.class_names, settings)
    loss = loss if loss is not None else HingeLoss(t.d_steps)

    # Resume.
    notes = []
    if resume is not None:
        notes = training.load_state_dict(resume.state, str(resume.path))
        notes.append(f"resumed from {resume.path} at step {training.step}")

    # Distribute: the data stream continues where the checkpoint left it; DDP wraps the networks.
    loader = build_loader(dataset, split.per, seed=t.seed, rank=split.rank, world=split.world, accum=split.rounds,
                          start=training.batches, flip=cfg.data.flip, workers=cfg.data.workers)
    if settings.prefetch:
        loader = fast.DevicePrefetcher(loader, device)
    return training, PhaseRunner(training, loss, loader, device), notes


def training_loop(cfg: Config, run_dir: Path | None, device: torch.device, *, dataset=None, loss=None,
                  resume: ResumePoint | None = None, progress: bool = True) -> Training:
    """Train `cfg` until cfg.train.steps, writing into `run_dir` (None: write nothing). Every
    process runs this under torchrun; only rank 0 writes and prints."""
    t = cfg.train
    training, runner, notes = build(cfg, device, dataset=dataset, loss=loss, resume=resume)
    split = training.split
    monitor = RunMonitor(run_dir, enabled=dist.is_main())
    for note in notes:
        monitor.text(note)
    monitor.text(f"run directory {run_dir}: {split.world} process(es) on {device}, global batch "
                 f"{t.batch_size} = {split.world} x {split.rounds} x {split.per}; {training.settings.describe()}")
    if training.step == 0:
        save_sample_grid(training, run_dir, monitor)

    collector = stats.Collector(device)
    evaluating = t.eval_every > 0
    bar = tqdm(total=t.steps, initial=training.step, disable=not (progress and dist.is_main()), unit="step",
               dynamic_ncols=True)
    tick, tick_step = time.perf_counter(), training.step
    # from here on SIGTERM, SIGINT and SIGUSR1 ask the loop to stop (hamgan.stopping)
    with StopRequests(device, announce=dist.is_main()) as stop, contextlib.closing(bar), contextlib.closing(monitor):
        while training.step < t.steps:
            # One step; what is reported in it is collected for the log.
            with collector.step(training.step + 1) if t.log_every else contextlib.nullcontext():
                train_step(training, runner)
            bar.update(1)

            # Maintenance, each when due: log, sample grid, evaluation, checkpoint; a stop request.
            step, done = training.step, training.step == t.steps
            if (_due(step, t.log_every) or done) and collector:
                now = time.perf_counter()
                scalars = log_statistics(training, collector, monitor, run_dir, (now - tick) / max(step - tick_step, 1))
                tick, tick_step = now, step
                bar.set_postfix({"D": f"{scalars.get('loss/D_real', 0) + scalars.get('loss/D_fake', 0):.3f}",
                                 "G": f"{scalars.get('loss/G', 0):.3f}",
                                 "img/s": f"{scalars['time/images_per_sec']:.1f}"})
            if _due(step, t.sample_every):
                save_sample_grid(training, run_dir, monitor)
            new_best = False
            if evaluating and _due(step, t.eval_every):
                result = evaluate(training, monitor, device, run_dir)
                evaluating = result is not None        # unavailable: said once, the run goes on
                new_best = evaluating and training.best_step == step
            stopping = stop.requested(step) and not done   # the same answer on every process
            if _due(step, t.snapshot_every) or new_best or done or stopping:
                save_snapshot(training, run_dir, monitor)
            if stopping:
                saved = snapshot_path(run_dir / "checkpoints", step) if run_dir is not None else "nothing written"
                message = (f"stopped by {stop.reason()} after step {step} ({saved}); the same command with "
                           f"--resume auto continues the run")
                monitor.text(message)
                raise RunStopped(message)
        if t.sample_every and training.step % t.sample_every:
            save_sample_grid(training, run_dir, monitor)
    return training


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


# ---------------------------------------------------------------------- maintenance


def log_statistics(training: Training, collector: stats.Collector, monitor: RunMonitor, run_dir: Path | None,
                   seconds_per_step: float) -> dict:
    """Means of everything reported since the last log, plus time, learning rates and gradient
    norms, to metrics.jsonl and TensorBoard. All processes call it (the means are over them)."""
    scalars, first_bad = collector.summary()
    if first_bad is not None:
        step, names = first_bad
        raise TrainingDiverged(_diverged(f"{', '.join(names)} became non-finite at step {step}", run_dir))
    scalars["time/sec_per_step"] = seconds_per_step
    scalars["time/images_per_sec"] = training.cfg.train.batch_size / max(seconds_per_step, 1e-9)
    for net in ("G", "D"):
        scalars[f"lr/{net}"] = training.opt[net].param_groups[0]["lr"]
        grads = [p.grad for p in training.opt[net].param_groups[0]["params"] if p.grad is not None]
        if grads:   # of the network's last update
            scalars[f"grad_norm/{net}"] = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item()
    monitor.scalars(training.step, scalars)
    return scalars


def fixed_grid_latents(cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed noise of the sample grids: up to 10 evenly spaced classes x 8 columns."""
    n = cfg.model.n_classes
    rows = min(n, 10) if n else 8
    g = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "grid"))
    z = torch.randn(rows * 8, cfg.model.z_dim, generator=g)
    y = torch.tensor([(i * n) // rows for i in range(rows)]).repeat_interleave(8) if n else None
    return z.to(device), None if y is None else y.to(device)


@torch.no_grad()
def save_sample_grid(training: Training, run_dir: Path | None, monitor: RunMonitor) -> None:
    """Fixed-noise grid of G_ema (G without EMA), one row per class shown: PNG + TensorBoard."""
    if run_dir is None or not dist.is_main():
        return
    cfg, G = training.cfg, training.G_eval
    z, y = fixed_grid_latents(cfg, next(G.parameters()).device)
    with eval_mode(G), torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=training.settings.amp == "bf16"):
        images = to_uint8(G(z, y))
    cols = len(z) // (len(set(y.tolist())) if y is not None else 8)
    sheet = save_grid(images, run_dir / "samples" / f"grid-{training.step:09d}.png", nrow=cols)
    monitor.image("samples", sheet, training.step)


def evaluate(training: Training, monitor: RunMonitor, device: torch.device, run_dir: Path | None) -> dict | None:
    """FID/IS (KID, ... with eval.extras) of G_ema (G without EMA) with cfg.eval's settings, and
    for a conditional G its conditional accuracy (classifiers of the data, cached next to
    eval.stats or in the run directory); all processes take part. None when unavailable (e.g.
    no Inception weights: said in the log). The metrics.jsonl row carries the protocol it
    followed (`hamgan.metrics.protocol.training_protocol`)."""
    from .metrics.evaluate import evaluate_generator
    from .metrics.fid import FIDStats
    from .metrics.inception import get_extractor
    from .metrics.protocol import check_reference, record, reference_record, training_protocol
    cfg = training.cfg
    e = cfg.eval
    protocol = training_protocol(cfg)
    try:
        reference = FIDStats.load(e.stats) if e.stats else None
        if reference is not None:
            check_reference(protocol, reference, e.stats)
        extractor = get_extractor(device, e.inception_weights or None)   # missing weights: nothing else is done
        classifiers = _classifiers(cfg, Path(e.stats).parent if e.stats else run_dir, device)
        result = evaluate_generator(training.G_eval, num_samples=e.num_samples, batch_size=e.batch_size,
                                    ref_stats=reference, device=device, n_classes=cfg.model.n_classes,
                                    seed=cfg.train.seed, extras=e.extras, inception=extractor, progress=False,
                                    splits=protocol.is_splits, quantize=protocol.quantized,
                                    resize=protocol.resize_to_299, classifiers=classifiers,
                                    class_names=training.class_names if cfg.model.n_classes else None)
    except HamganError as err:
        monitor.text(f"FID/IS skipped for this run: {err}")
        return None
    result["protocol"] = record(protocol, generator=protocol.generator, num_samples=result["num_samples"],
                                reference=reference_record(e.stats, reference), truncation=None,
                                seed=cfg.train.seed, inception_weights=extractor.digest)
    monitor.scalars(training.step, {f"eval/{k}": v for k, v in result.items()
                                    if isinstance(v, (int, float)) and v is not None},
                    info={"eval/protocol": result["protocol"]})
    monitor.text(f"step {training.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()
                                                        if isinstance(v, float) and "ceiling" not in k)
                 + f" (protocol {protocol.name})")
    fid = result.get("fid")    # every process holds rank 0's result
    if fid is not None and fid < training.best_fid:
        training.best_fid, training.best_step = fid, training.step
    return result


def _classifiers(cfg: Config, cache_dir: Path | None, device: torch.device):
    """The conditional-accuracy classifiers of the run's data (None: unconditional, or nowhere to
    cache them). Rank 0 trains them on first use; the other processes then read its file."""
    from .metrics.classifier import get_classifiers, training_data
    if not cfg.model.n_classes or cache_dir is None:
        return None
    data = training_data(cfg)
    if dist.is_main():
        get_classifiers(data, cache_dir, device=device, progress=False)
    dist.broadcast_object(None)  # a barrier: the file exists from here on
    return get_classifiers(data, cache_dir, device=device, progress=False)


def save_snapshot(training: Training, run_dir: Path | None, monitor: RunMonitor) -> None:
    """Checkpoint now, after checking the weights are finite; keeps the newest cfg.train.keep_last
    snapshots and the best-FID one. All processes call it (rank 0 writes)."""
    for name, net in (("G", training.G), ("D", training.D)):
        # one device synchronisation per network, not one per parameter
        if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():
            raise TrainingDiverged(_diverged(f"{name} weights became non-finite by step {training.step}", run_dir))
    state = training.state_dict()
    if run_dir is None or not dist.is_main():
        return
    ckpt_dir = run_dir / "checkpoints"
    path = save_checkpoint(state, snapshot_path(ckpt_dir, training.step))
    keep = {snapshot_path(ckpt_dir, training.best_step)} if training.best_step >= 0 else set()
    prune_snapshots(ckpt_dir, training.cfg.train.keep_last, keep)
    monitor.text(f"step {training.step}: saved {path}")


def _diverged(what: str, run_dir: Path | None) -> str:
    snaps = list_snapshots(run_dir / "checkpoints") if run_dir is not None else []
    where = f"the last good checkpoint is {snaps[-1]}" if snaps else "no checkpoint was written yet"
    return (f"training stopped: {what}; {where}. Lower the learning rates, use train.amp = 'bf16' "
            "instead of 'fp16', or resume from an earlier checkpoint.")


# ---------------------------------------------------------------------- entry points


def train(cfg: Config, out: str | Path = "runs", name: str | None = None, resume: str | ResumePoint | None = None,
          dataset=None, progress: bool = True, device: str | None = None, loss=None) -> Path:
    """Run (or continue) training; returns the run directory. Works as one process or under
    torchrun. `resume`: 'auto', a run directory or checkpoint path (see `rundir.find_resume`),
    or a ResumePoint already found. `loss`: what each phase computes (default `HingeLoss`).
    Raises `RunStopped` when a signal stopped it (after writing a checkpoint)."""
    check_files(check_config(cfg))   # a config made in Python gets the checks of a loaded one
    env = dist.setup(device)
    try:
        out = Path(out)
        if isinstance(resume, str):
            resume = _find_resume_everywhere(out, name, resume)
        if resume is not None:
            run_dir = resume.run_dir
        else:
            run_dir = dist.broadcast_object((out / name if name else make_run_dir(out, cfg.name))
                                            if dist.is_main() else None)
        with _run_dir_lock(run_dir):
            if dist.is_main():
                save_config(cfg, run_dir / "config.toml")
            training_loop(cfg, run_dir, env.device, dataset=dataset, loss=loss, resume=resume, progress=progress)
        return run_dir
    finally:
        dist.cleanup()


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path):
    """One run per directory: rank 0 holds its lock (hamgan.runlock) while inside, and removes
    what writes killed mid-way left there; a refusal reaches every process."""
    lock, refusal = None, None
    if dist.is_main():
        try:
            lock = RunLock(run_dir, "hamgan train").acquire()
        except LockedError as e:
            refusal = str(e)
    refusal = dist.broadcast_object(refusal)
    if refusal is not None:
        raise LockedError(refusal)
    try:
        if lock is not None:
            removed = remove_temporaries(run_dir)
            if removed:
                print(f"removed unfinished writes of an interrupted run: {', '.join(p.name for p in removed)}")
        yield
    finally:
        if lock is not None:
            lock.release()


def _find_resume_everywhere(out: Path, name: str | None, resume: str) -> ResumePoint | None:
    """Rank 0 decides what to resume from; the other processes read the same checkpoint."""
    point = find_resume(out, name, resume) if dist.is_main() else None
    where = dist.broadcast_object(None if point is None else (point.run_dir, point.path))
    if where is None:
        if resume != "auto":
            raise CheckpointError(f"nothing to resume at {resume}")
        return None
    return point or ResumePoint(*where, load_checkpoint(where[1]))


def dry_run(cfg: Config, dataset=None, device: str | None = None) -> dict:
    """Build everything, run one step to warm up and one timed step; report time, memory, the
    settings, the model FLOP per image counted from the networks and the FLOP/s achieved (on a
    known GPU also the fraction of its peak)."""
    check_files(check_config(cfg))
    env = dist.setup(device)
    try:
        training, runner, _ = build(cfg, env.device, dataset=dataset)
        train_step(training, runner)
        cuda = env.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        collector = stats.Collector(env.device)
        start = time.perf_counter()
        with collector.step(training.step + 1):
            train_step(training, runner)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        report = {
            "settings": training.settings.describe(),
            "seconds_per_step": seconds,
            "images_per_second": cfg.train.batch_size / seconds,
            "G_parameters": sum(p.numel() for p in training.G.parameters()),
            "D_parameters": sum(p.numel() for p in training.D.parameters()),
            "losses": {k: v for k, v in collector.summary()[0].items() if k.startswith("loss/")},
        }
        if cuda:
            report["peak_gpu_memory_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        per_device = report["images_per_second"] / training.split.world
        report.update(throughput(step_flops(cfg, runner.loss), per_device, env.device, training.settings.amp))
        peak = _peak_host_memory_gib()
        if peak is not None:
            report["peak_host_memory_GiB"] = peak
        return report
    finally:
        dist.cleanup()


def _peak_host_memory_gib() -> float | None:
    """This process's peak resident memory, where the platform tells (`resource` is Unix-only)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
