"""`hamgan fid-stats`: reference statistics (mean, covariance, a feature sample) of a data set,
streamed through pytorch-fid's Inception in float64, for `hamgan eval` and in-training FID.

`--protocol pytorch_fid` (default): all images, or a random subset of `--num`, resized to 299 as
pytorch-fid does. `--protocol paper` (REFERENCE §4): the images in store order, repeated to
50,176 (`--num`), resized to 299 by TF1's legacy bilinear; from an image folder with
`--resolution` they are the official pipeline's floats, never rounded to uint8."""
import sys
import time
import warnings

from . import resolve_device


def add_arguments(p):
    from ..data.transforms import RESIZES
    from ..metrics.protocol import PAPER_COUNT, REFERENCE_PROTOCOLS

    p.add_argument("--data", required=True, help="a prepared store (`hamgan prepare`), an image folder (any "
                   "layout, searched recursively), or 'shapes' (the built-in procedural data)")
    p.add_argument("--out", required=True, help="statistics file to write, e.g. stats/imagenet128_val.npz")
    p.add_argument("--protocol", choices=REFERENCE_PROTOCOLS, default="pytorch_fid",
                   help="pytorch_fid (default; for `hamgan eval` without --protocol, --protocol studiogan and "
                   f"in-training FID) or paper (for `hamgan eval --protocol paper`: store order, repeated to "
                   f"{PAPER_COUNT:,}, TF1 resize to 299, float images from a folder)")
    p.add_argument("--resolution", type=int, default=None, help="crop and resize folder images to this size "
                   "as training data is (largest centred square, --resize); default: a store's own size, folder "
                   "images as they are (they must then share one size)")
    p.add_argument("--resize", choices=RESIZES, default="tf_bilinear",
                   help="resize with --resolution (default tf_bilinear, the official pipeline)")
    p.add_argument("--num", type=int, default=None, help="pytorch_fid: a random subset of this many images "
                   f"(seeded; default: all); paper: this many in store order, repeated (default {PAPER_COUNT:,})")
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
    from ..errors import HamganError
    from ..metrics.evaluate import evaluate_images
    from ..metrics.protocol import PROTOCOLS
    from ..metrics.sources import open_images

    paper = args.protocol == "paper"
    protocol = PROTOCOLS[args.protocol]
    dataset, source = open_images(args.data, args.resolution, args.resize, quantize=not paper)
    if paper and source["source_resize"] not in ("tf_bilinear", "procedural", "none"):
        raise HamganError(f"--protocol paper takes the official pixels, but {args.data} was resized with "
                          f"{source['source_resize']!r}: prepare the store with --resize tf_bilinear (or give an "
                          "image folder with --resolution)")
    num = protocol.reference_count if paper and args.num is None else args.num
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the < 2048 note is printed below instead
        stats, result = evaluate_images(dataset, batch_size=args.batch, num=num, keep_features=args.keep_features,
                                        device=resolve_device(args.device), inception=args.inception_weights,
                                        workers=args.workers, seed=args.seed, progress=not args.no_progress,
                                        desc="fid-stats", resize=protocol.resize_to_299, in_order=paper)
    order = "store order, repeated" if paper else ("random subset" if args.num else "all")
    stats.provenance.update(source, protocol=args.protocol, order=order, hamgan=__version__,
                            subset_seed=args.seed if args.num and not paper else None)
    stats.save(args.out)
    p = stats.provenance
    print(f"{args.out}: statistics of {stats.count} images of {p['image_size']} px from {p['source']} "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"  protocol {args.protocol} ({order}, {'uint8' if p['quantized'] else 'float'} images); backbone "
          f"{p['backbone']}, weights {p['weights']}, resize {p['resize']}; "
          f"{0 if stats.features is None else len(stats.features)} features kept for KID / precision-recall")
    print(f"  Inception Score of these images: {result['is_mean']:.3f} +- {result['is_std']:.3f}")
    for note in result["notes"]:
        print(f"  note: {note}")
    if stats.count < 2048:
        print(f"hamgan fid-stats: warning: only {stats.count} images (< 2048): FIDs against these statistics "
              "are biased upwards", file=sys.stderr)
