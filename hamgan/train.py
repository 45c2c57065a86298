"""The training loop: hinge-loss GAN with EMA, exact resume, DDP, accumulation, mixed precision.

Randomness is a function of (seed, step, phase), never of how the global batch is split:
every forward re-seeds the RNG that draws the Hamburger bases, latents and labels are
drawn for the whole global batch and each (process, accumulation round) keeps its rows,
and the data stream hands process r the chunks r, r + W, r + 2W, ... of b images. Hence
1 process x batch 2b, 2 processes x b and 1 process x 2 rounds x b see the same samples,
and a resumed run continues exactly where the uninterrupted one would be.
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
from tqdm.auto import tqdm

from . import distributed as dist
from .checkpoint import (CheckpointError, latest_good_snapshot, list_snapshots, load_checkpoint, load_state,
                         prune_snapshots, save_checkpoint, snapshot_path)
from .config import Config, from_dict, save_config, to_dict
from .data import build_loader, open_dataset
from .ema import EMA
from .errors import HamganError
from .ham import Hamburger, batch_rows
from .images import save_grid, to_float, to_uint8
from .layers import power_iteration_paused
from .losses import d_hinge, g_hinge
from .models import build_discriminator, build_generator
from .monitor import RunMonitor
from .rng import derive_seed, get_rng_state, seed_everything, set_rng_state

LOSS_NAMES = ("loss/D_real", "loss/D_fake", "loss/G", "D/real_score", "D/fake_score")


class TrainingDiverged(HamganError):
    """A loss or weight became NaN/inf."""


@dataclass
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

    def first_row(self, k: int) -> int:
        return (k * self.world + self.rank) * self.per

    def rows(self, k: int) -> slice:
        return slice(self.first_row(k), self.first_row(k) + self.per)


# DDP's per-forward buffer broadcast, off (torch >= 2.14 renamed the option)
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


class Trainer:
    """Owns the networks, optimizers, data stream and run directory of one training run.

    `run_dir` None: nothing is written (dry runs, some tests)."""

    def __init__(self, cfg: Config, run_dir: Path | None, device: torch.device, dataset=None,
                 progress: bool = True):
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        t = cfg.train
        self.rank, self.world = dist.rank(), dist.world_size()
        self.split = Split(t.batch_size, self.world, t.accum, self.rank)
        if t.amp == "fp16" and device.type != "cuda":
            raise HamganError("train.amp = 'fp16' needs CUDA; use 'bf16' on the CPU")
        self.dataset = dataset if dataset is not None else open_dataset(   # bad data fails before anything is built
            cfg.data.source, cfg.model.resolution, resize=cfg.data.resize,
            n_classes=cfg.data.shapes_classes, size=cfg.data.shapes_size, seed=t.seed)
        if cfg.model.n_classes and len(self.dataset.class_names) != cfg.model.n_classes:
            n = len(self.dataset.class_names)
            raise HamganError(f"the data has {n} classes but model.n_classes = {cfg.model.n_classes}: set "
                              f"model.n_classes={n}, or train on data with {cfg.model.n_classes} classes")
        self.monitor = RunMonitor(run_dir, enabled=dist.is_main())
        self.progress = progress and dist.is_main()

        seed_everything(t.seed)  # identical initial weights on every process
        self.G, self.D = build_generator(cfg.model).to(device), build_discriminator(cfg.model).to(device)
        if t.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema else None
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=tuple(t.betas_g), eps=t.eps_g)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=tuple(t.betas_d), eps=t.eps_d)
        self.scaler_G = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
        self.scaler_D = torch.amp.GradScaler(device.type, enabled=t.amp == "fp16")
        # the G forward of a D step needs no gradients, the D forward of a G step no weight
        # gradients: both use the plain (compiled) modules, which skips DDP's bookkeeping
        self.G_plain = torch.compile(self.G) if t.compile else self.G
        self.D_plain = torch.compile(self.D) if t.compile else self.D
        self.G_train, self.D_train = self._ddp(self.G_plain), self._ddp(self.D_plain)

        self.step, self.best_fid, self.best_step = 0, math.inf, -1
        self._pending: list[tuple[int, torch.Tensor]] = []   # per-step loss values, read at log time
        self._fid_unavailable: str | None = None

    # ------------------------------------------------------------------ set-up helpers

    def _ddp(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        # buffers (spectral-norm vectors, cross-replica BN statistics) are identical on every
        # process by construction, so DDP need not broadcast them each forward
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, **_NO_BUFFER_SYNC)

    def _autocast(self):
        amp = self.cfg.train.amp
        if amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def _latents(self, phase: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z (total, z_dim) and labels (total,) of the global batch of this step and phase, on CPU."""
        g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, self.step, phase))
        z = torch.randn(self.split.total, self.cfg.model.z_dim, generator=g)
        n = self.cfg.model.n_classes
        y = torch.randint(n, (self.split.total,), generator=g) if n else None
        return z, y

    def _seed_forward(self, phase: str) -> None:
        # the same state in every round and process: each keeps its own rows of the global draw
        torch.manual_seed(derive_seed(self.cfg.train.seed, self.step, phase, "bases"))

    def _no_sync(self, ddp_module, k: int):
        """DDP all-reduces gradients only in the last accumulation round."""
        if self.world > 1 and k < self.split.rounds - 1:
            return ddp_module.no_sync()
        return contextlib.nullcontext()

    def _one_power_iteration(self, k: int):
        return power_iteration_paused(self.G, self.D) if k else contextlib.nullcontext()

    def _to_device(self, t):
        return None if t is None else t.to(self.device, non_blocking=True)

    def _images(self, images_uint8: torch.Tensor) -> torch.Tensor:
        x = to_float(images_uint8.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else x

    # ------------------------------------------------------------------ one step

    def _d_step(self, d_index: int, loader) -> torch.Tensor:
        split, phase = self.split, f"D{d_index}"
        z_all, y_all = self._latents(phase)
        self.opt_D.zero_grad(set_to_none=True)
        sums = torch.zeros(4, device=self.device)
        for k in range(split.rounds):
            real, y_real = next(loader)
            real, y_real = self._images(real), self._to_device(y_real) if self.cfg.model.n_classes else None
            z, y_fake = self._to_device(z_all[split.rows(k)]), self._to_device(None if y_all is None else y_all[split.rows(k)])
            rows = (split.first_row(k), split.per, split.total)
            self._seed_forward(phase)
            with torch.no_grad(), self._autocast(), batch_rows(rows), self._one_power_iteration(k):
                fake = self.G_plain(z, y_fake)
            with self._no_sync(self.D_train, k), self._autocast(), batch_rows(rows, rows), self._one_power_iteration(k):
                labels = None if y_real is None else torch.cat([y_real, y_fake])
                scores = self.D_train(torch.cat([real, fake.to(real.dtype)]), labels).float()
                loss_real, loss_fake = d_hinge(scores[:split.per], scores[split.per:])
                self.scaler_D.scale((loss_real + loss_fake) / split.rounds).backward()
            sums += torch.stack([loss_real, loss_fake, scores[:split.per].mean(), scores[split.per:].mean()]).detach()
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        return sums / split.rounds

    def _g_step(self) -> torch.Tensor:
        split, phase = self.split, "G"
        z_all, y_all = self._latents(phase)
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        total = torch.zeros((), device=self.device)
        for k in range(split.rounds):
            z, y = self._to_device(z_all[split.rows(k)]), self._to_device(None if y_all is None else y_all[split.rows(k)])
            rows = (split.first_row(k), split.per, split.total)
            self._seed_forward(phase)
            with self._no_sync(self.G_train, k), self._autocast(), batch_rows(rows), self._one_power_iteration(k):
                loss = g_hinge(self.D_plain(self.G_train(z, y), y).float())
                self.scaler_G.scale(loss / split.rounds).backward()
            total += loss.detach()
        self.D.requires_grad_(True)
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        return total / split.rounds

    def train_step(self, loader) -> torch.Tensor:
        """One generator step after `d_steps` discriminator steps; returns the LOSS_NAMES values."""
        self.G.train()
        self.D.train()
        d_vals = torch.stack([self._d_step(i, loader) for i in range(self.cfg.train.d_steps)]).mean(0)
        g_loss = self._g_step()
        self.step += 1
        return torch.stack([d_vals[0], d_vals[1], g_loss, d_vals[2], d_vals[3]])

    # ------------------------------------------------------------------ state

    @property
    def batches_consumed(self) -> int:
        """Batches of `split.per` images this process has taken from the data stream."""
        return self.step * self.cfg.train.d_steps * self.split.rounds

    def state_dict(self) -> dict:
        rng = dist.all_gather_object(get_rng_state())
        return {
            "config": to_dict(self.cfg), "step": self.step,
            "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else None,
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "scaler_G": self.scaler_G.state_dict(), "scaler_D": self.scaler_D.state_dict(),
            "best_fid": self.best_fid, "best_step": self.best_step,
            "rng": rng, "data": {"batches_consumed": self.batches_consumed, "per_batch": self.split.per,
                                 "world": self.world, "accum": self.split.rounds},
            "class_names": list(self.dataset.class_names),
        }

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        saved = from_dict(Config, state["config"])
        if saved.model != self.cfg.model:
            diff = _differences(to_dict(saved.model), to_dict(self.cfg.model), "model")
            raise CheckpointError(f"{source} was trained with a different network: {'; '.join(diff[:5])}. "
                                  "Resume with the checkpoint's own config (omit --config) or fix the overrides.")
        load_state(self.G, state["G"], f"{source} [G]")
        load_state(self.D, state["D"], f"{source} [D]")
        if self.ema is not None:
            load_state(self.ema.shadow, state["G_ema"] if state.get("G_ema") is not None else state["G"],
                       f"{source} [G_ema]")
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.scaler_G.load_state_dict(state["scaler_G"])
        self.scaler_D.load_state_dict(state["scaler_D"])
        self.step, self.best_fid, self.best_step = state["step"], state["best_fid"], state["best_step"]
        rng = state["rng"]
        set_rng_state(rng[self.rank] if len(rng) == self.world else rng[0])
        data = state["data"]
        if (data["per_batch"], data["world"], data["accum"]) != (self.split.per, self.world, self.split.rounds):
            self.monitor.text("note: batch split differs from the checkpoint's; the data order will differ "
                              "from an uninterrupted run")

    def save_snapshot(self) -> Path | None:
        """Checkpoint now (all processes call; rank 0 writes), after checking nothing diverged."""
        self._check_finite()
        state = self.state_dict()
        if self.run_dir is None or not dist.is_main():
            return None
        ckpt_dir = self.run_dir / "checkpoints"
        path = save_checkpoint(state, snapshot_path(ckpt_dir, self.step))
        keep = {snapshot_path(ckpt_dir, self.best_step)} if self.best_step >= 0 else set()
        prune_snapshots(ckpt_dir, self.cfg.train.keep_last, keep)
        return path

    # ------------------------------------------------------------------ monitoring

    def _check_finite(self) -> None:
        """Raise TrainingDiverged naming the first step whose losses (or the current weights) are not finite."""
        if self._pending:
            steps, vals = zip(*self._pending)
            vals = torch.stack(vals).cpu()
            bad = (~torch.isfinite(vals)).any(1).nonzero()
            if len(bad):
                i = int(bad[0])
                names = [n for n, v in zip(LOSS_NAMES, vals[i]) if not math.isfinite(v)]
                raise TrainingDiverged(self._diverged_message(f"{', '.join(names)} became non-finite at step {steps[i]}"))
        for name, net in (("G", self.G), ("D", self.D)):
            # one device synchronisation per network, not one per parameter
            if not torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all():
                raise TrainingDiverged(self._diverged_message(f"{name} weights became non-finite by step {self.step}"))

    def _diverged_message(self, what: str) -> str:
        last = None
        if self.run_dir is not None:
            snaps = list_snapshots(self.run_dir / "checkpoints")
            last = snaps[-1] if snaps else None
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        return (f"training stopped: {what}; {where}. Lower the learning rates, use train.amp = 'bf16' "
                "instead of 'fp16', or resume from an earlier checkpoint.")

    def _log(self, seconds_per_step: float) -> dict:
        self._check_finite()
        steps, vals = zip(*self._pending)
        means = torch.stack(vals).float().mean(0).cpu().tolist()
        self._pending.clear()
        scalars = dict(zip(LOSS_NAMES, means))
        scalars["time/sec_per_step"] = seconds_per_step
        scalars["time/images_per_sec"] = self.cfg.train.batch_size / max(seconds_per_step, 1e-9)
        scalars["lr/G"], scalars["lr/D"] = self.opt_G.param_groups[0]["lr"], self.opt_D.param_groups[0]["lr"]
        for net_name, net in (("G", self.G), ("D", self.D)):
            grads = [p.grad for p in net.parameters() if p.grad is not None]
            if grads:
                scalars[f"grad_norm/{net_name}"] = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item()
            for name, m in net.named_modules():
                if isinstance(m, Hamburger):
                    scalars[f"sigma/{net_name}.{name}"] = m.sigma.item()
                elif hasattr(m, "gamma") and isinstance(getattr(m, "gamma"), nn.Parameter) and m.gamma.dim() == 0:
                    scalars[f"gamma/{net_name}.{name}"] = m.gamma.item()
        self.monitor.scalars(self.step, scalars)
        return scalars

    @torch.no_grad()
    def sample_grid(self) -> None:
        """Fixed-noise grid of G_ema (G without EMA): one row per class shown, PNG + TensorBoard."""
        if not dist.is_main() or self.run_dir is None:
            return
        G = self.ema.shadow if self.ema is not None else self.G
        z, y = fixed_grid_latents(self.cfg, self.device)
        was_training = G.training
        G.eval()
        with self._autocast():
            images = to_uint8(G(z, y))
        G.train(was_training)
        cols = len(z) // (len(set(y.tolist())) if y is not None else 8)
        sheet = save_grid(images, self.run_dir / "samples" / f"grid-{self.step:09d}.png", nrow=cols)
        self.monitor.image("samples", sheet, self.step)

    def evaluate(self) -> dict | None:
        """FID/IS of G_ema through hamgan.metrics; all processes take part. None when unavailable."""
        if self._fid_unavailable:
            return None
        from .metrics.evaluate import evaluate_generator
        G = self.ema.shadow if self.ema is not None else self.G
        e = self.cfg.eval
        try:
            result = evaluate_generator(G, num_samples=e.num_samples, batch_size=e.batch_size,
                                        ref_stats=e.stats or None, device=self.device,
                                        n_classes=self.cfg.model.n_classes, seed=self.cfg.train.seed,
                                        extras=e.extras, inception=e.inception_weights or None, progress=False)
        except HamganError as err:
            self._fid_unavailable = str(err)
            self.monitor.text(f"FID/IS skipped for this run: {err}")
            return None
        if result and dist.is_main():
            self.monitor.scalars(self.step, {f"eval/{k}": v for k, v in result.items()
                                             if isinstance(v, (int, float)) and v is not None})
            self.monitor.text(f"step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()
                                                                  if isinstance(v, float)))
        fid = result.get("fid") if result else None    # every process holds rank 0's result
        if fid is not None and fid < self.best_fid:
            self.best_fid, self.best_step = fid, self.step
        return result

    # ------------------------------------------------------------------ the loop

    def fit(self) -> None:
        t = self.cfg.train
        loader = build_loader(self.dataset, self.split.per, seed=t.seed, rank=self.rank, world=self.world,
                                    accum=self.split.rounds, start=self.batches_consumed, flip=self.cfg.data.flip,
                                    workers=self.cfg.data.workers)
        if self.run_dir is not None and self.step == 0:
            self.sample_grid()
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True)
        tick, tick_step = time.perf_counter(), self.step

        def due(every: int) -> bool:
            return every > 0 and self.step % every == 0

        try:
            while self.step < t.steps:
                values = self.train_step(loader)
                if t.log_every:
                    self._pending.append((self.step, values))
                bar.update(1)
                if (due(t.log_every) or self.step == t.steps) and self._pending:
                    now = time.perf_counter()
                    s = self._log((now - tick) / max(self.step - tick_step, 1))
                    tick, tick_step = now, self.step
                    bar.set_postfix({"D": f"{s['loss/D_real'] + s['loss/D_fake']:.3f}", "G": f"{s['loss/G']:.3f}",
                                     "img/s": f"{s['time/images_per_sec']:.1f}"})
                if due(t.sample_every):
                    self.sample_grid()
                evaluated = due(t.eval_every) and self.evaluate() is not None
                if due(t.snapshot_every) or (evaluated and self.best_step == self.step) or self.step == t.steps:
                    path = self.save_snapshot()
                    if path is not None:
                        self.monitor.text(f"step {self.step}: saved {path}")
        finally:
            bar.close()
        if t.sample_every and self.step % t.sample_every:
            self.sample_grid()


