"""`hamgan import-tf`: an official HamGAN TensorFlow checkpoint (model.ckpt-NNNN.index + .data-*,
read without TensorFlow) as a hamgan checkpoint that `hamgan sample` and `hamgan eval` load;
see `hamgan.tf_import` for the variable layout."""


def add_arguments(p):
    p.add_argument("--ckpt", required=True, metavar="PATH/model.ckpt-NNNN",
                   help="the TensorFlow checkpoint: its prefix, .index or .data-* file, or its folder")
    p.add_argument("--config", required=True, help="the hamgan config of the same networks, e.g. "
                   "configs/hamgan_strong.toml (it supplies what the checkpoint does not record: R, K, BN eps, ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--out", metavar="X.pt", help="the hamgan checkpoint to write (must not exist)")
    p.add_argument("--dry-run", action="store_true", help="check and print the mapping table; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    import sys
    from pathlib import Path

    from ..checkpoint import save_checkpoint
    from ..config import load_config, to_dict
    from ..errors import HamganError
    from ..tf_import import import_tf, mapping_table

    if not args.dry_run and not args.out:
        raise HamganError("--out X.pt is required (or --dry-run to only check the mapping)")
    if args.out and Path(args.out).exists():
        raise HamganError(f"--out {args.out} exists: choose another name or delete it")
    cfg = load_config(args.config, args.overrides)
    result = import_tf(args.ckpt, cfg.model, config_name=args.config, progress=not args.no_progress)
    if args.dry_run:
        print(mapping_table(result), end="")
    for note in result.provenance["notes"]:
        print(f"note: {note}", file=sys.stderr)
    mapped = result.provenance["mapped_variables"]
    unused = ", ".join(f"{len(v)} {k}" for k, v in result.unused.items()) or "none"
    print(f"{args.ckpt}: {mapped} variables mapped onto G ({len(result.G)} tensors) and D ({len(result.D)}); "
          f"unused: {unused}; step {result.step}")
    if args.dry_run:
        return
    path = save_checkpoint({"config": to_dict(cfg), "step": result.step, "G": result.G, "D": result.D,
                            "provenance": result.provenance}, args.out)
    print(f"wrote {path}: `hamgan sample --ckpt {path} ...` and `hamgan eval --ckpt {path} ...` use it (G; the "
          f"official run kept no EMA)")
