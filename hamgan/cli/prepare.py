"""`hamgan prepare`: an image folder -> a memory-mapped uint8 store for training and FID."""
import sys
import warnings

from ..data.transforms import RESIZES


def add_arguments(p):
    p.add_argument("--src", required=True, help="ImageFolder root (one sub-folder per class, e.g. "
                   "ILSVRC/train), or a flat folder of images together with --labels")
    p.add_argument("--out", required=True, help="store folder to write (re-run the same command to "
                   "continue an interrupted run)")
    p.add_argument("--size", type=int, default=128, help="side of the square images (default 128)")
    p.add_argument("--resize", choices=RESIZES, default="tf_bilinear",
                   help="resize after the centred square crop: tf_bilinear (default; TF's crop_and_resize as "
                   "the official input pipeline: bilinear point sampling, no antialiasing) or PIL's antialiased "
                   "bilinear, lanczos, box")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--labels", metavar="FILE", help="label file for a flat --src: lines '<file> <label>' "
                   "(whitespace or comma separated; label = class name such as n01440764, or 0-based "
                   "index; file name with or without extension; '#' comments and a header line skipped)")
    p.add_argument("--classes", metavar="STORE|DIR|FILE", help="with --labels: the class list labels refer "
                   "to (a prepared train store, the train ImageFolder, or one name per line); default: "
                   "the sorted names in the label file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _show(message, category, filename, lineno, file=None, line=None):
    print(f"hamgan prepare: warning: {message}", file=sys.stderr)


def run(args):
    from ..data.prepare import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show
        m = prepare(args.src, args.out, size=args.size, resize=args.resize, workers=args.workers,
                    label_file=args.labels, classes=args.classes, progress=not args.no_progress)
    print(f"{args.out}: {m['count']} images of {m['size']}x{m['size']} px in {m['classes']} classes "
          f"({m['resize']} resize)")
    if m["skipped"]:
        print(f"skipped {m['skipped']} unreadable images, listed in {args.out}/report.txt")
