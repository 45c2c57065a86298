"""The README.md of an exported model folder: what the model is, how it was trained and evaluated
(every recorded result with its protocol), and how to load it."""
from __future__ import annotations

import json

from .models import describe

METRICS = (("num_samples", "samples", "d"), ("fid", "FID", ".2f"), ("is_mean", "IS", ".2f"),
           ("kid_mean", "KID", ".5f"), ("precision", "precision", ".3f"), ("recall", "recall", ".3f"))


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _evaluations(evaluations: list[dict]) -> list[str]:
    if not evaluations:
        return ["No evaluation is recorded for this checkpoint. Evaluate it "
                "(`hamgan eval --ckpt <this folder> --stats REF.npz --out result.json`) and export again "
                "with `--results result.json` to record it here.", ""]
    shown = [m for m in METRICS if any(e.get(m[0]) is not None for e in evaluations)]
    lines = ["| source | step | generator | " + " | ".join(m[1] for m in shown) + " |",
             "|---" * (3 + len(shown)) + "|"]
    for e in evaluations:
        protocol = e.get("protocol") if isinstance(e.get("protocol"), dict) else {}
        gen = protocol.get("generator") or {True: "G_ema", False: "G"}.get(e.get("ema"), "-")
        lines.append(f"| {e['source']} | {_fmt(e.get('step'), 'd')} | {gen} | "
                     + " | ".join(_fmt(e.get(key), spec) for key, _, spec in shown) + " |")
    lines.append("")
    for e in evaluations:
        protocol = e.get("protocol")
        lines.append(f"Protocol of {e['source']}:")
        if isinstance(protocol, dict):
            lines += ["```json", json.dumps(protocol, indent=1, sort_keys=True), "```"]
        else:
            named = f"named `{protocol}` only" if protocol else "not recorded"
            lines.append(f"{named} (a result written before hamgan recorded the whole protocol); do not compare "
                         "it with numbers computed under another protocol.")
        lines.append("")
    return lines


def _training(cfg, meta: dict) -> list[str]:
    t, step = cfg.train, meta.get("step")
    lines = []
    origin = (meta.get("provenance") or {}).get("origin")
    if origin and origin.get("source") == "tensorflow":
        lines += [f"Imported from the TensorFlow checkpoint `{origin.get('checkpoint')}` (global step "
                  f"{origin.get('global_step')}) by `hamgan import-tf`; the training below is what the config "
                  f"says, not a hamgan run.", ""]
    seen = None if step is None else step * t.batch_size * t.d_steps
    lines += [f"- data: `{cfg.data.source}`, {cfg.model.resolution} px"
              + (f", {cfg.model.n_classes} classes" if cfg.model.n_classes else ", unconditional"),
              f"- steps: {_fmt(step, ',d')} of {t.steps:,} (batch {t.batch_size:,}, {t.d_steps} D step(s) per G step"
              + (f"; D saw {seen:,} real images)" if seen is not None else ")"),
              f"- Adam: lr G {t.lr_g:g}, D {t.lr_d:g}; betas G {tuple(t.betas_g)}, D {tuple(t.betas_d)}",
              "- EMA of G: " + (f"decay {t.ema_decay:g} from step {t.ema_start:,}" if t.ema else "none"),
              f"- mixed precision: {t.amp}; seed {t.seed}"]
    if meta.get("best_fid") is not None and meta.get("best_step", -1) >= 0:
        lines.append(f"- best in-training FID: {meta['best_fid']:.2f} at step {meta['best_step']:,}")
    return lines + [""]


def model_card(cfg, meta: dict, has_sheet: bool) -> str:
    """README.md text for an export folder; `meta` is its config.json content."""
    weights = meta["weights"]
    m = cfg.model
    kind = f"class-conditional ({m.n_classes} classes)" if m.n_classes else "unconditional"
    lines = [f"# {cfg.name}: a hamgan generator", "",
             f"A {kind} {m.resolution} px GAN generator with Hamburger (matrix decomposition) context blocks, "
             f"exported by hamgan {meta['hamgan_version']} from `{meta['provenance']['checkpoint']}` "
             f"(step {_fmt(meta.get('step'), ',d')}).", "",
             "| file | what |", "|---|---|",
             f"| `model.safetensors` | generator weights: {' and '.join(f'`{w}.*`' for w in weights)} "
             f"(state-dict keys of `hamgan.models.Generator`, prefixed) |",
             "| `config.json` | the resolved hamgan config (rebuilds G), class names, step, provenance, "
             "evaluations |"]
    if has_sheet:
        lines.append("| `class_sheet.png` | samples, one row per class; legend in `class_sheet.txt` |")
    lines += ["", "## Load it", "", "```python", "import torch, hamgan",
              f"G = hamgan.from_pretrained(\"path/to/this/folder\")   # {weights[0]}; eval mode",
              "z = torch.randn(8, G.z_dim)"]
    lines += (["y = torch.randint(0, G.n_classes, (8,))", "images = G(z, y)                 # (8, 3, H, W) in [-1, 1]"]
              if m.n_classes else ["images = G(z)                    # (8, 3, H, W) in [-1, 1]"])
    lines += ["```", "",
              "The same from a clone of hamgan without installing it: `torch.hub.load(\"path/to/hamgan\", "
              "\"<preset>\", source=\"local\", weights=\"path/to/this/folder\")` (presets: hamgan_baby, "
              "hamgan_strong, sagan). The command line takes the folder wherever it takes a checkpoint: "
              "`hamgan sample --ckpt <folder> --mode class-sheet --out sheets`, "
              "`hamgan eval --ckpt <folder> --stats REF.npz`.", "",
              "Why safetensors: the file is a JSON header and raw tensors, so reading it runs no code "
              "(`torch.load(weights_only=True)` is a restricted unpickler, which has had bypasses); it is "
              "memory-mapped on reading; and any framework or language reads it (`safetensors.safe_open`), "
              "not only PyTorch with hamgan installed.", "",
              "## Networks", "", "As trained (D is described too; only G is in this folder):", "",
              "```", describe(cfg).rstrip(), "```", "",
              "## Training", ""]
    lines += _training(cfg, meta)
    lines += ["## Evaluation", ""] + _evaluations(meta.get("evaluations") or [])
    if has_sheet:
        lines += ["## Class sheet", "", "![class sheet](class_sheet.png)", "",
                  "One row per class (named in `class_sheet.txt`), the same 8 latents in every row (seed 0), "
                  "NMF started from the same bases in every image.", ""]
    return "\n".join(lines)
