"""One evaluation protocol for a run's checkpoint, shared by `hamgan eval`, `hamgan sweep` and the
demo: the generator (G_ema) against reference statistics of the run's data, with KID,
precision/recall, conditional accuracy (classifiers of the run's data, cached next to the
statistics) and intra-class FID/KID; reference statistics of the run's data are made once
when asked for and missing."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

from ..errors import HamganError


def reference_stats(cfg, path: str | os.PathLike, *, num: int, device="cpu", inception=None,
                    progress: bool = True) -> Path:
    """`path` if it exists, else the statistics of `num` images of the run's data written there
    (labelled, every feature kept: for KID and intra-class metrics)."""
    from .. import __version__
    from .classifier import training_data
    from .evaluate import evaluate_images
    path = Path(path)
    if path.is_file():
        return path
    dataset = training_data(cfg)
    if num > len(dataset):
        raise HamganError(f"reference statistics of {num} images asked for, but the data holds {len(dataset)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few images: the FID note goes with every result
        stats, _ = evaluate_images(dataset, num=num, keep_features=num, device=device, inception=inception,
                                   progress=progress, desc="reference statistics")
    stats.provenance.update(source=cfg.data.source, hamgan=__version__, subset_seed=0)
    return stats.save(path)


def evaluate_checkpoint(ckpt: str | os.PathLike, *, num_samples: int, stats=None, batch_size: int = 100,
                        device="cpu", seed: int = 0, extras: bool = True, accuracy: bool = True,
                        data: Optional[str] = None, cache_dir=None, inception=None, use_ema: bool = True,
                        truncation: Optional[float] = None, progress: bool = True, **options) -> dict:
    """Evaluate a checkpoint's generator (G_ema unless `use_ema` is off, or the checkpoint has
    none): `evaluate_generator`'s result plus step and ema (whether G_ema was used). `accuracy`:
    conditional accuracy with the classifiers of the run's data (`data` instead of
    cfg.data.source), read from or trained into `cache_dir` (default: the statistics' folder,
    else the run directory). `options` go to `evaluate_generator` (splits, quantize, resize)."""
    from ..checkpoint import load_generator
    from .classifier import get_classifiers, training_data
    from .evaluate import evaluate_generator
    G, cfg, payload = load_generator(ckpt, use_ema=use_ema, device=device)
    classifiers, notes = None, []
    if cfg.model.n_classes and accuracy:
        if cache_dir is None:
            cache_dir = Path(stats).parent if isinstance(stats, (str, os.PathLike)) else Path(ckpt).resolve().parent.parent
        try:
            dataset = training_data(cfg, data)
        except HamganError as e:
            if data is not None:   # asked for: the user must hear why it does not fit
                raise
            notes.append(f"conditional accuracy skipped: {e} (--data)")   # the run's data is not here
        else:
            classifiers = get_classifiers(dataset, cache_dir, device=device, progress=progress)
    names = payload.get("class_names") if cfg.model.n_classes else None
    if classifiers is not None:
        if names is not None and list(names) != classifiers.class_names:
            raise HamganError(f"{ckpt} was trained on classes {names[:3]}... but the data has "
                              f"{classifiers.class_names[:3]}...: give the data it was trained on")
        names = classifiers.class_names
    result = evaluate_generator(G, num_samples=num_samples, batch_size=batch_size, ref_stats=stats, device=device,
                                n_classes=cfg.model.n_classes, truncation=truncation, seed=seed, extras=extras,
                                progress=progress, inception=inception, classifiers=classifiers, class_names=names,
                                **options)
    return {**result, "notes": result["notes"] + notes, "step": payload.get("step"),
            "ema": use_ema and payload.get("G_ema") is not None}


def ceiling_ratios(result: dict, name: str) -> list[float]:
    """Each class's accuracy / its ceiling under one classifier ('class', 'shape', 'inception');
    classes with no samples or no ceiling are left out, as is a classifier not measured."""
    if f"acc_{name}" not in result:
        return []
    return [a / c for a, c in zip(result[f"acc_{name}_per_class"], result[f"acc_{name}_ceiling_per_class"])
            if a is not None and c]


def accuracy_lines(result: dict) -> list[str]:
    """The conditional accuracies of a result, one line each, with their ceilings and worst class."""
    lines = []
    for name, what in (("class", "class accuracy"), ("shape", "shape accuracy (colour-blind)"),
                       ("inception", "Inception accuracy")):
        if f"acc_{name}" not in result:
            continue
        acc, ceiling = result[f"acc_{name}"], result[f"acc_{name}_ceiling"]
        ratios = ceiling_ratios(result, name)
        worst = f", worst class {min(ratios):.2f} of its ceiling" if ratios else ""
        lines.append(f"{what:<30s} {acc:.4f}  (ceiling {ceiling:.4f} on held-out real images{worst})")
    return lines
