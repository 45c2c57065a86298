"""`hamgan config`: the documented defaults, or the resolved config of a file + overrides."""
from ..config import describe_defaults, load_config, to_dict, to_toml


def add_arguments(p):
    p.add_argument("--config", help="config file to resolve (default: print all defaults with help)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.steps=100")


def run(args):
    if args.config is None and not args.overrides:
        print(describe_defaults(), end="")
    else:
        print(to_toml(to_dict(load_config(args.config, args.overrides))))
