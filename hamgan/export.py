"""Portable model folders: `hamgan export` writes them; `load_export` (hence `hamgan sample`,
`hamgan eval`, `hamgan.from_pretrained`, `torch.hub.load`) reads them.

A folder holds

- ``model.safetensors``: the generator weights, state-dict keys prefixed by ``G_ema.`` and/or
  ``G.`` (safetensors: a JSON header and raw little-endian tensors; no pickle, so nothing runs
  when it is read; readable from any language, memory-mapped by the reader);
- ``config.json``: ``format``, ``version``, ``config`` (the resolved hamgan config: what rebuilds
  G, complete for checkpoint format ``checkpoint_version``), ``weights`` (which generators are
  inside, the default first), ``step``, ``class_names``, ``provenance`` and the recorded
  ``evaluations``;
- ``README.md``: the model card (networks, training, evaluations with their protocol, how to
  load it), and ``class_sheet.png`` (+ its legend ``class_sheet.txt``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from . import __version__
from .checkpoint import VERSION as CHECKPOINT_VERSION
from .checkpoint import CheckpointError, load_checkpoint, load_state, upgrade
from .errors import HamganError

FORMAT = "hamgan-export"
VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
GENERATORS = ("G_ema", "G")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


def is_export(path: str | os.PathLike) -> bool:
    """Whether `path` is to be read as an export: a folder or a .safetensors file."""
    path = Path(path)
    return path.is_dir() or path.suffix == ".safetensors"


def load_export(path: str | os.PathLike) -> dict:
    """An export folder (or a .safetensors file in one) as a checkpoint-like dict: ``config``,
    ``step``, ``class_names``, ``G_ema`` / ``G`` (state dicts, None when absent), ``provenance``,
    ``evaluations``. Raises CheckpointError naming what is wrong."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    folder, weights_path = (path, path / WEIGHTS_FILE) if path.is_dir() else (path.parent, path)
    meta_path = folder / CONFIG_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        missing = " and ".join(p.name for p in (meta_path, weights_path) if not p.is_file())
        raise CheckpointError(f"{folder} is not an exported hamgan model: {missing} missing (`hamgan export "
                              f"--ckpt CKPT --out DIR` writes one; a weights file without its config.json loads "
                              f"through a preset: torch.hub.load(<hamgan>, <preset>, source='local', weights=...))")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{meta_path} is damaged ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a hamgan export's config (format {FORMAT!r} expected)")
    if meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{folder} was exported by a newer hamgan (format version {meta['version']})")
    try:
        tensors = load_file(weights_path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights_path} is damaged or incomplete ({e})") from None
    states: dict[str, dict] = {}
    for key, value in tensors.items():
        net, _, name = key.partition(".")
        if net not in GENERATORS or not name:
            raise CheckpointError(f"{weights_path}: unexpected tensor {key!r} (keys are G_ema.* / G.*)")
        states.setdefault(net, {})[name] = value
    # the model semantics of the checkpoint format it was exported from, as load_checkpoint gives them
    return upgrade({"version": meta.get("checkpoint_version", 0), "config": meta["config"], "step": meta.get("step"),
                     "class_names": meta.get("class_names"), **{net: states.get(net) for net in GENERATORS},
                     "provenance": meta.get("provenance"), "evaluations": meta.get("evaluations", [])})


# --------------------------------------------------------------------------- writing


def _recorded_evaluations(ckpt: Path, step: int, results: list[Path]) -> list[dict]:
    """In-training evaluations of this step (metrics.jsonl of the run the checkpoint belongs to)
    and the `hamgan eval --out` files given, each checked to be about this checkpoint."""
    found = []
    metrics = ckpt.resolve().parent.parent / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue        # a line cut by a crash; the others stand
            if row.get("step") == step and any(k.startswith("eval/") for k in row):
                values = {k[len("eval/"):]: v for k, v in row.items() if k.startswith("eval/")}
                found.append({"source": f"{metrics.name} (during training)", "step": step, **values,
                              "protocol": row.get("protocol")})
    for path in results:
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise HamganError(f"--results {path}: cannot read it as JSON ({e})") from None
        if not isinstance(result, dict) or not any(k in result for k in ("fid", "is_mean")):
            raise HamganError(f"--results {path}: not a `hamgan eval --out` result (no fid / is_mean)")
        if result.get("step") != step:
            raise HamganError(f"--results {path}: evaluates step {result.get('step')} ({result.get('ckpt')}), "
                              f"but {ckpt} is step {step}")
        found.append({"source": Path(path).name, **result, "protocol": result.get("protocol")})
    return found


