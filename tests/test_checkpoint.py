"""Checkpoints keep the model semantics they were trained with.

tests/data/checkpoint_v1.pt is a training snapshot written by hamgan before format version 2
(commit fb7389f: torch's batch norm, eps 1e-5, momentum 0.1, unbiased running variance; exact
spectral norm everywhere; tiny networks, 32 px, 3 classes, z_dim 16, 30 steps on the shapes data),
and tests/data/checkpoint_v1_samples.pt the uint8 images that code sampled from its G and G_ema
(z: torch.manual_seed(1), randn(6, 16); y: 0, 1, 2, 0, 1, 2; then torch.manual_seed(2) before
the forward, which draws the NMF bases)."""
from pathlib import Path

import pytest
import torch

from hamgan.checkpoint import VERSION, load_checkpoint, load_generator
from hamgan.config import Config, from_dict
from hamgan.images import to_uint8
from hamgan.layers import BatchNorm2d, spectral_norms
from hamgan.models import build_generator

DATA = Path(__file__).resolve().parent / "data"
OLD = DATA / "checkpoint_v1.pt"
NEW_KEYS = ("bn_momentum", "bn_running_var", "sn")


def sample(G):
    torch.manual_seed(1)
    z, y = torch.randn(6, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(2)
    with torch.no_grad():
        return to_uint8(G(z, y))


def test_fixture_is_an_old_checkpoint():
    raw = torch.load(OLD, weights_only=True)
    assert raw["version"] == 1 < VERSION and raw["config"]["model"]["bn_eps"] == 1e-5
    assert not set(NEW_KEYS) & set(raw["config"]["model"])


def test_old_checkpoint_loads_with_its_semantics():
    cfg = from_dict(Config, load_checkpoint(OLD)["config"]).model
    assert (cfg.bn_eps, cfg.bn_momentum, cfg.bn_running_var, cfg.sn) == (1e-5, 0.1, "unbiased", "exact")
    G = load_generator(OLD)[0]
    bns = [m for m in G.modules() if isinstance(m, BatchNorm2d)]
    assert bns and all((m.eps, m.momentum, m.unbiased) == (1e-5, 0.1, True) for m in bns)
    assert {p.kind for m in G.modules() for p in spectral_norms(m)} == {"exact"}


@pytest.mark.parametrize("key", ["G", "G_ema"])
def test_old_checkpoint_samples_the_same_bytes(key):
    G = load_generator(OLD, use_ema=key == "G_ema")[0]
    images = sample(G)
    expected = torch.load(DATA / "checkpoint_v1_samples.pt", weights_only=True)[key]
    # the bytes the old code sampled (identical on the machine that made them; float rounding of
    # another CPU may move a few by one level)
    assert (images.int() - expected.int()).abs().max() <= 1
    assert (images == expected).float().mean() > 0.99
    # read with today's defaults the same weights give other images: the semantics matter here
    payload = torch.load(OLD, weights_only=True)
    model = from_dict(Config, {**payload["config"], "model": {**payload["config"]["model"], "bn_eps": 1e-3}}).model
    today = build_generator(model).eval()
    today.load_state_dict(payload[key])
    assert (sample(today) != expected).float().mean() > 0.3


def test_resuming_an_old_checkpoint_keeps_its_semantics(tmp_path):
    """`hamgan train --resume` builds the config from the checkpoint's: one more step trains the
    old networks, and the new snapshot (format 2) records their semantics explicitly."""
    from hamgan.config import load_config
    from hamgan.train import train

    run = tmp_path / "v1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-000000030.pt").write_bytes(OLD.read_bytes())
    cfg = load_config(None, ["train.steps=31", "train.log_every=0"], base=load_checkpoint(OLD)["config"])
    train(cfg, out=tmp_path, name="v1", resume="auto", progress=False, device="cpu")
    new = torch.load(run / "checkpoints" / "ckpt-000000031.pt", weights_only=True)
    assert new["version"] == VERSION and new["step"] == 31
    model = new["config"]["model"]
    assert (model["bn_eps"], model["bn_momentum"], model["bn_running_var"], model["sn"]) == (1e-5, 0.1, "unbiased", "exact")
