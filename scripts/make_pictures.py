"""The README's pictures, small PNGs under docs/, from a finished demo run and a finished sweep:

    bash scripts/demo.sh && bash scripts/sweep_context.sh      # once: the demo run and the preset sweep
    python scripts/make_pictures.py                            # docs/*.png

docs/demo.png           real images (left) next to the demo's samples (G_ema of the snapshot it shows), a row per class
docs/ham_maps.png       what the bases of G's Hamburger attend to, on 4 samples (see `hamgan sample --mode ham-maps`)
docs/interpolation.png  class interpolation strips at a fixed z (linear in G's class representation)
docs/sweep.png          the preset sweep's metric curves (as the sweep drew them)
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hamgan.checkpoint import list_snapshots, load_generator  # noqa: E402
from hamgan.cli.demo import choose_snapshot  # noqa: E402
from hamgan.data import open_training_data  # noqa: E402
from hamgan.images import make_grid  # noqa: E402
from hamgan.sample import class_sheet, ham_maps, interpolate  # noqa: E402

COLUMNS = 5
COLOURS = 96  # palette size: README pictures stay at tens of KB


def save_small(sheet: torch.Tensor, path: Path) -> Path:
    """uint8 (3, H, W) -> an optimised palette PNG (the pictures are a few flat colours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet.permute(1, 2, 0).numpy()).quantize(COLOURS).save(path, optimize=True)
    return path


def side_by_side(left: torch.Tensor, right: torch.Tensor, gap: int = 8) -> torch.Tensor:
    """Two uint8 sheets (3, H, W) of equal height -> one, with a white gap."""
    space = torch.full((3, left.shape[1], gap), 255, dtype=torch.uint8)
    return torch.cat([left, space, right], dim=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo", help="the demo run directory (default runs/demo)")
    p.add_argument("--sweep", default="runs/sweep_context", help="the sweep folder (default runs/sweep_context)")
    p.add_argument("--out", default="docs", help="where the PNGs go (default docs)")
    args = p.parse_args()
    out, run = Path(args.out), Path(args.run)
    if not list_snapshots(run / "checkpoints"):
        sys.exit(f"no checkpoint in {run}/checkpoints: run `bash scripts/demo.sh` first")
    G, cfg, payload = load_generator(choose_snapshot(run / "checkpoints", run.parent / "stats", "cpu"))  # the demo's
    names = payload.get("class_names")

    data = open_training_data(cfg)
    n = cfg.model.n_classes
    firsts = {c: [i for i in range(50 * n) if data[i][1] == c][:COLUMNS] for c in range(n)}
    real = make_grid(torch.stack([data[i][0] for c in range(n) for i in firsts[c]]), COLUMNS)
    fake = make_grid(class_sheet(G, columns=COLUMNS, seed=0).images, COLUMNS)
    written = [save_small(side_by_side(real, fake), out / "demo.png")]

    sheet = next(iter(ham_maps(G, num=4, class_names=names, seed=0).values()))
    written.append(save_small(make_grid(sheet.images, sheet.nrow), out / "ham_maps.png"))
    strips = interpolate(G, over="class", num=4, steps=8, classes=[0, 5, 3, 8, 1], class_names=names, seed=0)
    written.append(save_small(make_grid(strips.images, strips.nrow), out / "interpolation.png"))
    plot = Path(args.sweep) / "sweep.png"
    if plot.is_file():
        written.append(Path(shutil.copyfile(plot, out / "sweep.png")))
    else:
        print(f"no {plot}: run `bash scripts/sweep_context.sh` for the sweep's plot")
    for path in written:
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