def _draw_sheet(G, class_names: list[str], folder: Path, rows: int, device) -> Path:
    """A class sheet (up to `rows` evenly spaced classes x 8 z), or a grid when unconditional."""
    from . import sample as S

    G = G.to(device)
    if G.n_classes:
        classes = sorted({(i * G.n_classes) // min(rows, G.n_classes) for i in range(min(rows, G.n_classes))})
        sheet = S.class_sheet(G, classes, 8, class_names=class_names, seed=0, batch=32)
    else:
        sheet = S.grid(G, rows * 8, nrow=8, seed=0, batch=32)
    return S.save_sheet(sheet, folder / "class_sheet.png", ["seed 0, fp32"])


def export(ckpt: str | os.PathLike, out: str | os.PathLike, weights: str | None = None,
           results: list[str | os.PathLike] = (), sheet_rows: int = 10, device="cpu") -> Path:
    """Write the export folder `out` from checkpoint `ckpt` (see the module docstring).

    `weights`: "G_ema", "G" or "both" (default: G_ema when the checkpoint has one, else G).
    `results`: `hamgan eval --out` JSON files of this checkpoint to record (besides the
    in-training evaluations of its step, found in its run's metrics.jsonl). `sheet_rows`:
    classes on the class sheet (0: no sheet). The folder appears complete or not at all; an
    existing non-empty `out` is refused."""
    from safetensors.torch import save_file

    from .config import Config, from_dict
    from .model_card import model_card
    from .models import build_generator
    from .sample import class_names_of

    ckpt, out = Path(ckpt), Path(out)
    payload = load_checkpoint(ckpt)
    cfg = from_dict(Config, payload["config"])
    have = [net for net in GENERATORS if payload.get(net) is not None]
    if not have:
        raise CheckpointError(f"{ckpt} holds no generator weights")
    chosen = {None: have[:1], "both": have, "G_ema": ["G_ema"], "G": ["G"]}.get(weights)
    if chosen is None:
        raise HamganError(f"--weights {weights!r}: expected G_ema, G or both")
    if any(net not in have for net in chosen):
        raise HamganError(f"--weights {weights}: {ckpt} holds only {' and '.join(have)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HamganError(f"--out {out} exists and is not empty: choose a new folder")

    G = build_generator(cfg.model)
    for net in reversed(chosen):            # each fits the network (else: what does not); G ends as the default
        load_state(G, payload[net], f"{ckpt} [{net}]")
    G.eval()
    step = payload.get("step")
    names = class_names_of(payload, cfg.model.n_classes)
    evaluations = _recorded_evaluations(ckpt, step, [Path(r) for r in results])
    meta = {"format": FORMAT, "version": VERSION, "hamgan_version": __version__,
            "checkpoint_version": CHECKPOINT_VERSION, "config": payload["config"],
            "weights": chosen, "step": step, "class_names": names,
            "best_fid": payload.get("best_fid"), "best_step": payload.get("best_step"),
            "provenance": {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": _sha256(ckpt),
                           "exported": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                           **({"origin": payload["provenance"]} if payload.get("provenance") else {})},
            "evaluations": evaluations}

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tensors = {f"{net}.{k}": v.contiguous() for net in chosen for k, v in payload[net].items()}
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": "pt", "hamgan": FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        sheet = _draw_sheet(G, names, tmp, sheet_rows, device) if sheet_rows > 0 else None
        (tmp / "README.md").write_text(model_card(cfg, meta, sheet is not None))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
