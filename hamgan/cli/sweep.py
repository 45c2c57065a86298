"""`hamgan sweep`: train one run per point and seed, evaluate each the same way, and write a table
(mean and std over seeds of FID, KID, conditional accuracy, time per step, peak memory) as
Markdown and JSON, plus a plot of the metric curves. See `hamgan.sweep`."""


def add_arguments(p):
    p.add_argument("--config", help="config file of every run (default: the defaults)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the grid (repeatable; the points are all combinations), e.g. "
                        "'model.G.context.0.block=ham,attn'")
    p.add_argument("--point", action="append", default=[], metavar="'NAME: KEY=V ...'",
                   help="a named point with its overrides (repeatable; combined with every grid combination), "
                        "e.g. 'no context: model.G.context=[] model.D.context=[]'")
    p.add_argument("--seeds", type=int, default=1, help="runs per point, with train.seed = 0 .. N-1 (default 1)")
    p.add_argument("--out", required=True, help="sweep folder: runs, reference statistics, table, plot")
    p.add_argument("--num", type=int, default=2000, help="generated samples per evaluation (default 2000)")
    p.add_argument("--stats", help="reference statistics (default: made once from --ref-num images of the data, "
                   "as OUT/reference.npz)")
    p.add_argument("--ref-num", type=int, default=2000, help="real images of the reference statistics made "
                   "when --stats is not given (default 2000)")
    p.add_argument("--batch", type=int, default=100, help="images per evaluation batch (default 100)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides for every run")


def run(args):
    from pathlib import Path

    from ..sweep import Settings, expand, run_sweep

    points = expand(args.grid, args.point)
    settings = Settings(num_samples=args.num, reference_num=args.ref_num, batch_size=args.batch, stats=args.stats)
    print(f"sweep: {len(points)} point(s) x {args.seeds} seed(s) -> {args.out}")
    run_sweep(args.config, points, args.seeds, args.out, overrides=args.overrides, settings=settings,
              device=args.device, progress=not args.no_progress)
    out = Path(args.out)
    print((out / "sweep.md").read_text())
    print(f"table: {out / 'sweep.md'}, {out / 'sweep.json'}; curves: {out / 'sweep.png'}")
