"""`hamgan export`: a checkpoint's generator as a portable folder (model.safetensors, config.json,
a README.md model card with the recorded evaluations, a class sheet); see `hamgan.export`."""
from . import resolve_device


def add_arguments(p):
    p.add_argument("--ckpt", required=True, help="the hamgan checkpoint to export")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create (must not exist or be empty)")
    p.add_argument("--weights", choices=("G_ema", "G", "both"),
                   help="which generator(s) to export (default: G_ema when the checkpoint has one, else G)")
    p.add_argument("--results", nargs="*", default=[], metavar="JSON",
                   help="`hamgan eval --out` results of this checkpoint to record in the model card "
                        "(in-training evaluations of its step are found in its run's metrics.jsonl)")
    p.add_argument("--sheet-classes", type=int, default=10, metavar="N",
                   help="rows of the class sheet, evenly spaced classes (default 10; 0: no sheet)")
    p.add_argument("--device", default="auto", help="where to draw the class sheet: auto, cpu, cuda, ...")


def run(args):
    from ..errors import HamganError
    from ..export import export

    if args.sheet_classes < 0:
        raise HamganError(f"--sheet-classes must be >= 0, got {args.sheet_classes}")
    out = export(args.ckpt, args.out, weights=args.weights, results=args.results, sheet_rows=args.sheet_classes,
                 device=resolve_device(args.device))
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
