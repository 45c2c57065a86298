"""Generator and discriminator built from the config (REFERENCE §2), presets, `describe`."""
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.attention import SelfAttention
from hamgan.cli import main
from hamgan.config import Config, ConfigError, load_config, to_dict
from hamgan.ham import Hamburger
from hamgan.layers import BatchNorm2d, ClassTableBN, LinearCBN, spectral_norms
from hamgan.models import (Discriminator, Generator, build_discriminator, build_generator, count_parameters,
                           describe)

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.toml"))


def model_cfg(*overrides, resolution=32, ch=8, n_classes=5):
    """Default networks (Hamburgers after the 32x32 blocks) at a small width; a 32 px D has no
    32x32 block, so its Hamburger goes after the 16x16 one unless `overrides` say otherwise."""
    base = [f"model.resolution={resolution}", f"model.G.ch={ch}", f"model.D.ch={ch}", f"model.n_classes={n_classes}"]
    if resolution == 32:
        base.append("model.D.context=[{at = 16, rank = 16}]")
    return load_config(None, base + list(overrides)).model


def build(*overrides, seed=0, **kw):
    cfg = model_cfg(*overrides, **kw)
    torch.manual_seed(seed)
    return build_generator(cfg), build_discriminator(cfg)


def randomise_class_tables(G):
    """Per-class BN tables start identical for every class; make them differ, as after training."""
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, ClassTableBN):
                m.gain.add_(0.5 * torch.randn_like(m.gain))
                m.bias.add_(0.5 * torch.randn_like(m.bias))


def seeded(fn, *args, seed=0, **kwargs):
    torch.manual_seed(seed)    # Hamburgers draw fresh bases: same seed, same draw
    return fn(*args, **kwargs)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("resolution, ch", [(32, 8), (64, 4), (128, 4), (256, 2)])
def test_shapes_and_tanh_range(resolution, ch):
    narrow = [] if resolution == 32 else ["model.G.context=[{at = 32, rank = 4}]", "model.D.context=[{at = 32, rank = 4}]"]
    G, D = build(*narrow, resolution=resolution, ch=ch)
    z, y = torch.randn(2, 128), torch.tensor([0, 3])
    x = G(z, y)
    assert x.shape == (2, 3, resolution, resolution)
    assert x.abs().max() <= 1 and x.std() > 0.05               # tanh output, not collapsed
    assert (G.z_dim, G.n_classes, G.resolution) == (128, 5, resolution)
    s = D(x, y)
    assert s.shape == (2,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    s.sum().backward()
    assert all(p.grad is not None for p in D.parameters() if p.requires_grad)


def test_shared_conditioning_hierarchical_z():
    G, _ = build("model.conditioning='shared'", "model.shared_dim=6")
    G.eval()                                                    # no power iteration between forward and embed
    assert G.z_split == [32, 32, 32, 32]                        # 3 up-blocks + the linear layer
    seen = []
    for block in G.blocks:
        block.bn1.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    z, y = torch.randn(2, 128), torch.tensor([1, 4])
    assert G(z, y).shape == (2, 3, 32, 32)
    e = G.embed(y)
    assert e.shape == (2, 6) and isinstance(G.blocks[0].bn1, LinearCBN)
    for k, cond in enumerate(seen):                             # [shared embedding, k-th chunk of z]
        torch.testing.assert_close(cond, torch.cat([e, z[:, 32 * (k + 1):32 * (k + 2)]], 1))


# --------------------------------------------------------------------------- conditioning


@pytest.mark.parametrize("conditioning", ["cbn", "shared"])
def test_changing_only_the_class_changes_only_that_sample(conditioning):
    G, D = build(f"model.conditioning='{conditioning}'", "model.G.context=[{at = 16, rank = 4}]")
    randomise_class_tables(G)
    for m in G.modules():
        if isinstance(m, Hamburger):
            m.sigma.data.fill_(1.0)
    G.eval(), D.eval()                                          # running BN statistics: samples independent
    z = torch.randn(3, 128)
    y1, y2 = torch.tensor([1, 2, 3]), torch.tensor([4, 2, 3])
    x1, x2 = seeded(G, z, y1), seeded(G, z, y2)
    assert (x1[0] - x2[0]).abs().max() > 1e-2
    torch.testing.assert_close(x1[1:], x2[1:])
    s1, s2 = D(x1, y1), D(x1, y2)
    assert (s1[0] - s2[0]).abs() > 1e-4
    torch.testing.assert_close(s1[1:], s2[1:])


@pytest.mark.parametrize("conditioning", ["cbn", "shared"])
def test_embedding_input_and_class_interpolation(conditioning):
    G, _ = build(f"model.conditioning='{conditioning}'")
    randomise_class_tables(G)
    G.eval()
    z, ya, yb = torch.randn(2, 128), torch.tensor([0, 1]), torch.tensor([2, 3])
    ea, eb = G.embed(ya), G.embed(yb)
    assert ea.shape == (2, G.embed_dim)
    torch.testing.assert_close(seeded(G, z, embedding=ea), seeded(G, z, ya))
    mid = seeded(G, z, embedding=0.5 * ea + 0.5 * eb)
    assert (mid - seeded(G, z, ya)).abs().max() > 1e-3 and (mid - seeded(G, z, yb)).abs().max() > 1e-3
    torch.testing.assert_close(seeded(G, z, embedding=1.0 * ea + 0.0 * eb), seeded(G, z, ya))


def test_projection_discriminator_formula():
    _, D = build()
    D.eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 2])
    h = D.features(x)
    torch.testing.assert_close(D(x, y), D.linear(h).squeeze(1) + (D.embed(y) * h).sum(1))
    assert D.embed.weight.shape == (5, h.shape[1])


