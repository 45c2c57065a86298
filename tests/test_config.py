"""Typed configuration: defaults, files, overrides, errors, round trip."""
import re

import pytest

from hamgan.config import Config, ConfigError, load_config, save_config


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
    cfg = load_config(None, ["train.steps=7", "model.G.context=[{at=16, block='ham', dim=8}]", "eval.stats='a b.npz'"])
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
