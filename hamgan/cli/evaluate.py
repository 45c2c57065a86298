"""`hamgan eval`: FID and IS (plus KID and precision/recall, k = 3) of a checkpoint's generator or
of an image folder, against reference statistics from `hamgan fid-stats`; for a conditional
generator also its conditional accuracy under classifiers of its training data (trained on
first use and cached next to the statistics) and intra-class FID/KID; printed and written as
JSON with a "protocol" object (`hamgan.metrics.protocol`) that records every convention the
numbers depend on. `hamgan eval --compare A.json B.json` lists the protocol fields in which two
results differ.

Protocols: 'paper' = the official HamGAN evaluation (raw G, 50,176 float images, TF1 resize, IS
over one split, against `fid-stats --protocol paper` statistics of the validation split);
'studiogan' = 50,000 images of G_ema against train statistics, pytorch-fid's conventions;
without --protocol: pytorch-fid's conventions, --num images (default 50,000)."""
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import resolve_device


def add_arguments(p):
    from ..metrics.protocol import PROTOCOLS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="checkpoint (or exported model folder) whose generator to evaluate")
    src.add_argument("--images", metavar="DIR", help="evaluate a folder of images instead (searched recursively; "
                     "all of one size, the size the statistics were made at)")
    src.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                     help="list the protocol fields in which two results (--out files) differ, and exit")
    p.add_argument("--stats", help="reference statistics (.npz from `hamgan fid-stats`); without: IS only")
    p.add_argument("--protocol", choices=[n for n in PROTOCOLS if n != "pytorch_fid"],
                   help="paper: raw G, 50,176 float images, TF1 resize to 299, IS over one split, against "
                   "`fid-stats --protocol paper` statistics; studiogan: G_ema, 50,000 images against train "
                   "statistics; default: pytorch-fid's conventions")
    p.add_argument("--num", type=int, default=None, help=f"samples to generate (default: the protocol's, "
                   f"{PROTOCOLS['pytorch_fid'].num_samples:,} without one; another count is recorded as such); with "
                   "--images a random subset (default: all images)")
    p.add_argument("--repeats", type=int, default=1, metavar="N", help="evaluate N times with seeds seed, seed+1, "
                   "...: mean and std (ddof 1) of FID and IS (the official code scored each checkpoint 5 times)")
    p.add_argument("--batch", type=int, default=100, help="images per generator / Inception batch (default 100)")
    ema = p.add_mutually_exclusive_group()
    ema.add_argument("--ema", action="store_true", help="evaluate G_ema (default, except with --protocol paper)")
    ema.add_argument("--no-ema", action="store_true", help="evaluate the raw G (default with --protocol paper: "
                     "the official run had no EMA)")
    p.add_argument("--truncation", type=float, default=None, metavar="T",
                   help="draw z from a normal truncated to [-T, T] (default: no truncation)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and labels (default 0)")
    p.add_argument("--no-extras", action="store_true", help="skip KID, precision/recall and intra-class FID/KID")
    p.add_argument("--no-accuracy", action="store_true", help="skip conditional accuracy (no classifiers are "
                   "trained or read)")
    p.add_argument("--data", metavar="SOURCE", help="labelled real data the accuracy classifiers learn "
                   "(default: the checkpoint's training data, data.source)")
    p.add_argument("--out", metavar="JSON", help="also write the results to this file")
    p.add_argument("--inception-weights", metavar="PATH", help="pytorch-fid's Inception weights file "
                   "(default: $HAMGAN_INCEPTION_WEIGHTS, then the torch hub cache, then download)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="image-reading worker processes for --images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fmt(v, fmt):
    return "-" if v is None else format(v, fmt)


def _print(result: dict) -> None:
    p = result["protocol"]
    generator = {"G": "G (raw)", "G_ema": "G_ema", None: "images"}[p["generator"]]
    print(f"protocol   {p['name']}: {generator}, {p['num_samples']} samples, resize {p['resize_to_299']}, "
          f"{'uint8' if p['quantized'] else 'float'} images, IS over {p['is_splits']} split(s)")
    spread = result.get("fid_std") is not None
    print(f"FID        {_fmt(result['fid'], '.4f')}" + (f" +- {result['fid_std']:.4f}" if spread else ""))
    if spread:
        print(f"IS         {_fmt(result['is_mean'], '.4f')} +- {result['is_mean_std']:.4f}  "
              f"(mean +- std over {p['repeats']} repeats)")
    else:
        print(f"IS         {_fmt(result['is_mean'], '.4f')} +- {_fmt(result['is_std'], '.4f')}  (over splits)")
    if "kid_mean" in result:
        print(f"KID        {_fmt(result['kid_mean'], '.6f')} +- {_fmt(result['kid_std'], '.6f')}")
        print(f"precision  {_fmt(result['precision'], '.4f')}   recall {_fmt(result['recall'], '.4f')}  (k = 3)")
    if "intra_fid" in result:
        print(f"intra-class FID {result['intra_fid']:.4f}   KID {result['intra_kid']:.6f}  "
              f"(means over classes, >= {result['intra_min_count']} samples per class)")
    from ..metrics.checkpoint_eval import accuracy_lines
    for line in accuracy_lines(result):
        print(line)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)