@pytest.mark.parametrize("conditioning", ["cbn", "shared"])
def test_unconditional(conditioning):
    G, D = build(f"model.conditioning='{conditioning}'", n_classes=0)
    x = G(torch.randn(2, 128))
    assert x.shape == (2, 3, 32, 32) and D(x).shape == (2,)
    assert D.embed is None and G.embed_dim == 0
    assert not any(isinstance(m, (ClassTableBN, nn.Embedding)) for m in list(G.modules()) + list(D.modules()))
    with pytest.raises(ValueError, match="unconditional"):
        G.embed(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="conditional"):
        build()[0](torch.randn(2, 128))                        # a conditional G needs labels


# --------------------------------------------------------------------------- context blocks


def test_context_blocks_sit_where_placed_and_nowhere_else():
    G, D = build("model.G.context=[{at = 16, block = 'ham', rank = 4}, {at = 32, block = 'attn'}, "
                 "{at = 32, block = 'ham', rank = 2}]",
                 "model.D.context=[{at = 8, block = 'attn'}, {at = 16, block = 'ham', rank = 3}]")
    seen = []
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, (Hamburger, SelfAttention)):
                m.register_forward_hook(lambda m, args, out, net=net: seen.append(
                    (type(net).__name__, type(m).__name__, args[0].shape[1], args[0].shape[-1])))
    y = torch.tensor([0, 1])
    D(G(torch.randn(2, 128), y), y)
    assert seen == [("Generator", "Hamburger", 32, 16), ("Generator", "SelfAttention", 32, 32),
                    ("Generator", "Hamburger", 32, 32),         # config order kept at one resolution
                    ("Discriminator", "Hamburger", 32, 16), ("Discriminator", "SelfAttention", 32, 8)]
    hams = [m for m in G.modules() if isinstance(m, Hamburger)]
    assert [h.ham.rank for h in hams] == [4, 2] and all(isinstance(h.norm, ClassTableBN) for h in hams)
    assert all(m.norm is None for m in D.modules() if isinstance(m, Hamburger))


