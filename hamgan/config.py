"""Typed configuration: every setting, its default and its meaning, in one place.

A config file (TOML) overrides only what differs from these defaults, which are the
HamGAN paper's ImageNet-128 networks and recipe. Unknown keys and wrongly typed values
are errors. Command-line overrides are dotted ``key=value`` pairs whose values are TOML
(``train.steps=1000``, ``model.G.ch=32``, ``train.amp="bf16"`` or ``train.amp=bf16``).

``hamgan config`` prints every key with its default and help text.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


from .errors import HamganError


class ConfigError(HamganError, ValueError):
    """A config file or override that does not fit the schema."""


def opt(default: Any, help: str):
    """A dataclass field with a default (copied for lists/dataclasses) and its documentation."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------- model


@dataclass
class ContextBlock:
    """A global-context block placed after the block of a network whose output has resolution `at`."""

    at: int = opt(32, "resolution (px) of the block output it follows")
    block: Literal["ham", "attn"] = opt("ham", "'ham' (Hamburger) or 'attn' (SAGAN self-attention)")
    ham: Literal["nmf", "cd", "vq"] = opt("nmf", "matrix decomposition of a Hamburger")
    groups: int = opt(1, "S: channel groups, each decomposed separately")
    dim: Optional[int] = opt(None, "D: channels per group after the lower bread (default: channels // groups)")
    rank: int = opt(32, "R: number of bases")
    steps: int = opt(6, "K: optimisation steps in training")
    eval_steps: Optional[int] = opt(None, "optimisation steps in eval mode (default: steps)")
    inv_t: Optional[float] = opt(None, "inverse temperature of the softmax (default: 1 for nmf, 100 for cd/vq)")
    eps: float = opt(1e-6, "added to denominators of the multiplicative updates")
    beta: float = opt(0.1, "ridge of the CD coefficient solve")
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

    ch: int = opt(64, "base width: channels = ch * multiplier")
    multipliers: list[int] = opt([], "channel multiplier per stage (empty: the standard table for the resolution, "
                                     "hamgan/arch.py; G: one per resolution 4..R, D: one per down-block)")
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
    resolution: int = opt(128, "image side in pixels (32, 64, 128, 256)")
    n_classes: int = opt(1000, "number of classes; 0 = unconditional")
    z_dim: int = opt(128, "latent size")
    conditioning: Literal["cbn", "shared"] = opt(
        "cbn", "G's class conditioning: per-class BN gain/bias tables (official HamGAN) or "
        "BigGAN-lite's shared class embedding with hierarchical z")
    shared_dim: int = opt(128, "size of the shared class embedding (conditioning = 'shared')")
    init: Literal["xavier", "ortho", "normal"] = opt(
        "xavier", "weight init: xavier uniform (TF-GAN SAGAN, official), orthogonal (BigGAN), N(0, 0.02)")
    bn_eps: float = opt(1e-3, "epsilon of G's batch norms (TF-GAN's 1e-3, official; torch's default is 1e-5)")
    bn_momentum: float = opt(1e-3, "weight of each batch in the running statistics of G's batch norms: "
                             "1 - decay, TF-GAN's decay 0.999 (official); torch's default is 0.1")
    bn_running_var: Literal["biased", "unbiased"] = opt(
        "biased", "batch variance the running variance of G's batch norms tracks: biased (TF-GAN, "
        "official) or unbiased (torch.nn.BatchNorm)")
    sn: Literal["official", "exact"] = opt(
        "official", "spectral norm: 'official' (TF-GAN's two kinds: W / max(1, sigma) on the 3x3 and skip "
        "convs, linears and class embeddings, W / sigma on the Hamburger's and attention's 1x1 convs) or "
        "'exact' (W / sigma everywhere, BigGAN-PyTorch)")
    sn_eps: float = opt(1e-6, "spectral-norm epsilon")
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
    workers: int = opt(2, "data-loader worker processes per rank (0: load in the training process)")
    resize: Literal["tf_bilinear", "bilinear", "lanczos", "box"] = opt(
        "tf_bilinear", "resize after the centred square crop, ImageFolder sources (a store keeps the one it was "
        "prepared with): 'tf_bilinear' (TF's crop_and_resize, the official pipeline, no antialiasing) or PIL's "
        "antialiased 'bilinear', 'lanczos', 'box'")
    shapes_classes: int = opt(10, "classes of the procedural 'shapes' data (2..40)")
    shapes_size: int = opt(10000, "images per epoch of the procedural 'shapes' data")


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    steps: int = opt(2_000_000, "generator steps")
    batch_size: int = opt(256, "global batch per step, over all processes and accumulation rounds")
    accum: int = opt(1, "gradient-accumulation rounds per step (per-process batch = batch_size / world / accum)")
    d_steps: int = opt(1, "discriminator steps per generator step")
    augment: str = opt("", "differentiable augmentation (DiffAugment) of every image D sees, real and fake, in D "
                       "and G phases: comma-separated of 'color', 'translation', 'cutout'; '' for none (the "
                       "paper's runs); helps on small data")
    lr_g: float = opt(1e-4, "generator Adam learning rate")
    lr_d: float = opt(4e-4, "discriminator Adam learning rate")
    betas_g: list[float] = opt([0.0, 0.999], "generator Adam betas")
    betas_d: list[float] = opt([0.0, 0.999], "discriminator Adam betas")
    eps_g: float = opt(1e-8, "generator Adam epsilon")
    eps_d: float = opt(1e-8, "discriminator Adam epsilon")
    ema: bool = opt(True, "keep an exponential moving average of G (used for samples and FID)")
    ema_decay: float = opt(0.9999, "EMA decay per step")
    ema_start: int = opt(20_000, "before this step the EMA copies G")
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
    seed: int = opt(0, "seed of every random number generator")
    log_every: int = opt(100, "steps between scalar logs")
    sample_every: int = opt(5000, "steps between fixed-noise sample grids (0: never)")
    snapshot_every: int = opt(5000, "steps between checkpoints (0: only at the end)")
    eval_every: int = opt(50000, "steps between FID/IS evaluations (0: never)")
    keep_last: int = opt(3, "checkpoints kept besides the best-FID one")