def _combine(runs: list[dict]) -> dict:
    """One result from `runs` of the same evaluation with different seeds: the first run's fields,
    FID and IS replaced by their means, with their std over runs (ddof 1) and the per-run values."""
    out = dict(runs[0])
    if len(runs) == 1:
        return out
    for key, std in (("fid", "fid_std"), ("is_mean", "is_mean_std")):
        values = [r[key] for r in runs]
        if any(v is None for v in values):
            out[std] = None
            continue
        out[key], out[std] = float(np.mean(values)), float(np.std(values, ddof=1))
    out["runs"] = [{k: r[k] for k in ("fid", "is_mean", "is_std", "kid_mean", "precision", "recall") if k in r}
                   for r in runs]
    return out


def compare(paths) -> None:
    from ..errors import HamganError
    from ..metrics.protocol import compare as compare_protocols

    results = []
    for path in paths:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise HamganError(f"--compare: cannot read {path} as a results JSON ({e})") from None
    names = tuple(Path(p).name if Path(paths[0]).name != Path(paths[1]).name else str(p) for p in paths)
    diffs = compare_protocols(*results, names=names)
    for name, r in zip(names, results):
        print(f"{name}: FID {_fmt(r.get('fid'), '.4f')}, IS {_fmt(r.get('is_mean'), '.4f')}")
    if not diffs:
        print("same protocol: the numbers are comparable")
        return
    print(f"protocols differ in {len(diffs)} field(s):")
    for d in diffs:
        print(f"  {d}")


def run(args):
    if args.compare:
        return compare(args.compare)

    from ..errors import HamganError
    from ..metrics.evaluate import evaluate_images
    from ..metrics.fid import FIDStats
    from ..metrics.inception import get_extractor
    from ..metrics.protocol import PROTOCOLS, check_reference, record, reference_record

    protocol = PROTOCOLS[args.protocol or "pytorch_fid"]
    if args.repeats < 1:
        raise HamganError(f"--repeats must be at least 1, got {args.repeats}")
    if args.num is not None and args.num < 2:
        raise HamganError(f"--num must be at least 2, got {args.num}")
    if args.images and (args.data or args.no_accuracy):
        raise HamganError("--data and --no-accuracy apply to --ckpt (an image folder has no classes)")
    device = resolve_device(args.device)
    reference = FIDStats.load(args.stats) if args.stats else None
    if reference is not None:
        check_reference(protocol, reference, args.stats)
    extractor = get_extractor(device, args.inception_weights)
    extras = not args.no_extras
    notes, info = [], {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # notes are printed from the result instead
        if args.ckpt:
            from ..metrics.checkpoint_eval import evaluate_checkpoint
            use_ema = args.ema or (protocol.generator == "G_ema" and not args.no_ema)
            num = args.num or protocol.num_samples
            runs = [evaluate_checkpoint(args.ckpt, num_samples=num, stats=reference, batch_size=args.batch,
                                        device=device, seed=args.seed + r, extras=extras,
                                        accuracy=not args.no_accuracy, data=args.data,
                                        cache_dir=Path(args.stats).parent if args.stats else None,
                                        inception=extractor, use_ema=use_ema, truncation=args.truncation,
                                        progress=not args.no_progress, splits=protocol.is_splits,
                                        quantize=protocol.quantized, resize=protocol.resize_to_299)
                    for r in range(args.repeats)]
            generator = "G_ema" if runs[0]["ema"] else "G"
            if use_ema and generator == "G":
                notes.append(f"{args.ckpt} holds no G_ema: the raw G was evaluated")
            info.update(ckpt=args.ckpt, step=runs[0]["step"], ema=generator == "G_ema")
        else:
            if args.truncation is not None or args.ema or args.no_ema or args.repeats > 1:
                raise HamganError("--truncation, --ema, --no-ema and --repeats apply to --ckpt, not to --images")
            from ..metrics.sources import ImageFiles
            generator, num = None, args.num
            _, result = evaluate_images(ImageFiles(args.images), batch_size=args.batch, num=num, ref_stats=reference,
                                        extras=extras, device=device, inception=extractor, workers=args.workers,
                                        seed=args.seed, progress=not args.no_progress, splits=protocol.is_splits,
                                        resize=protocol.resize_to_299)
            runs = [result]
            info.update(images=str(Path(args.images).resolve()))
    result = _combine(runs)
    if args.protocol and result["num_samples"] != protocol.num_samples:
        notes.append(f"{result['num_samples']} samples, not the {args.protocol} protocol's "
                     f"{protocol.num_samples:,}: compare only with results of as many")
    if reference is None:
        notes.append("no --stats given: FID (and KID, precision/recall) not computed")
    result["protocol"] = record(protocol, generator=generator, num_samples=result["num_samples"],
                                reference=reference_record(args.stats, reference), truncation=args.truncation,
                                seed=args.seed, repeats=args.repeats, inception_weights=extractor.digest)
    result = {**result, **info, "notes": result["notes"] + notes, "seconds": round(time.perf_counter() - start, 2)}
    _print(result)
    if args.out:
        from ..atomic import write_text
        write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.out}")