def test_generator_hamburger_norm_gets_the_class_conditioning():
    G, _ = build()                                              # default: ham at 32 in G
    (ham,) = [m for m in G.modules() if isinstance(m, Hamburger)]
    got = []
    ham.norm.register_forward_hook(lambda m, args, out: got.append(args[1]))
    y = torch.tensor([3, 1])
    G(torch.randn(2, 128), y)
    torch.testing.assert_close(got[0], F.one_hot(y, 5).float())


# --------------------------------------------------------------------------- spectral norm and init


def context_1x1s(net):
    """The 1x1 convs of the Hamburgers' breads and of self-attention (normalised exactly)."""
    return {id(m) for block in net.modules() if isinstance(block, (Hamburger, SelfAttention))
            for m in block.modules() if isinstance(m, nn.Conv2d)}


def top_singular_value(weight):
    return torch.linalg.matrix_norm(weight.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize("sn", ["official", "exact"])
def test_every_layer_is_spectrally_normalised_by_its_kind(sn):
    """'exact': every layer converges to largest singular value 1. 'official': the context
    blocks' 1x1 convs too; every other layer to min(1, its unnormalised largest singular value)."""
    G, D = build("model.conditioning='shared'", "model.G.context=[{at = 16, rank = 4}, {at = 32, block = 'attn'}]",
                 "model.D.context=[{at = 16, block = 'attn'}, {at = 8, rank = 4}]", f"model.sn='{sn}'")
    exact = context_1x1s(G) | context_1x1s(D)
    layers = [m for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) > 30 and all(spectral_norms(m) for m in layers) and len(exact) == 12
    y = torch.tensor([0, 1])
    with torch.no_grad():
        for _ in range(3):                                      # real training forwards ...
            D(G(torch.randn(2, 128), y), y)
        for m in layers:                                        # ... then many more power iterations
            for _ in range(200):
                m.weight
    below = 0
    for m in layers:
        raw = top_singular_value(m.parametrizations.weight.original)
        expected = 1.0 if sn == "exact" or id(m) in exact else min(1.0, raw)
        below += expected < 0.98
        assert top_singular_value(m.weight) == pytest.approx(expected, abs=0.02), m
    assert (below > 0) == (sn == "official")                    # the kinds differ on these networks


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_presets_use_the_official_spectral_norm_kinds(path):
    """Hamburger / attention 1x1 convs exact, every other layer 'at most 1' (meta build)."""
    model = load_config(path).model
    with torch.device("meta"):
        G, D = Generator(model), Discriminator(model)
    for net in (G, D):
        exact = context_1x1s(net)
        assert exact
        for m in net.modules():
            for p in spectral_norms(m):
                assert p.kind == ("exact" if id(m) in exact else "at_most_1"), m


def test_fresh_hamgan_baby_first_conv_is_left_below_1():
    """Xavier init gives D's first conv (3 -> 64) a largest singular value ~0.76 (REFERENCE §2):
    'at most 1' keeps it, where exact spectral norm would scale it up to 1."""
    torch.manual_seed(0)
    D = build_discriminator(load_config("configs/hamgan_baby.toml").model)
    conv = D.blocks[0].conv1
    raw = top_singular_value(conv.parametrizations.weight.original)
    assert 0.65 < raw < 0.85
    assert top_singular_value(conv.weight) == pytest.approx(raw, rel=1e-3)


def test_bn_settings_reach_every_generator_batch_norm(monkeypatch):
    """eps and momentum (and the biased running variance) of the config reach every BN of G: the
    class tables', the Hamburger's and the output BN; running statistics follow the moving
    averages of a reference written here over a few training forwards, and eval uses eps."""
    from hamgan.layers import BatchNorm2d as BN
    seen = {}
    original = BN.normalise

    def recording(self, x):
        seen.setdefault(id(self), []).append(x.detach().clone())
        return original(self, x)

    monkeypatch.setattr(BN, "normalise", recording)
    G, _ = build("model.bn_eps=0.02", "model.bn_momentum=0.3", "model.G.context=[{at = 16, rank = 4}]")
    bns = [m for m in G.modules() if isinstance(m, BN)]
    ham = next(m for m in G.modules() if isinstance(m, Hamburger))
    assert ham.norm.bn in bns and G.out_bn in bns and len(bns) == 2 * len(G.blocks) + 2
    y = torch.tensor([0, 1, 2, 3])
    for step in range(3):
        seeded(G, torch.randn(4, 128), y, seed=step)
    assert set(seen) == {id(m) for m in bns}
    for m in bns:
        mean, var = torch.zeros(m.channels, dtype=torch.float64), torch.ones(m.channels, dtype=torch.float64)
        for x in seen[id(m)]:
            mean = 0.7 * mean + 0.3 * x.double().mean((0, 2, 3))
            var = 0.7 * var + 0.3 * x.double().var((0, 2, 3), unbiased=False)
        torch.testing.assert_close(m.running_mean, mean.float(), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(m.running_var, var.float(), rtol=1e-4, atol=1e-6)
    out = {}
    G.eval()
    monkeypatch.setattr(BN, "normalise", lambda self, x: out.setdefault(id(self), (x, original(self, x)))[1])
    seeded(G, torch.randn(4, 128), y)
    for m in bns:
        x, h = out[id(m)]
        ref = (x - m.running_mean.view(1, -1, 1, 1)) / (m.running_var.view(1, -1, 1, 1) + 0.02).sqrt()
        torch.testing.assert_close(h, ref, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_keeps_spectral_norm_state_and_running_stats():
    G1, _ = build(seed=0)
    G1(torch.randn(4, 128), torch.tensor([0, 1, 2, 3]))        # moves u, v and running statistics
    G2, _ = build(seed=1)
    state = G1.state_dict()
    assert any(k.endswith("_u") for k in state) and any(k.endswith("running_var") for k in state)
    G2.load_state_dict(state)
    G1.eval(), G2.eval()
    z, y = torch.randn(2, 128), torch.tensor([1, 2])
    assert torch.equal(seeded(G1, z, y), seeded(G2, z, y))


@pytest.mark.parametrize("scheme", ["xavier", "ortho", "normal"])
def test_init_schemes(scheme):
    G, D = build(f"model.init='{scheme}'", ch=16)
    w = G.linear.parametrizations.weight.original.detach()     # (4*4*64, 128)
    if scheme == "xavier":
        bound = (6 / sum(w.shape)) ** 0.5
        assert w.abs().max() <= bound and w.std() == pytest.approx(bound / 3 ** 0.5, rel=0.05)
    elif scheme == "ortho":
        torch.testing.assert_close(w.T @ w, torch.eye(128), atol=1e-4, rtol=0)
    else:
        assert w.std() == pytest.approx(0.02, rel=0.05) and w.mean().abs() < 1e-3
    convs = [m for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(m.bias is None or not m.bias.any() for m in convs)
    tables = [m for m in G.modules() if isinstance(m, ClassTableBN)]
    assert tables and all(t.gain.eq(1).all() and t.bias.eq(0).all() for t in tables)


def test_running_statistics_update_in_training_and_are_used_in_eval():
    G, _ = build()
    bns = [m for m in G.modules() if isinstance(m, BatchNorm2d)]
    z, y = torch.randn(4, 128), torch.tensor([0, 1, 2, 3])
    train_out = seeded(G, z, y)
    assert all(not torch.equal(bn.running_var, torch.ones_like(bn.running_var)) for bn in bns)
    assert not torch.allclose(seeded(G.eval(), z, y), train_out)


# --------------------------------------------------------------------------- precision


def test_bf16_autocast_on_cpu():
    G, D = build("model.G.context=[{at = 16, rank = 4}, {at = 32, block = 'attn'}]",
                 "model.D.context=[{at = 16, block = 'attn'}, {at = 8, rank = 4}]")
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, Hamburger):
            m.sigma.data.fill_(1.0)
        if isinstance(m, SelfAttention):
            m.gamma.data.fill_(1.0)
    z, y = torch.randn(4, 128), torch.tensor([0, 1, 2, 3])
    ref = seeded(G, z, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = seeded(G, z, y)
        s = D(x, y)
    assert x.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert torch.isfinite(x).all() and torch.isfinite(s).all()
    assert (x.float() - ref).abs().mean() < 0.05                # bf16 keeps ~2-3 digits
    s.sum().backward()
    grads = [p.grad for p in list(G.parameters()) + list(D.parameters()) if p.grad is not None]
    assert len(grads) > 50 and all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------- presets and counts


def hamgan_counts(ch=64, n_classes=1000, z_dim=128, context="ham"):
    """Parameters of the HamGAN / SAGAN networks at 128 px counted from REFERENCE §2 by hand."""
    def conv(i, o, k=3):
        return k * k * i * o + o

    def ctx(c, norm):
        if context == "attn":
            return c * c // 8 * 2 + c * c // 2 * 2 + 1         # theta, phi, g, o (no biases), gamma
        return 2 * c * c + 1 + norm                             # breads (no biases), sigma, norm

    g = [16 * ch, 16 * ch, 8 * ch, 4 * ch, 2 * ch, ch]
    n_g = z_dim * 16 * g[0] + 16 * g[0]
    for i, o in zip(g, g[1:]):
        n_g += conv(i, o) + conv(o, o) + conv(i, o, 1) + 2 * n_classes * (i + o)
    n_g += ctx(4 * ch, 2 * n_classes * 4 * ch) + 2 * ch + conv(ch, 3)
    d = [3, ch, 2 * ch, 4 * ch, 8 * ch, 16 * ch, 16 * ch]
    n_d = sum(conv(i, o) + conv(o, o) + conv(i, o, 1) for i, o in zip(d[:-1], d[1:-1]))
    n_d += 2 * conv(d[-1], d[-1])                               # last block: no downsampling, identity skip
    n_d += ctx(2 * ch, 0) + d[-1] + 1 + n_classes * d[-1]
    return n_g, n_d


def meta_counts(model):
    with torch.device("meta"):
        return count_parameters(Generator(model)), count_parameters(Discriminator(model))


def test_default_is_hamgan_with_the_papers_parameter_counts():
    n_g, n_d = meta_counts(Config().model)
    assert (n_g, n_d) == hamgan_counts()
    assert n_g == pytest.approx(42.6e6, rel=0.02) and n_d == pytest.approx(39.5e6, rel=0.02)
    lines = describe(Config()).splitlines()                     # NMF Hamburgers after the 32x32 blocks
    g3 = lines.index(next(l for l in lines if "up-block 3" in l))
    d2 = lines.index(next(l for l in lines if "down-block 2" in l))
    assert "32x32" in lines[g3] and "ham nmf S=1 D=256 R=32 K=6 one_step" in lines[g3 + 1]
    assert "32x32" in lines[d2] and "ham nmf S=1 D=128 R=16 K=6 one_step" in lines[d2 + 1]
    assert sum("ham" in l or "attn" in l for l in lines) == 2


def test_hand_count_matches_at_another_width():
    model = load_config(None, ["model.G.ch=24", "model.D.ch=24", "model.n_classes=10"]).model
    assert meta_counts(model) == hamgan_counts(ch=24, n_classes=10)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_presets_build_with_the_right_counts(path):
    cfg = load_config(path)
    counts = meta_counts(cfg.model)
    if path.stem.startswith("hamgan"):
        assert counts == hamgan_counts()
        assert counts[0] == pytest.approx(42.6e6, rel=0.02) and counts[1] == pytest.approx(39.5e6, rel=0.02)
    elif path.stem == "demo":                                   # trained by the README's main job on the CPU
        assert cfg.model.resolution == 32 and max(counts) < 1e6
    else:
        assert path.stem == "sagan", f"no expected counts for preset {path.name}"
        assert counts == hamgan_counts(context="attn")
        assert {c.block for c in cfg.model.G.context + cfg.model.D.context} == {"attn"}


def test_preset_recipes():
    assert {p.stem for p in CONFIGS} >= {"hamgan_baby", "hamgan_strong", "sagan"}
    baby, strong = (to_dict(load_config(f"configs/{n}.toml")) for n in ("hamgan_baby", "hamgan_strong"))
    assert baby["model"] == strong["model"] == to_dict(Config())["model"]
    diff = {k for k in baby["train"] if baby["train"][k] != strong["train"][k]}
    assert diff == {"batch_size", "steps"}
    assert (baby["train"]["batch_size"], baby["train"]["steps"]) == (256, 2_000_000)
    assert (strong["train"]["batch_size"], strong["train"]["steps"]) == (1024, 1_000_000)


# --------------------------------------------------------------------------- describe


def test_describe_lists_blocks_and_exact_counts():
    cfg = load_config("configs/sagan.toml", ["model.G.context=[{at = 16, block = 'ham'}, {at = 32, block = 'attn'}]"])
    text = describe(cfg)
    n_g, n_d = meta_counts(cfg.model)
    lines = text.splitlines()
    assert f"G parameters: {n_g}" in lines and f"D parameters: {n_d}" in lines
    assert re.search(r"up-block 2\s+16x16\s+1024 -> 512", text)
    row = lines.index(next(l for l in lines if "up-block 2" in l))
    assert "ham nmf" in lines[row + 1] and "attn" in lines[row + 3]


def test_describe_command(capsys):
    assert main(["describe", "--config", "configs/hamgan_baby.toml"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^G parameters: \d+$", out, re.M) and re.search(r"^D parameters: \d+$", out, re.M)
    assert main(["describe", "model.G.ch=0"]) == 2
    assert "model.G.ch" in capsys.readouterr().err


# --------------------------------------------------------------------------- invalid descriptions


@pytest.mark.parametrize("overrides, message", [
    (["model.G.context=[{at = 64}]"], r"model\.G\.context\[0\]\.at = 64.*8, 16, 32"),
    (["model.D.context=[{at = 4}, {at = 32}]"], r"model\.D\.context\[0\]\.at = 4"),
    (["model.G.ch=0"], r"model\.G\.ch = 0"),
    (["model.D.ch=-8"], r"model\.D\.ch = -8"),
    (["model.G.multipliers=[4, 4, 4]"], r"model\.G\.multipliers.*needs 4 multipliers"),
    (["model.D.multipliers=[4]"], r"model\.D\.multipliers.*at least 2"),
    (["model.G.multipliers=[4, 4, 0, 4]"], r"model\.G\.multipliers.*\[1, inf\)"),
    (["model.resolution=96"], r"model\.resolution = 96.*32, 64, 128, 256"),
    (["model.G.context=[{at = 32, block = 'attn'}]", "model.G.ch=1"], r"model\.G\.context\[0\].*multiple of 8"),
    (["model.D.context=[{at = 16, rank = 0}]"], r"model\.D\.context\[0\].*rank"),
    (["model.D.context=[{at = 16, rank = 33}]"], r"model\.D\.context\[0\]\.rank = 33: must be at most D = 32"),
    (["model.G.context=[{at = 16, groups = 3, rank = 2}]"], r"model\.G\.context\[0\]\.groups = 3: must divide"),
    (["model.conditioning='shared'", "model.z_dim=3"], r"model\.z_dim = 3"),
    (["model.n_classes=-1"], r"model\.n_classes = -1"),
])
def test_invalid_descriptions_are_refused_before_construction(overrides, message):
    with pytest.raises(ConfigError, match=message):    # when the config is loaded, or else when built
        cfg = model_cfg(*overrides, ch=8)
        build_generator(cfg), build_discriminator(cfg)
    assert issubclass(ConfigError, ValueError)
