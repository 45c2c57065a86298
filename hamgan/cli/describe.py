"""`hamgan describe`: both networks of a config, per resolution, with parameter counts (built on
the meta device: instant, no memory), to check a config before spending GPU days on it."""
from ..config import load_config


def add_arguments(p):
    p.add_argument("--config", help="config file (default: the built-in defaults, i.e. HamGAN-baby)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.G.ch=32")


def run(args):
    from ..models import describe  # imports torch: only when the command runs

    print(describe(load_config(args.config, args.overrides)), end="")
