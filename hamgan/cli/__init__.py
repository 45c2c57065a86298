"""The `hamgan` command. Each sub-command is a module of this package with
`add_arguments(parser)` and `run(args) -> int | None`, imported only when it is used."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module in hamgan.cli, one-line help)
COMMANDS = {
    "train": ("train", "train a GAN (or resume one; --dry-run to check a config)"),
    "demo": ("demo", "the built-in demonstration (the README's main job)"),
    "config": ("config_cmd", "print every config key with its default and meaning, or a resolved config"),
    "describe": ("describe", "print G and D of a config per resolution, with parameter counts"),
    "prepare": ("prepare", "ImageFolder (or flat folder + label file) -> memory-mapped uint8 store"),
    "fid-stats": ("fid_stats", "reference FID statistics of a store or image folder (streamed, float64)"),
    "eval": ("evaluate", "FID, IS, KID, precision/recall, conditional accuracy of a checkpoint or an image folder"),
    "sample": ("sample", "images from a checkpoint: grids, class sheets, interpolations, truncation, dumps, ham maps"),
    "sweep": ("sweep", "one run per grid point and seed, evaluated alike: a table (Markdown, JSON) and a plot"),
    "import-tf": ("import_tf", "an official HamGAN TensorFlow checkpoint as a hamgan checkpoint (no TensorFlow "
                  "needed)"),
    "export": ("export", "a checkpoint's generator as a portable folder: safetensors weights, config, model card"),
}


def main(argv: list[str] | None = None) -> int:
    from .. import __version__
    from ..errors import HamganError

    parser = argparse.ArgumentParser(prog="hamgan", description="Train, evaluate and sample "
                                     "class-conditional GANs with Hamburger (matrix decomposition) context.")
    parser.add_argument("--version", action="version", version=f"hamgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f".{module_name}", __name__)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere among the options
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args._run(args) or 0
    except HamganError as e:
        kind = "error: " if e.exit_code == 2 else ""
        print(f"hamgan {args.command}: {kind}{e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"hamgan {args.command}: interrupted", file=sys.stderr)
        return 130


def resolve_device(arg: str | None):
    """--device value ('auto' or None: CUDA when available, else the CPU) -> torch.device."""
    import torch

    from ..errors import HamganError
    if arg in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(arg)
    except RuntimeError:
        raise HamganError(f"--device: unknown device {arg!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HamganError("--device cuda: CUDA is not available on this machine")
    return device
