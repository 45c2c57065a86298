"""`hamgan sample`: images from the generator of a checkpoint or exported folder (G_ema unless
--no-ema), one mode per call: grid, class-sheet, interpolation, truncation, dump (PNGs / .npz for
external FID/IS scripts) and ham-maps (what each Hamburger does). Checkpoints and exported folders
carry their config; they load on any machine.
See `hamgan.sample` for what each mode draws."""
from __future__ import annotations

import math
from pathlib import Path

from . import resolve_device

MODES = ("grid", "class-sheet", "interpolation", "truncation", "dump", "ham-maps")
# --num means: images (grid, dump), columns (class-sheet), strips (interpolation), rows (truncation, ham-maps)
DEFAULT_NUM = {"grid": 64, "class-sheet": 8, "interpolation": 4, "truncation": 4, "dump": 1000, "ham-maps": 4}


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="a hamgan checkpoint or exported model folder (they carry their "
                   "config)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created)")
    p.add_argument("--mode", required=True, choices=MODES, help="what to draw")
    p.add_argument("--num", type=int, metavar="N", help="grid / dump: images (64 / 1000); class-sheet: columns (8); "
                   "interpolation: strips (4); truncation, ham-maps: rows (4)")
    p.add_argument("--seed", type=int, default=0, help="same seed (and --batch for grid/dump/ham-maps) -> same bytes "
                   "(default 0)")
    p.add_argument("--classes", metavar="LIST", help="comma-separated class names (from the checkpoint) or indices, "
                   "e.g. 3,17 (default: all / random)")
    p.add_argument("--truncation", type=float, metavar="T", help="draw z from a normal truncated to [-T, T] "
                   "(every mode; in truncation mode T is added to the levels)")
    p.add_argument("--truncation-levels", default="none,2,1,0.5,0.25", metavar="LIST",
                   help="truncation mode: the columns' T, 'none' = untruncated (default none,2,1,0.5,0.25)")
    p.add_argument("--nrow", type=int, help="grid: images per row (default: square-ish)")
    p.add_argument("--steps", type=int, default=8, help="interpolation: images per strip, endpoints included (8)")
    p.add_argument("--interp", choices=("linear", "slerp"), default="slerp",
                   help="interpolation in z: linear or spherical (default slerp); classes are always linear")
    p.add_argument("--format", choices=("png", "npz", "both"), default="both",
                   help="dump: PNGs in class folders, one samples.npz (uint8 NHWC + labels), or both")
    p.add_argument("--with-d", action="store_true", help="ham-maps: also D's Hamburgers (on the same images)")
    p.add_argument("--no-ema", action="store_true", help="use G instead of its EMA copy G_ema")
    p.add_argument("--batch", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (dump)")


def _levels(text: str) -> list[float]:
    from ..errors import HamganError
    try:
        levels = [math.inf if s.strip().lower() in ("none", "inf") else float(s) for s in text.split(",")]
    except ValueError:
        raise HamganError(f"--truncation-levels: expected numbers or 'none', got {text!r}") from None
    if not levels or any(not T > 0 for T in levels):
        raise HamganError(f"--truncation-levels must be > 0, got {text!r}")
    return levels


def run(args):
    from .. import sample as S
    from ..checkpoint import CheckpointError, load_generator, load_state
    from ..errors import HamganError

    num = DEFAULT_NUM[args.mode] if args.num is None else args.num
    for name, value, low in (("--num", num, 1), ("--batch", args.batch, 1), ("--steps", args.steps, 2),
                             ("--nrow", 1 if args.nrow is None else args.nrow, 1)):
        if value < low:
            raise HamganError(f"{name} must be at least {low}, got {value}")
    if args.truncation is not None and not args.truncation > 0:
        raise HamganError(f"--truncation must be > 0, got {args.truncation}")
    levels = _levels(args.truncation_levels) if args.mode == "truncation" else None
    device = resolve_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")

    G, cfg, payload = load_generator(args.ckpt, use_ema=not args.no_ema, device=device)
    weights = "G_ema" if not args.no_ema and payload.get("G_ema") is not None else "G"
    names = S.class_names_of(payload, G.n_classes)
    classes = S.parse_classes(args.classes, names) if args.classes else None
    out = Path(args.out)
    header = [f"checkpoint: {args.ckpt} (step {payload.get('step')}, {cfg.name}), weights: {weights}",
              f"seed {args.seed}, batch {args.batch}, {device.type} {precision}"
              + (f", truncation {args.truncation}" if args.truncation is not None else "")]
    print(f"{args.ckpt}: step {payload.get('step')}, {weights}, {G.resolution} px, "
          f"{G.n_classes or 'no'} classes; {device} {precision}")
    common = dict(class_names=names, seed=args.seed, batch=args.batch, precision=precision)

    def save(sheet, filename):
        path = S.save_sheet(sheet, out / filename, header)
        rows = len(sheet.images) // sheet.nrow
        print(f"wrote {path} ({rows} x {sheet.nrow} images) and its legend {path.with_suffix('.txt')}")

    if args.mode == "grid":
        save(S.grid(G, num, nrow=args.nrow, classes=classes, truncation=args.truncation, **common), "grid.png")
    elif args.mode == "class-sheet":
        save(S.class_sheet(G, classes, num, truncation=args.truncation, **common), "class_sheet.png")
    elif args.mode == "interpolation":
        save(S.interpolate(G, "z", num=num, steps=args.steps, kind=args.interp, classes=classes,
                           truncation=args.truncation, **common), f"interp_z_{args.interp}.png")
        if G.n_classes >= 2:
            save(S.interpolate(G, "class", num=num, steps=args.steps, classes=classes, truncation=args.truncation,
                               **common), "interp_class.png")
        else:
            print("(no class interpolation: the generator has fewer than 2 classes)")
    elif args.mode == "truncation":
        if args.truncation is not None and args.truncation not in levels:
            levels = sorted(levels + [args.truncation], reverse=True)
        save(S.truncation_sheet(G, levels, num=num, classes=classes, **common), "truncation.png")
    elif args.mode == "dump":
        result = S.dump(G, out, num, format=args.format, classes=classes, truncation=args.truncation,
                        progress=not args.no_progress, **common)
        if result["png_dir"] is not None:
            where = f"in {len(result['folders'])} class folders under" if result["folders"] else "in"
            print(f"wrote {num} PNGs {where} {result['png_dir']}")
        if result["npz"] is not None:
            print(f"wrote {result['npz']} (images uint8 (N, H, W, 3), labels, class_names)")
    elif args.mode == "ham-maps":
        D = None
        if args.with_d:
            from ..models import build_discriminator
            if payload.get("D") is None:
                raise CheckpointError(f"{args.ckpt} holds no discriminator weights (--with-d)")
            D = build_discriminator(cfg.model)
            load_state(D, payload["D"], f"{args.ckpt} [D]")
            D = D.to(device).eval()
        sheets = S.ham_maps(G, num, D=D, classes=classes, class_names=names, truncation=args.truncation,
                            seed=args.seed, precision=precision)
        for key, sheet in sheets.items():
            save(sheet, f"ham_{key}.png")