@dataclass
class EvalConfig:
    num_samples: int = opt(10000, "generated images per in-training FID/IS evaluation (split over "
                           "processes; the paper's final numbers use 50,176 via `hamgan eval`)")
    batch_size: int = opt(100, "images per generator/Inception batch, per process")
    stats: str = opt("", "reference statistics (.npz from `hamgan fid-stats`) of images at the model's "
                     "resolution; empty: FID skipped, IS only")
    extras: bool = opt(False, "also KID and precision/recall (k = 3); needs statistics with a feature sample")
    inception_weights: str = opt("", "pytorch-fid's Inception weights file; empty: $HAMGAN_INCEPTION_WEIGHTS, "
                                 "then the torch hub cache, then download")


@dataclass
class Config:
    name: str = opt("hamgan", "run name")
    model: ModelConfig = opt(ModelConfig(), "networks")
    data: DataConfig = opt(DataConfig(), "training data")
    train: TrainConfig = opt(TrainConfig(), "optimisation and run control")
    eval: EvalConfig = opt(EvalConfig(), "in-training evaluation")


# --------------------------------------------------------------------------- loading


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, where: str):
    """Check `value` (from TOML/JSON) against the annotation `tp` and build it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} = {value!r}: expected one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where} = {value!r}: expected {_type_name(tp)}")


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a (nested) dict; missing keys take their defaults."""
    if dataclasses.is_dataclass(data):
        data = to_dict(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"unknown config key '{path}'{hint}; valid keys here: {', '.join(names)}")
        kwargs[key] = _convert(hints[key], value, path)
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
        return from_dict(Config, tree)
    except ConfigError as e:
        raise ConfigError(f"{path or 'defaults'}: {e}") from None


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
    """{'train.steps': 'generator steps', ...} for every leaf key."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(field_help(hints[f.name], key))
        else:
            out[key] = f.metadata.get("help", "")
    return out


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(to_toml(to_dict(cfg)) + "\n")


def describe_defaults() -> str:
    """Every key with its default value and help text, as commented TOML."""
    return to_toml(to_dict(Config()), helps=field_help()) + "\n"


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
