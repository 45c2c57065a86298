"""Typed configuration: every setting, its default and its meaning, in one place.

A config file (TOML) overrides only what differs from these defaults, which are the
HamGAN paper's ImageNet-128 networks and recipe. Unknown keys and wrongly typed values
are errors. Command-line overrides are dotted ``key=value`` pairs whose values are TOML
(``train.steps=1000``, ``model.G.ch=32``, ``train.amp="bf16"`` or ``train.amp=bf16``).

Every key also states the values it allows, next to its default (`opt(within=...)`: an interval
such as ``[0, 1)``; `length`; `pattern`), checked when a config is loaded, so that a wrong setting
is refused with its key, value and range before anything is built; `check_config` adds what
depends on several keys (the batch split, where context blocks sit and whether they fit the
channels there) and `check_files` what must exist when a run starts. ``hamgan config`` prints
every key with its default, range and help text.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


from .atomic import write_text
from .errors import HamganError


class ConfigError(HamganError, ValueError):
    """A config file or override that does not fit the schema."""


class Interval:
    """The numbers a key allows, written as in mathematics: '[0, 1)', '(0, inf)', '[1, inf)'
    (NaN lies in none)."""

    def __init__(self, text: str):
        m = re.fullmatch(r"([\[(])(\S+), (\S+)([\])])", text)
        if not m:
            raise ValueError(f"not an interval: {text!r}")
        self.text, self.lo_closed, self.hi_closed = text, m.group(1) == "[", m.group(4) == "]"
        self.lo, self.hi = (float(x) if "inf" in x or "." in x or "e" in x else int(x) for x in m.group(2, 3))

    def __contains__(self, x) -> bool:
        return ((self.lo < x or (self.lo_closed and x == self.lo))
                and (x < self.hi or (self.hi_closed and x == self.hi)))

    def __str__(self) -> str:
        return self.text


def opt(default: Any, help: str, *, within: str | None = None, length: int | None = None,
        pattern: str | None = None, file: bool = False):
    """A dataclass field with a default (copied for lists/dataclasses), its documentation and
    what it allows: `within` an interval (for a list: of each element), `length` of a list,
    `pattern` a regular expression a string must match, `file` a path that must exist when
    it is not empty (checked when a run starts, by `check_files`: configs travel between
    machines)."""
    meta = {"help": help, "within": Interval(within) if within else None, "length": length,
            "pattern": pattern, "file": file}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- model


@dataclass
class ContextBlock:
    """A global-context block placed after the block of a network whose output has resolution `at`."""

    at: int = opt(32, "resolution (px) of the block output it follows (one the network has)", within="[1, inf)")
    block: Literal["ham", "attn"] = opt("ham", "'ham' (Hamburger) or 'attn' (SAGAN self-attention)")
    ham: Literal["nmf", "cd", "vq"] = opt("nmf", "matrix decomposition of a Hamburger")
    groups: int = opt(1, "S: channel groups, each decomposed separately (must divide the channels)",
                      within="[1, inf)")
    dim: Optional[int] = opt(None, "D: channels per group after the lower bread (default: channels // groups)",
                             within="[1, inf)")
    rank: int = opt(32, "R: number of bases (at most D: a decomposition is low-rank)", within="[1, inf)")
    steps: int = opt(6, "K: optimisation steps in training", within="[0, inf)")
    eval_steps: Optional[int] = opt(None, "optimisation steps in eval mode (default: steps)", within="[0, inf)")
    inv_t: Optional[float] = opt(None, "inverse temperature of the softmax (default: 1 for nmf, 100 for cd/vq)",
                                  within="(0, inf)")
    eps: float = opt(1e-6, "added to denominators of the multiplicative updates", within="(0, inf)")
    beta: float = opt(0.1, "ridge of the CD coefficient solve", within="(0, inf)")
    bases_init: Literal["rand", "rand_l2", "online"] = opt(
        "rand", "bases: fresh uniform per forward ('rand', official GAN), L2-normalised ('rand_l2'), "
        "or a buffer learned online by moving average ('online')")
    grad: Literal["one_step", "bptt", "none"] = opt(
        "one_step", "gradient through the decomposition: one-step (paper), full BPTT, or none")

    def ham_kwargs(self) -> dict:
        """Keyword arguments of `hamgan.ham.Hamburger` (besides channels)."""
        return dict(ham=self.ham, groups=self.groups, dim=self.dim, rank=self.rank, steps=self.steps,
                    eval_steps=self.eval_steps, inv_t=self.inv_t, eps=self.eps, beta=self.beta,
                    bases_init=self.bases_init, grad=self.grad)


@dataclass
class NetConfig:
    """One network described as data: width, channel multipliers, context blocks."""

    ch: int = opt(64, "base width: channels = ch * multiplier", within="[1, inf)")
    multipliers: list[int] = opt([], "channel multiplier per stage (empty: the standard table for the resolution, "
                                     "hamgan/arch.py; G: one per resolution 4..R, D: one per down-block)",
                                 within="[1, inf)")
    context: list[ContextBlock] = opt([], "global-context blocks, as [{at = 32, block = 'ham', ...}, ...]")


# G and D have their own classes so that overriding e.g. model.G.ch keeps the paper's context block.
@dataclass
class GeneratorConfig(NetConfig):
    context: list[ContextBlock] = opt([ContextBlock(at=32, rank=32)], "global-context blocks, as "
                                      "[{at = 32, block = 'ham', ...}, ...] (default: HamGAN's NMF Hamburger, R = 32)")


@dataclass
class DiscriminatorConfig(NetConfig):
    context: list[ContextBlock] = opt([ContextBlock(at=32, rank=16)], "global-context blocks, as "
                                      "[{at = 32, block = 'ham', ...}, ...] (default: HamGAN's NMF Hamburger, R = 16)")


@dataclass
class ModelConfig:
    resolution: int = opt(128, "image side in pixels: one with a table in hamgan/arch.py (32, 64, 128, 256)",
                           within="[4, inf)")
    n_classes: int = opt(1000, "number of classes; 0 = unconditional", within="[0, inf)")
    z_dim: int = opt(128, "latent size", within="[1, inf)")
    conditioning: Literal["cbn", "shared"] = opt(
        "cbn", "G's class conditioning: per-class BN gain/bias tables (official HamGAN) or "
        "BigGAN-lite's shared class embedding with hierarchical z")
    shared_dim: int = opt(128, "size of the shared class embedding (conditioning = 'shared')", within="[1, inf)")
    init: Literal["xavier", "ortho", "normal"] = opt(
        "xavier", "weight init: xavier uniform (TF-GAN SAGAN, official), orthogonal (BigGAN), N(0, 0.02)")
    bn_eps: float = opt(1e-3, "epsilon of G's batch norms (TF-GAN's 1e-3, official; torch's default is 1e-5)",
                        within="(0, inf)")
    bn_momentum: float = opt(1e-3, "weight of each batch in the running statistics of G's batch norms: "
                             "1 - decay, TF-GAN's decay 0.999 (official); torch's default is 0.1", within="(0, 1]")
    bn_running_var: Literal["biased", "unbiased"] = opt(
        "biased", "batch variance the running variance of G's batch norms tracks: biased (TF-GAN, "
        "official) or unbiased (torch.nn.BatchNorm)")
    sn: Literal["official", "exact"] = opt(
        "official", "spectral norm: 'official' (TF-GAN's two kinds: W / max(1, sigma) on the 3x3 and skip "
        "convs, linears and class embeddings, W / sigma on the Hamburger's and attention's 1x1 convs) or "
        "'exact' (W / sigma everywhere, BigGAN-PyTorch)")
    sn_eps: float = opt(1e-6, "spectral-norm epsilon", within="(0, inf)")
    cross_replica_bn: bool = opt(True, "under torch.distributed, BN statistics over the whole global batch")
    G: GeneratorConfig = opt(GeneratorConfig(), "generator")
    D: DiscriminatorConfig = opt(DiscriminatorConfig(), "discriminator")


# --------------------------------------------------------------------------- data


@dataclass
class DataConfig:
    source: str = opt("shapes", "'shapes' (built-in procedural data), a store written by `hamgan prepare` "
                      "(its size must equal model.resolution), or an ImageFolder (one sub-folder per class, "
                      "decoded on the fly)")
    flip: bool = opt(False, "random horizontal flips, decided by (seed, epoch, slot) (the official run used none)")
    workers: int = opt(2, "data-loader worker processes per rank (0: load in the training process)",
                       within="[0, inf)")
    resize: Literal["tf_bilinear", "bilinear", "lanczos", "box"] = opt(
        "tf_bilinear", "resize after the centred square crop, ImageFolder sources (a store keeps the one it was "
        "prepared with): 'tf_bilinear' (TF's crop_and_resize, the official pipeline, no antialiasing) or PIL's "
        "antialiased 'bilinear', 'lanczos', 'box'")
    shapes_classes: int = opt(10, "classes of the procedural 'shapes' data", within="[2, 40]")
    shapes_size: int = opt(10000, "images per epoch of the procedural 'shapes' data", within="[1, inf)")


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    steps: int = opt(2_000_000, "generator steps", within="[1, inf)")
    batch_size: int = opt(256, "global batch per step, over all processes and accumulation rounds (a multiple "
                         "of processes x accum)", within="[1, inf)")
    accum: int = opt(1, "gradient-accumulation rounds per step (per-process batch = batch_size / world / accum)",
                    within="[1, inf)")
    d_steps: int = opt(1, "discriminator steps per generator step", within="[1, inf)")
    augment: str = opt("", "differentiable augmentation (DiffAugment) of every image D sees, real and fake, in D "
                       "and G phases: comma-separated of 'color', 'translation', 'cutout'; '' for none (the "
                       "paper's runs); helps on small data", pattern=r"|none|(color|translation|cutout)"
                       r"(, ?(color|translation|cutout))*")
    lr_g: float = opt(1e-4, "generator Adam learning rate", within="(0, inf)")
    lr_d: float = opt(4e-4, "discriminator Adam learning rate", within="(0, inf)")
    lr_decay: float = opt(0.0, "the last fraction of train.steps, over which both learning rates fall linearly "
                          "towards zero (0: constant rates, the paper's)", within="[0, 1]")
    betas_g: list[float] = opt([0.0, 0.999], "generator Adam betas", within="[0, 1)", length=2)
    betas_d: list[float] = opt([0.0, 0.999], "discriminator Adam betas", within="[0, 1)", length=2)
    eps_g: float = opt(1e-8, "generator Adam epsilon", within="(0, inf)")
    eps_d: float = opt(1e-8, "discriminator Adam epsilon", within="(0, inf)")
    ema: bool = opt(True, "keep an exponential moving average of G (used for samples and FID)")
    ema_decay: float = opt(0.9999, "EMA decay per step", within="[0, 1)")
    ema_start: int = opt(20_000, "before this step the EMA copies G", within="[0, inf)")
    fast: bool = opt(True, "the fast settings (hamgan/fast.py; what each gives: docs/BENCHMARKS.md): fused Adam; "
                     "on CUDA also TF32 for float32 matrix products, cuDNN autotuning, batches pinned and copied "
                     "to the GPU one step ahead, and bf16 / channels_last where amp / channels_last are 'auto'. "
                     "false: PyTorch's plain settings (foreach Adam, IEEE float32 matrix products, no autotuning; "
                     "'auto' means fp32 and NCHW)")
    amp: Literal["auto", "none", "bf16", "fp16"] = opt(
        "auto", "mixed precision: 'auto' = bf16 on CUDA GPUs with bf16 units when train.fast, else none "
        "(fp32; on the CPU bf16 is faster too, but explicit); 'fp16' uses gradient scalers, CUDA only")
    channels_last: Literal["auto", True, False] = opt(
        "auto", "channels-last memory format; 'auto' = on CUDA when train.fast, off on the CPU (slower there in fp32)")
    compile: bool = opt(False, "torch.compile G and D")
    seed: int = opt(0, "seed of every random number generator", within="[0, 4294967296)")
    log_every: int = opt(100, "steps between scalar logs (0: never)", within="[0, inf)")
    sample_every: int = opt(5000, "steps between fixed-noise sample grids (0: never)", within="[0, inf)")
    snapshot_every: int = opt(5000, "steps between checkpoints (0: only at the end)", within="[0, inf)")
    eval_every: int = opt(50000, "steps between FID/IS evaluations (0: never)", within="[0, inf)")
    keep_last: int = opt(3, "checkpoints kept besides the best-FID one", within="[1, inf)")


@dataclass
class EvalConfig:
    num_samples: int = opt(10000, "generated images per in-training FID/IS evaluation (split over "
                           "processes; the paper's final numbers use 50,176 via `hamgan eval`)", within="[1, inf)")
    batch_size: int = opt(100, "images per generator/Inception batch, per process", within="[1, inf)")
    stats: str = opt("", "reference statistics (.npz from `hamgan fid-stats`) of images at the model's "
                     "resolution; empty: FID skipped, IS only", file=True)
    extras: bool = opt(False, "also KID and precision/recall (k = 3); needs statistics with a feature sample")
    inception_weights: str = opt("", "pytorch-fid's Inception weights file; empty: $HAMGAN_INCEPTION_WEIGHTS, "
                                 "then the torch hub cache, then download", file=True)


@dataclass
class Config:
    name: str = opt("hamgan", "run name, part of the run directory's name", pattern=r"\w[\w.+-]*")
    model: ModelConfig = opt(ModelConfig(), "networks")
    data: DataConfig = opt(DataConfig(), "training data")
    train: TrainConfig = opt(TrainConfig(), "optimisation and run control")
    eval: EvalConfig = opt(EvalConfig(), "in-training evaluation")


# --------------------------------------------------------------------------- loading


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _allowed(f: dataclasses.Field) -> str:
    """What a key allows besides its type, in words ('' when anything of the type goes)."""
    m = f.metadata
    parts = [f"{m['length']} values" if m.get("length") else "",
             f"in {m['within']}" if m.get("within") else "",
             f"text matching {m['pattern']}" if m.get("pattern") else "",
             "an existing file (or empty)" if m.get("file") else ""]
    return " ".join(p for p in parts if p)


def _convert(tp, value, where: str, rule: str = ""):
    """Check `value` (from TOML/JSON) against the annotation `tp` and build it; `rule` (what
    the key allows, in words) completes the message of a wrong type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    tail = f" ({rule})" if rule else ""
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where, rule)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} = {value!r}: expected one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected a list{tail}")
        return [_convert(args[0], v, f"{where}[{i}]", rule) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: expected a finite float{tail}")
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where} = {value!r}: expected {_type_name(tp)}{tail}")