def fixed_grid_latents(cfg: Config, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed noise of the sample grids: up to 10 evenly spaced classes x 8 columns."""
    n = cfg.model.n_classes
    rows = min(n, 10) if n else 8
    g = torch.Generator().manual_seed(derive_seed(cfg.train.seed, "grid"))
    z = torch.randn(rows * 8, cfg.model.z_dim, generator=g)
    y = torch.tensor([(i * n) // rows for i in range(rows)]).repeat_interleave(8) if n else None
    return z.to(device), None if y is None else y.to(device)


def _differences(a: dict, b: dict, prefix: str) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}.{k}")
        elif va != vb:
            out.append(f"{prefix}.{k}: checkpoint {va!r}, now {vb!r}")
    return out


# ---------------------------------------------------------------------- entry points


def make_run_dir(out: Path, name: str) -> Path:
    """out/NNNNN-name, numbered after the highest existing run."""
    out.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-", 1)[0]) for p in out.iterdir() if p.is_dir() and p.name[:5].isdigit()]
    return out / f"{max(numbers, default=-1) + 1:05d}-{name}"


def find_resume(out: Path, name: str | None, resume: str) -> tuple[Path, Path, dict] | None:
    """(run dir, checkpoint path, payload) to resume from, or None when `resume` is 'auto' and
    nothing is there yet. `resume`: 'auto' (newest good snapshot of the newest matching run,
    or of out/NAME), a run directory, or a checkpoint file."""
    if resume != "auto":
        p = Path(resume)
        if p.is_dir():
            found = latest_good_snapshot(p / "checkpoints")
            if found is None:
                raise CheckpointError(f"{p} holds no usable checkpoint in {p / 'checkpoints'}")
            return p, *found
        return p.parent.parent, p, load_checkpoint(p)
    runs = [out / name] if name else sorted((d for d in out.glob("[0-9]" * 5 + "-*") if d.is_dir()), reverse=True)
    for run in runs:
        found = latest_good_snapshot(run / "checkpoints")
        if found is not None:
            return run, *found
    return None


def train(cfg: Config, out: str | Path = "runs", name: str | None = None, resume: str | None = None,
          dataset=None, progress: bool = True, device: str | None = None) -> Path:
    """Run (or continue) training; returns the run directory. Works as one process or under torchrun."""
    env = dist.setup(device)
    try:
        out = Path(out)
        found = None
        if resume:
            found = dist.broadcast_object(find_resume(out, name, resume) if dist.is_main() else None)
            if found is None and resume != "auto":
                raise CheckpointError(f"nothing to resume at {resume}")
        if found is not None:
            run_dir, ckpt_path, _ = found
        else:
            run_dir = dist.broadcast_object((out / name if name else make_run_dir(out, cfg.name)) if dist.is_main() else None)
            if dist.is_main():
                run_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, run_dir, env.device, dataset=dataset, progress=progress)
        if found is not None:
            trainer.load_state_dict(load_checkpoint(ckpt_path, map_location="cpu"), str(ckpt_path))
            trainer.monitor.text(f"resumed from {ckpt_path} at step {trainer.step}")
        if dist.is_main():
            save_config(cfg, run_dir / "config.toml")
            trainer.monitor.text(f"run directory {run_dir}: {env.world} process(es) on {env.device}, global batch "
                                 f"{cfg.train.batch_size} = {env.world} x {cfg.train.accum} x {trainer.split.per}")
        trainer.fit()
        trainer.monitor.close()
        return run_dir
    finally:
        dist.cleanup()


def dry_run(cfg: Config, dataset=None, device: str | None = None) -> dict:
    """Build everything, run one step to warm up and one timed step; report time and memory."""
    import resource
    env = dist.setup(device)
    try:
        trainer = Trainer(cfg, None, env.device, dataset=dataset, progress=False)
        loader = build_loader(trainer.dataset, trainer.split.per, seed=cfg.train.seed, rank=trainer.rank,
                              world=trainer.world, accum=trainer.split.rounds, flip=cfg.data.flip, workers=0)
        trainer.train_step(loader)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        values = trainer.train_step(loader)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        report = {
            "seconds_per_step": time.perf_counter() - start,
            "G_parameters": sum(p.numel() for p in trainer.G.parameters()),
            "D_parameters": sum(p.numel() for p in trainer.D.parameters()),
            "losses": dict(zip(LOSS_NAMES, values.tolist())),
        }
        if env.device.type == "cuda":
            report["peak_gpu_memory_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        report["peak_host_memory_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        report["images_per_second"] = cfg.train.batch_size / report["seconds_per_step"]
        return report
    finally:
        dist.cleanup()
