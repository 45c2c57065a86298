"""Checkpoint files: atomic writes, validated reads, and loading a generator from one.

A checkpoint is one `torch.save`d dict, readable with ``torch.load(weights_only=True)``
(only tensors, numbers, strings, lists, tuples and dicts inside), holding at least
``format``, ``version``, ``config`` (the resolved config as a dict) and ``step``; a
training snapshot adds the networks, optimizers, RNG states and data position
(see `hamgan.train`).

A checkpoint keeps the model semantics it was trained with. Format version 2 made the
official normalisation the default (`model.sn`, `model.bn_momentum`, `model.bn_running_var`,
and `model.bn_eps` 1e-3); a version-1 checkpoint's config has no such keys, and reading it
fills them with what hamgan computed when it was written (`LEGACY_MODEL`), so it loads, samples
and resumes exactly as before.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from .atomic import atomic_write
from .errors import HamganError

FORMAT = "hamgan-checkpoint"
VERSION = 2
# Model-config keys added by each format version, with the semantics checkpoints of the older
# formats were trained with: torch's batch norm (eps 1e-5, momentum 0.1, unbiased running
# variance) and exact spectral norm everywhere.
LEGACY_MODEL = {2: {"bn_eps": 1e-5, "bn_momentum": 0.1, "bn_running_var": "unbiased", "sn": "exact"}}


class CheckpointError(HamganError):
    """A checkpoint that is missing, damaged, not hamgan's, or does not fit a config."""


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """Write `payload` to `path` atomically (`hamgan.atomic`): a kill or a full disk mid-write
    leaves the previous file at `path` intact; the latter raises a WriteError."""
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
    return Path(path)


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise CheckpointError unless `path` is a whole torch zip archive whose every member
    matches its CRC-32 (catches truncation and flipped bits, which unpickling alone may not;
    reads the file once, ~1 s per GB from the page cache)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path} is damaged or not a checkpoint ({type(e).__name__}: {e})") from None
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: {bad} does not match its checksum")


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read and validate a checkpoint; raises CheckpointError with the reason."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, wrong file type, ...
        raise CheckpointError(f"{path} is damaged or not a checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hamgan checkpoint")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer hamgan (format version {payload['version']})")
    return upgrade(payload)


def upgrade(payload: dict) -> dict:
    """Fill the model-config keys that formats newer than `payload`'s added with the values its
    networks were trained with (`LEGACY_MODEL`), in place; returns `payload`."""
    model = payload.get("config", {}).get("model")
    if model is not None:
        for version, keys in LEGACY_MODEL.items():
            if payload.get("version", 0) < version:
                for key, value in keys.items():
                    model.setdefault(key, value)
    return payload


def load_payload(path: str | os.PathLike) -> dict:
    """A checkpoint file, or an exported model folder (`hamgan.export`; the folder or its
    .safetensors file), read into the same form: config, step, class_names, G, G_ema, ..."""
    from .export import is_export, load_export

    return load_export(path) if is_export(path) else load_checkpoint(path)


def load_generator(path: str | os.PathLike, use_ema: bool = True, device="cpu"):
    """The generator of a checkpoint or exported folder, in eval mode, built from the config it
    carries.

    Returns (G, config, payload)."""
    from .config import from_dict, Config
    from .models import build_generator

    payload = load_payload(path)
    cfg = from_dict(Config, payload["config"])
    key = "G_ema" if use_ema and payload.get("G_ema") is not None else "G"
    if payload.get(key) is None:
        hint = (", only G_ema: use it (`--ema` with `hamgan eval --protocol paper`, else leave out `--no-ema`)"
                if payload.get("G_ema") is not None else "")
        raise CheckpointError(f"{path} holds no {key} weights{hint}")
    G = build_generator(cfg.model)
    load_state(G, payload[key], f"{path} [{key}]")
    return G.to(device).eval(), cfg, payload


def load_state(module: torch.nn.Module, state: dict, what: str) -> None:
    """load_state_dict with a message that says what does not fit."""
    missing, unexpected = [], []
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and hasattr(state[k], "shape") and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"shape mismatches (e.g. {wrong[:3]})" if wrong else ""]
        raise CheckpointError(f"{what} does not fit the network built from the config: "
                              + "; ".join(p for p in parts if p))
    module.load_state_dict(state)


# --------------------------------------------------------------------------- snapshots of a run

SNAPSHOT_GLOB = "ckpt-*.pt"


def snapshot_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt-{step:09d}.pt"


def list_snapshots(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Snapshot files of a run, oldest first."""
    return sorted(Path(ckpt_dir).glob(SNAPSHOT_GLOB))


def latest_good_snapshot(ckpt_dir: str | os.PathLike, warn=print) -> tuple[Path, dict] | None:
    """The newest snapshot that loads; damaged ones (a run killed mid-write on a filesystem
    without atomic rename, a truncated copy) are reported through `warn` and skipped."""
    for path in reversed(list_snapshots(ckpt_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            warn(f"skipping {e}")
    return None


def prune_snapshots(ckpt_dir: str | os.PathLike, keep_last: int, keep: set[Path] = frozenset(),
                    warn=print) -> None:
    """Delete all but the newest `keep_last` (>= 1) snapshots and those in `keep` (the best-FID
    one), once the newest is verified whole: rotation never removes the last good checkpoint."""
    snaps = list_snapshots(ckpt_dir)
    old = [p for p in snaps[:max(len(snaps) - max(keep_last, 1), 0)] if p not in keep]
    if not old:
        return
    try:
        verify_checkpoint(snaps[-1])
    except CheckpointError as e:
        warn(f"kept the older checkpoints: {e}")
        return
    for path in old:
        path.unlink(missing_ok=True)
