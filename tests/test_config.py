"""Typed configuration: defaults, files, overrides, errors, round trip."""
import dataclasses
import math
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from hamgan.cli import main
from hamgan.config import Config, ConfigError, load_config, save_config, to_dict
from hamgan.config import _toml_value as toml  # the TOML literals of overrides (nan, inf included)


def test_defaults_are_the_paper_recipe():
    cfg = Config()
    assert (cfg.model.resolution, cfg.model.z_dim, cfg.model.G.ch, cfg.model.D.ch) == (128, 128, 64, 64)
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.betas_g, cfg.train.batch_size) == (1e-4, 4e-4, [0.0, 0.999], 256)
    g_ctx, d_ctx = cfg.model.G.context[0], cfg.model.D.context[0]
    assert (g_ctx.at, g_ctx.block, g_ctx.rank, g_ctx.steps) == (32, "ham", 32, 6)
    assert (d_ctx.at, d_ctx.rank) == (32, 16)
    assert not cfg.data.flip


def test_file_overrides_only_what_it_names(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nsteps = 10\n[model.G]\nch = 16\ncontext = [{at = 16, block = "attn"}]\n')
    cfg = load_config(f, ["train.batch_size=8", "train.amp=bf16", "model.D.ch=8"])
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.amp) == (10, 8, "bf16")
    assert (cfg.model.G.ch, cfg.model.D.ch, cfg.train.lr_d) == (16, 8, 4e-4)
    assert cfg.model.G.context[0].block == "attn" and cfg.model.G.context[0].rank == 32


@pytest.mark.parametrize("text, message", [
    ("[train]\nstepz = 3\n", "unknown config key 'train.stepz' (did you mean 'steps'?)"),
    ("[trian]\nsteps = 3\n", "unknown config key 'trian'"),
    ("[train]\nsteps = 'many'\n", "train.steps = 'many': expected int"),
    ("[train]\namp = 'fp8'\n", "expected one of"),
    ("[model.G]\ncontext = [{at = 32, rnak = 4}]\n", "model.G.context[0].rnak"),
    ("[train\n", "cannot parse"),
])
def test_errors_are_clear(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(f)


def test_override_errors():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.steps"])
    with pytest.raises(ConfigError, match="train.batch_siz"):
        load_config(None, ["train.batch_siz=4"])
    with pytest.raises(ConfigError, match="no such file|does not exist"):
        load_config("/nonexistent/config.toml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.steps=7", "model.G.context=[{at=16, block='ham', dim=8, rank=4}]", "eval.stats='a b.npz'"])
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_overrides_index_lists():
    """A number in a dotted key is a list index; the list comes from the file or the defaults."""
    cfg = load_config(None, ["model.G.context.0.block=attn", "model.D.context.0.rank=4", "train.betas_g.1=0.9"])
    assert cfg.model.G.context[0].block == "attn" and cfg.model.G.context[0].at == 32
    assert cfg.model.D.context[0].rank == 4 and cfg.train.betas_g == [0.0, 0.9]
    assert cfg.model.G.context[0].rank == 32  # the rest of the default item is kept
    cfg = load_config("configs/demo.toml", ["model.G.context.0.grad=bptt"])
    assert cfg.model.G.context[0].grad == "bptt" and cfg.model.G.context[0].at == 16  # the file's list
    with pytest.raises(ConfigError, match=r"'model.G.context.1' is not an item of a list of 1"):
        load_config(None, ["model.G.context.1.block=attn"])
    with pytest.raises(ConfigError, match="'model.G.context.x'"):
        load_config(None, ["model.G.context.x=1"])
    with pytest.raises(ConfigError, match="train.steps = {'x': 1}: expected int"):
        load_config(None, ["train.steps.x=1"])
# --------------------------------------------------------------------------- every key refuses wrong values (issue 13)

TINY_RUN = ["model.resolution=32", "model.n_classes=3", "model.G.ch=4", "model.D.ch=4",
            "model.G.context=[{at=16, rank=4, steps=1}]", "model.D.context=[{at=16, rank=4, steps=1}]",
            "data.shapes_classes=3", "data.shapes_size=16", "data.workers=0", "train.batch_size=2", "train.steps=1",
            "train.log_every=0", "train.sample_every=0", "train.eval_every=0"]


