"""`hamgan eval`: FID and IS (plus KID and precision/recall, k = 3) of a checkpoint's generator or
of an image folder, against reference statistics from `hamgan fid-stats`; printed and written
as JSON.

Protocols: 'paper' = 50,176 samples (HamGAN / SAGAN, against ImageNet validation statistics);
'studiogan' = 50,000 samples (against the train set). The statistics file decides the split."""
import json
import sys
import time
import warnings
from pathlib import Path

from . import resolve_device

PROTOCOLS = {"paper": 50_176, "studiogan": 50_000}
DEFAULT_NUM = 50_000


def add_arguments(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="checkpoint whose generator to evaluate")
    src.add_argument("--images", metavar="DIR", help="evaluate a folder of images instead (searched recursively; "
                     "all of one size, the size the statistics were made at)")
    p.add_argument("--stats", help="reference statistics (.npz from `hamgan fid-stats`); without: IS only")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), help="paper: 50,176 samples (use validation "
                   "statistics); studiogan: 50,000 samples (use train statistics)")
    p.add_argument("--num", type=int, default=None, help=f"samples to generate (default {DEFAULT_NUM:,}, or the "
                   "protocol's); with --images a random subset (default: all images)")
    p.add_argument("--batch", type=int, default=100, help="images per generator / Inception batch (default 100)")
    p.add_argument("--no-ema", action="store_true", help="evaluate G instead of its EMA copy G_ema")
    p.add_argument("--truncation", type=float, default=None, metavar="T",
                   help="draw z from a normal truncated to [-T, T] (default: no truncation)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and labels (default 0)")
    p.add_argument("--no-extras", action="store_true", help="skip KID and precision/recall")
    p.add_argument("--out", metavar="JSON", help="also write the results to this file")
    p.add_argument("--inception-weights", metavar="PATH", help="pytorch-fid's Inception weights file "
                   "(default: $HAMGAN_INCEPTION_WEIGHTS, then the torch hub cache, then download)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="image-reading worker processes for --images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _num_samples(args) -> int | None:
    from ..errors import HamganError
    wanted = PROTOCOLS.get(args.protocol)
    if args.num is not None and wanted is not None and args.num != wanted:
        raise HamganError(f"--num {args.num} contradicts --protocol {args.protocol} ({wanted:,} samples)")
    num = args.num if args.num is not None else wanted
    if num is not None and num < 2:
        raise HamganError(f"--num must be at least 2, got {num}")
    return num


def _print(result: dict) -> None:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    print(f"samples    {result['num_samples']}")
    print(f"FID        {f(result['fid'], '.4f')}")
    print(f"IS         {f(result['is_mean'], '.4f')} +- {f(result['is_std'], '.4f')}")
    if "kid_mean" in result:
        print(f"KID        {f(result['kid_mean'], '.6f')} +- {f(result['kid_std'], '.6f')}")
        print(f"precision  {f(result['precision'], '.4f')}   recall {f(result['recall'], '.4f')}  (k = 3)")
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)


def run(args):
    from ..errors import HamganError
    from ..metrics.evaluate import evaluate_generator, evaluate_images
    from ..metrics.fid import FIDStats
    from ..metrics.inception import get_extractor

    num = _num_samples(args)
    device = resolve_device(args.device)
    reference = FIDStats.load(args.stats) if args.stats else None
    extractor = get_extractor(device, args.inception_weights)
    extras = not args.no_extras
    info = {"protocol": args.protocol, "stats": args.stats, "seed": args.seed}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # notes are printed from the result instead
        if args.ckpt:
            from ..checkpoint import load_generator
            G, cfg, payload = load_generator(args.ckpt, use_ema=not args.no_ema, device=device)
            num = DEFAULT_NUM if num is None else num
            result = evaluate_generator(G, num_samples=num, batch_size=args.batch, ref_stats=reference,
                                        device=device, n_classes=cfg.model.n_classes, truncation=args.truncation,
                                        seed=args.seed, extras=extras, progress=not args.no_progress,
                                        inception=extractor)
            used_ema = not args.no_ema and payload.get("G_ema") is not None
            info.update(ckpt=args.ckpt, step=payload.get("step"), ema=used_ema, truncation=args.truncation)
        else:
            if args.truncation is not None or args.no_ema:
                raise HamganError("--truncation and --no-ema apply to --ckpt, not to --images")
            from ..metrics.sources import ImageFiles
            _, result = evaluate_images(ImageFiles(args.images), batch_size=args.batch, num=num,
                                        ref_stats=reference, extras=extras, device=device, inception=extractor,
                                        workers=args.workers, seed=args.seed, progress=not args.no_progress)
            info.update(images=str(Path(args.images).resolve()))
    if reference is None:
        result["notes"].append("no --stats given: FID (and KID, precision/recall) not computed")
    result = {**result, **info, "inception_weights": extractor.digest,
              "reference_count": None if reference is None else reference.count,
              "seconds": round(time.perf_counter() - start, 2)}
    _print(result)
    if args.out:
        from ..atomic import write_text
        write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.out}")