def _check_range(f: dataclasses.Field, value, where: str) -> None:
    """Refuse a converted value outside what field `f` allows (None always means 'default')."""
    m = f.metadata
    if value is None or not (m.get("within") or m.get("length") or m.get("pattern")):
        return
    values = value if isinstance(value, list) else [value]
    ok = ((m.get("length") is None or len(value) == m["length"])
          and (m.get("within") is None or all(v in m["within"] for v in values))
          and (m.get("pattern") is None or re.fullmatch(m["pattern"], value) is not None))
    if not ok:
        raise ConfigError(f"{where} = {value!r}: must be {_allowed(f)} ({m['help']})")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a (nested) dict; missing keys take their defaults. Each value
    must have its key's type and lie in its range."""
    if dataclasses.is_dataclass(data):
        data = to_dict(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"unknown config key '{path}'{hint}; valid keys here: {', '.join(fields)}")
        kwargs[key] = _convert(hints[key], value, path, _allowed(fields[key]))
        _check_range(fields[key], kwargs[key], path)
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    """tree[a][b]... = value for 'a.b...'; a number indexes a list ('model.G.context.0.block'),
    which is first copied from the defaults when the tree does not set it."""
    keys = dotted.split(".")
    node, default = tree, to_dict(Config())
    for i, key in enumerate(keys):
        where = ".".join(keys[:i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {dotted}: '{where}' is not an item of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: '{'.'.join(keys[:i])}' is not a table or list")
        if i == len(keys) - 1:
            node[key] = value
            return
        default = default[key] if isinstance(default, (dict, list)) and _has(default, key) else None
        if isinstance(node, dict) and key not in node:
            node[key] = copy.deepcopy(default) if isinstance(default, list) else {}
        node = node[key]


def _has(container, key) -> bool:
    return key in container if isinstance(container, dict) else isinstance(key, int) and key < len(container)


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=10' -> ('train.steps', 10); a value that is not TOML is taken as a string."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Defaults <- config file (TOML or JSON) or `base` (e.g. a checkpoint's config) <- dotted overrides."""
    tree: dict = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            tree = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot parse: {e}") from e
    for item in overrides:
        _set_dotted(tree, *parse_override(item))
    try:
        return check_config(from_dict(Config, tree))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def check_config(cfg: Config) -> Config:
    """Refuse what depends on several keys: a batch that does not split into the accumulation
    rounds (the split over processes is checked when they exist), context blocks at a
    resolution a network lacks or that do not fit its channels there (`hamgan.arch`)."""
    t = cfg.train
    if t.batch_size % t.accum:
        raise ConfigError(f"train.batch_size = {t.batch_size} does not split into train.accum = {t.accum} "
                          f"rounds: make it a multiple of {t.accum} x the number of processes")
    from .arch import discriminator_stages, generator_stages  # the stage plans; arch imports this module
    generator_stages(cfg.model)
    discriminator_stages(cfg.model)
    return cfg


def _leaves(obj, prefix: str = ""):
    """(key, field, value) of every setting of a config dataclass, context blocks included."""
    for f in dataclasses.fields(obj):
        key, value = f"{prefix}.{f.name}" if prefix else f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, key)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                yield from _leaves(item, f"{key}[{i}]")
        else:
            yield key, f, value


def check_files(cfg: Config) -> None:
    """Refuse a file setting (`opt(file=True)`) naming a file that does not exist: called when a
    run starts, since a config is also read on machines without its files."""
    for key, f, value in _leaves(cfg):
        if f.metadata.get("file") and value and not Path(value).expanduser().is_file():
            raise ConfigError(f"{key} = {value!r}: no such file ({f.metadata['help']})")


# --------------------------------------------------------------------------- writing


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(tree: dict, prefix: str = "", helps: dict | None = None) -> str:
    """Write a nested dict as TOML (None values are omitted: they mean 'default')."""
    scalars = [(k, v) for k, v in tree.items() if not isinstance(v, dict) and v is not None]
    tables = [(k, v) for k, v in tree.items() if isinstance(v, dict)]
    lines = [f"[{prefix}]"] if prefix and scalars else []
    for k, v in scalars:
        help_text = (helps or {}).get(f"{prefix}.{k}" if prefix else k)
        if help_text:
            lines.append(f"# {help_text}")
        lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        sub = to_toml(v, f"{prefix}.{k}" if prefix else k, helps)
        out = f"{out}\n\n{sub}" if out else sub
    return out


def field_help(cls=Config, prefix: str = "") -> dict[str, str]:
    """{'train.steps': 'generator steps; in [1, inf)', ...} for every leaf key."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(field_help(hints[f.name], key))
        else:
            rule = _allowed(f)
            out[key] = f.metadata["help"] + (f"; {rule}" if rule else "")
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    write_text(path, to_toml(to_dict(cfg)) + "\n")


def describe_defaults() -> str:
    """Every key with its default value, range and help text, as commented TOML; then the keys
    of a context block."""
    block = "\n".join(f"#   {k} = {_toml_value(v) if v is not None else '(default)'}: {h}"
                      for (k, v), h in zip(to_dict(ContextBlock()).items(), field_help(ContextBlock).values()))
    return (to_toml(to_dict(Config()), helps=field_help())
            + "\n\n# Keys of a context block (model.G.context / model.D.context entries):\n" + block + "\n")


def differences(a: dict, b: dict, prefix: str = "", names: tuple[str, str] = ("a", "b")) -> list[str]:
    """'key: a 1, b 2' for every leaf where the nested dicts `a` and `b` differ (dotted keys
    under `prefix`; `names` label the two sides)."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}.{k}" if prefix else str(k)
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, key, names)
        elif va != vb:
            out.append(f"{key}: {names[0]} {va!r}, {names[1]} {vb!r}")
    return out