def every_key(cls=Config, prefix=""):
    """(dotted key, field, annotation) of every setting, walked from the dataclasses; the keys of
    a context block as model.G.context[0].<key>."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}.{f.name}" if prefix else f.name, hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from every_key(tp, key)
            continue
        yield key, f, tp
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from every_key(typing.get_args(tp)[0], f"{key}[0]")


def wrong_types(tp) -> list:
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is list:
        return [5, [5 if dataclasses.is_dataclass(typing.get_args(tp)[0]) else "x"]]
    return {int: ["x", 1.5, True], float: ["x", True], bool: [1, "yes"], str: [5, True]}.get(tp, [5, 1.5])


def out_of_range(f, tp) -> list:
    """Values of the right type that the key's documented range excludes, worked out here from
    the interval's text (not from hamgan's parsing of it)."""
    m, values = f.metadata, []
    base = typing.get_origin(tp) is typing.Union and next(a for a in typing.get_args(tp) if a is not type(None)) or tp
    if typing.get_origin(base) is typing.Literal:
        values.append("bogus")
    element = typing.get_args(base)[0] if typing.get_origin(base) is list else base
    if m["within"] is not None:
        lo_b, lo, hi, hi_b = re.fullmatch(r"([\[(])(.*), (.*)([\])])", str(m["within"])).groups()
        num = float if element is float else int
        if lo != "-inf":
            values.append(num(lo) - (1 if lo_b == "[" else 0))
        if hi != "inf":
            values.append(num(hi) + (1 if hi_b == "]" else 0))
        if element is float:
            values += [math.nan, math.inf, -math.inf]
    if typing.get_origin(base) is list:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        fill = default[0] if default else 1
        values = [[v] * (m["length"] or 1) for v in values]
        if m["length"]:
            values.append([fill] * (m["length"] + 1))
    if m["pattern"]:
        values += ["a/b"] + ([""] if f.default else [])   # '' is the default (none) of some
    if base is str and not m["pattern"]:
        values.append("/nonexistent/x.npz")     # a path, or a word the key does not know
    return values


def override(key: str, value) -> str:
    """key=value, or for a key of a context block the whole list with that key set in a valid block."""
    if "[0]." not in key:
        return f"{key}={toml(value)}"
    net_key, sub = key.split("[0].")
    block = dict(to_dict(Config()) ["model"][net_key.split(".")[1]]["context"][0], **{sub: value})
    return f"{net_key}=[{toml(block)}]"


CASES = [(key, value, kind) for key, f, tp in every_key()
         for kind, values in (("type", wrong_types(tp)), ("range", out_of_range(f, tp))) for value in values]


def test_the_sweep_covers_every_key_with_a_range_or_a_finite_set():
    keys = {key for key, _, _ in every_key()}
    assert {"train.lr_g", "model.G.context[0].rank", "eval.stats", "name"} <= keys and len(keys) > 60
    swept = {key for key, _, kind in CASES if kind == "range"}
    bools = {key for key, _, tp in every_key() if tp is bool}
    assert keys - swept == bools | {"model.G.context", "model.D.context"}   # nothing else without a range


@pytest.mark.parametrize("key, value, kind", CASES, ids=[f"{k}={toml(v)}" for k, v, _ in CASES])
def test_every_key_refuses_a_wrong_type_and_an_out_of_range_value(key, value, kind, tmp_path, capsys):
    """`hamgan train` refuses it with exit 2 and a message naming the key and the value, before
    the first step (a tiny run, in case it were not refused)."""
    code = main(["train", "--out", str(tmp_path), "--no-progress", *TINY_RUN, override(key, value)])
    err = capsys.readouterr().err
    assert code == 2, f"{key}={value!r} was accepted"
    assert key in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("ckpt-*.pt"))


@pytest.mark.parametrize("setting, message", [
    ("train.lr_g=nan", "train.lr_g = nan: expected a finite float (in (0, inf))"),
    ("train.steps=-5", "train.steps = -5: must be in [1, inf)"),
])
def test_the_command_line_refuses_without_a_traceback(setting, message, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "hamgan", "train", "--out", str(tmp_path), setting], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())                   # refused before a run directory exists
