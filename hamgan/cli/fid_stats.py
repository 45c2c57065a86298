"""`hamgan fid-stats`: reference statistics (mean, covariance, a feature sample) of a data set,
streamed through pytorch-fid's Inception in float64, for `hamgan eval` and in-training FID."""
import sys
import time
import warnings

from . import resolve_device


def add_arguments(p):
    p.add_argument("--data", required=True, help="a prepared store (`hamgan prepare`), an image folder (any "
                   "layout, searched recursively), or 'shapes' (the built-in procedural data)")
    p.add_argument("--out", required=True, help="statistics file to write, e.g. stats/imagenet128_val.npz")
    p.add_argument("--resolution", type=int, default=None, help="crop and resize folder images to this size "
                   "as training data is (largest centred square, antialiased resize); default: a store's own "
                   "size, folder images as they are (they must then share one size)")
    p.add_argument("--resize", choices=("bilinear", "lanczos", "box"), default="bilinear",
                   help="resize filter with --resolution (default bilinear, as the official run)")
    p.add_argument("--num", type=int, default=None, help="use a random subset of this many images "
                   "(seeded; default: all)")
    p.add_argument("--batch", type=int, default=100, help="images per Inception batch (default 100)")
    p.add_argument("--keep-features", type=int, default=10_000, metavar="N",
                   help="store a random sample of N features (N x 2048 float32, ~8 MB per 1000) for KID and "
                   "precision/recall; 0: none (default 10000)")
    p.add_argument("--inception-weights", metavar="PATH", help="pytorch-fid's Inception weights file "
                   "(default: $HAMGAN_INCEPTION_WEIGHTS, then the torch hub cache, then download)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--workers", type=int, default=2, help="image-reading worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --num subset and of the feature sample")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from .. import __version__
    from ..metrics.evaluate import evaluate_images
    from ..metrics.sources import open_images

    dataset, source = open_images(args.data, args.resolution, args.resize)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the < 2048 note is printed below instead
        stats, result = evaluate_images(dataset, batch_size=args.batch, num=args.num, keep_features=args.keep_features,
                                        device=resolve_device(args.device), inception=args.inception_weights,
                                        workers=args.workers, seed=args.seed, progress=not args.no_progress,
                                        desc="fid-stats")
    stats.provenance.update(source, hamgan=__version__, subset_seed=args.seed if args.num else None)
    stats.save(args.out)
    p = stats.provenance
    print(f"{args.out}: statistics of {stats.count} images of {p['image_size']} px from {p['source']} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"  backbone {p['backbone']}, weights {p['weights']}, resize {p['resize']}; "
          f"{0 if stats.features is None else len(stats.features)} features kept for KID / precision-recall")
    print(f"  Inception Score of these images: {result['is_mean']:.3f} +- {result['is_std']:.3f}")
    for note in result["notes"]:
        print(f"  note: {note}")
    if stats.count < 2048:
        print(f"hamgan fid-stats: warning: only {stats.count} images (< 2048): FIDs against these statistics "
              "are biased upwards", file=sys.stderr)
