"""`hamgan fid-stats` and `hamgan eval` end to end, with seeded random Inception weights (given
through $HAMGAN_INCEPTION_WEIGHTS; the hub cache points at an empty temporary folder and
downloads fail the test) and a handful of images.

The protocols (`--protocol`, `--repeats`, `--compare`) are scored on a tiny checkpoint whose G and
G_ema differ, so which one was scored can be told from the images; the random weights' fc is
random, so IS is informative."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.checkpoint import save_checkpoint
from hamgan.cli import main
from hamgan.config import load_config, to_dict
from hamgan.metrics.evaluate import chunk_seed, sample_latents
from hamgan.metrics.fid import FIDStats
from hamgan.metrics.inception import (BACKBONE, ENV_VAR, RESIZE, WEIGHTS_FILE, InceptionFeatures, weights_digest,
                                      write_random_weights)
from hamgan.metrics.sources import ImageFiles
from hamgan.models import build_generator

RES = 32
CFG = ["model.resolution=32", "model.G.ch=4", "model.D.ch=4", "model.n_classes=3",
       "model.G.context=[{at=16, block='ham', rank=4, steps=2}]", "model.D.context=[{at=16, rank=4, steps=2}]"]


def _no_download(url, dst, *args, **kwargs):
    raise AssertionError(f"a test tried to download {url}")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("weights") / WEIGHTS_FILE, seed=2)


@pytest.fixture(autouse=True)
def isolated(weights, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)


@pytest.fixture
def folder(tmp_path):
    """4 PNGs of 24 px in two sub-folders."""
    rng = np.random.default_rng(0)
    for i in range(4):
        path = tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return tmp_path / "imgs"


def test_fid_stats_then_eval_of_the_same_images(folder, weights, tmp_path, capsys):
    out = tmp_path / "stats" / "ref.npz"
    assert main(["fid-stats", "--data", str(folder), "--out", str(out), "--batch", "3", "--keep-features", "4",
                 "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    stats = FIDStats.load(out)
    assert stats.count == 4 and stats.features.shape == (4, 2048)
    assert stats.provenance["image_size"] == 24 and stats.provenance["weights"] == weights_digest(weights)
    assert stats.provenance["source"] == str(folder.resolve())
    assert "warning: only 4 images" in capsys.readouterr().err

    results = tmp_path / "res.json"
    assert main(["eval", "--images", str(folder), "--stats", str(out), "--out", str(results), "--batch", "4",
                 "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    r = json.loads(results.read_text())
    assert r["num_samples"] == 4 and r["protocol"]["reference"]["count"] == 4
    assert abs(r["fid"]) < 1e-3  # the same images: (numerically) zero
    assert (r["precision"], r["recall"]) == (1.0, 1.0)
    assert isinstance(r["kid_mean"], float)  # (the unbiased KID of a set with itself is not 0)
    assert any("2048" in n for n in r["notes"])
    assert f"FID        {r['fid']:.4f}" in capsys.readouterr().out


def test_eval_refuses_statistics_made_differently(folder, weights, tmp_path, capsys):
    prov = {"backbone": BACKBONE, "weights": weights_digest(weights), "resize": RESIZE, "image_size": 16, "dims": 2048}
    FIDStats(np.zeros(2048), np.eye(2048), 10, prov).save(tmp_path / "ref16.npz")
    assert main(["eval", "--images", str(folder), "--stats", str(tmp_path / "ref16.npz"), "--no-progress"]) == 2
    assert "image_size: 16" in capsys.readouterr().err
    np.savez(tmp_path / "pfid.npz", mu=np.zeros(2048), sigma=np.eye(2048))  # pytorch-fid's format
    assert main(["eval", "--images", str(folder), "--stats", str(tmp_path / "pfid.npz"), "--no-progress"]) == 2
    assert "recompute it with `hamgan fid-stats`" in capsys.readouterr().err


def test_eval_of_a_tiny_checkpoint(weights, tmp_path, capsys):
    from hamgan.checkpoint import save_checkpoint
    from hamgan.config import load_config, to_dict
    from hamgan.models import build_generator

    cfg = load_config(overrides=["model.resolution=32", "model.G.ch=8", "model.D.ch=8", "model.n_classes=3",
                                 "model.D.context=[{at = 16, rank = 16}]"])
    torch.manual_seed(0)
    G = build_generator(cfg.model)
    ckpt = save_checkpoint({"config": to_dict(cfg), "step": 7, "G": G.state_dict(), "G_ema": G.state_dict()},
                           tmp_path / "tiny.pt")
    prov = {"backbone": BACKBONE, "weights": weights_digest(weights), "resize": RESIZE, "image_size": 32, "dims": 2048}
    rng = np.random.default_rng(0)
    FIDStats(np.full(2048, 0.3), 0.01 * np.eye(2048), 50_000, prov,
             rng.gamma(1.0, 0.3, (6, 2048)).astype(np.float32)).save(tmp_path / "ref32.npz")
    results = tmp_path / "res.json"
    assert main(["eval", "--ckpt", str(ckpt), "--stats", str(tmp_path / "ref32.npz"), "--num", "4", "--batch", "2",
                 "--truncation", "1.0", "--out", str(results), "--no-progress", "--device", "cpu", "--no-accuracy"]) == 0
    r = json.loads(results.read_text())
    assert r["num_samples"] == 4 and r["step"] == 7 and r["ema"] is True and r["protocol"]["truncation"] == 1.0
    assert r["fid"] > 0 and r["is_mean"] >= 1.0
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["kid_mean"] is not None
    assert r["protocol"]["inception_weights"] == weights_digest(weights)
    assert r["protocol"]["generator"] == "G_ema" and r["protocol"]["name"] == "pytorch_fid"
    assert "acc_class" not in r


def test_eval_reports_conditional_accuracy_with_classifiers_cached_next_to_the_statistics(weights, tmp_path, capsys):
    from hamgan.checkpoint import save_checkpoint
    from hamgan.config import load_config, to_dict
    from hamgan.data import ShapesDataset
    from hamgan.metrics.classifier import Classifiers, ImageClassifier, cache_key, cache_path
    from hamgan.models import build_generator

    cfg = load_config(overrides=["model.resolution=32", "model.G.ch=8", "model.D.ch=8", "model.n_classes=3",
                                 "model.D.context.0.at=16", "data.shapes_classes=3", "data.shapes_size=30"])
    torch.manual_seed(0)
    G = build_generator(cfg.model)
    ckpt = save_checkpoint({"config": to_dict(cfg), "step": 7, "G": G.state_dict(), "G_ema": G.state_dict()},
                           tmp_path / "run" / "checkpoints" / "tiny.pt")
    # a stand-in for trained classifiers, cached for exactly this data: eval must find and use it
    key = cache_key(ShapesDataset(32, 3, size=30, seed=0), 0)
    model = ImageClassifier("colour", 3, 32, [0, 1, 2])
    Classifiers(key, {"class": model}, {"class": (0.97, [0.9, 1.0, 1.0])}).save(cache_path(tmp_path / "stats", key))
    prov = {"backbone": BACKBONE, "weights": weights_digest(weights), "resize": RESIZE, "image_size": 32, "dims": 2048}
    FIDStats(np.full(2048, 0.3), 0.01 * np.eye(2048), 50_000, prov).save(tmp_path / "stats" / "ref32.npz")
    results = tmp_path / "res.json"
    assert main(["eval", "--ckpt", str(ckpt), "--stats", str(tmp_path / "stats" / "ref32.npz"), "--num", "4",
                 "--batch", "2", "--out", str(results), "--no-progress", "--device", "cpu", "--no-extras"]) == 0
    r = json.loads(results.read_text())
    assert r["acc_class_ceiling"] == 0.97 and 0 <= r["acc_class"] <= 1 and sum(r["class_counts"]) == 4
    assert "class accuracy" in capsys.readouterr().out
    # data whose classes the generator does not have: accuracy is skipped with the reason (the
    # rest of the evaluation stands), and refused with it when that data is asked for
    cfg10 = load_config(overrides=["model.resolution=32", "model.G.ch=8", "model.D.ch=8", "model.n_classes=3",
                                   "model.D.context.0.at=16"])
    t10 = save_checkpoint({"config": to_dict(cfg10), "step": 7, "G": G.state_dict()},
                          tmp_path / "run" / "checkpoints" / "t10.pt")
    common = ["eval", "--ckpt", str(t10), "--num", "4", "--no-progress", "--device", "cpu"]
    assert main(common) == 0
    assert "conditional accuracy skipped" in capsys.readouterr().err
    assert main(common + ["--data", "shapes"]) == 2
    assert "data.shapes_classes" in capsys.readouterr().err


def test_image_sources(folder, tmp_path):
    from hamgan.errors import HamganError
    from hamgan.metrics.evaluate import evaluate_images
    from hamgan.metrics.sources import ImageFiles, open_images

    ds, info = open_images(str(folder), resolution=16, resize="lanczos")  # any layout; training's transform
    assert len(ds) == 4 and ds[0][0].shape == (3, 16, 16) and ds[0][0].dtype == torch.uint8
    assert info == {"source": str(folder.resolve()), "source_resize": "lanczos", "quantized": True}
    assert ImageFiles(folder)[3][0].shape == (3, 24, 24)  # as they are
    assert [p.name for p in ImageFiles(folder).files] == ["0.png", "2.png", "1.png", "3.png"]  # c0/, then c1/
    ds, info = open_images("shapes", resolution=8)
    assert ds[0][0].shape == (3, 8, 8) and info["source"] == "shapes"
    with pytest.raises(HamganError, match="resolution"):
        open_images("shapes")
    with pytest.raises(HamganError, match="neither"):
        open_images(str(tmp_path / "nowhere"))
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(folder / "c1" / "odd.png")
    with pytest.raises(HamganError, match="different sizes"):  # refused before any Inception work
        evaluate_images(ImageFiles(folder), batch_size=5, progress=False)
    with pytest.raises(HamganError, match="only 5"):
        evaluate_images(ImageFiles(folder), num=6, progress=False)


# --------------------------------------------------------------------------- protocols


def generators():
    """(G, G_ema): the same config, different weights."""
    cfg = load_config(None, CFG)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(build_generator(cfg.model).eval())
    return cfg, nets


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg, (G, G_ema) = generators()
    return save_checkpoint({"config": to_dict(cfg), "step": 3, "G": G.state_dict(), "G_ema": G_ema.state_dict()},
                           tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    """5 landscape images of odd margin: the validation 'split'."""
    folder = tmp_path_factory.mktemp("data") / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40, 55, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def paper_stats(val, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats") / "paper.npz"     # (module scope: weights given explicitly)
    assert main(["fid-stats", "--protocol", "paper", "--data", str(val), "--resolution", str(RES), "--num", "7",
                 "--inception-weights", str(weights),
                 "--out", str(out), "--batch", "3", "--workers", "0", "--no-progress", "--device", "cpu"]) == 0
    return out


def test_paper_reference_statistics_repeat_the_images_in_order_as_floats(val, paper_stats, weights):
    """7 from 5 images: 0, 1, 2, 3, 4, 0, 1 (the first ones twice, as 50,176 from 50,000), the
    official pipeline's float images (not rounded), TF1 resize to 299."""
    stats = FIDStats.load(paper_stats)
    p = stats.provenance
    assert stats.count == 7 and (p["protocol"], p["quantized"], p["resize"]) == ("paper", False, "tf1-bilinear-299")
    ext = InceptionFeatures(weights)
    floats = ImageFiles(val, RES, "tf_bilinear", quantize=False)
    images = torch.stack([floats[i][0] for i in (0, 1, 2, 3, 4, 0, 1)])
    assert images.dtype == torch.float32 and not torch.equal(images, (images * 127.5).round() / 127.5)
    feats = ext(images, "tf1_bilinear")[0].double().numpy()
    np.testing.assert_allclose(stats.mu, feats.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats.sigma, np.cov(feats, rowvar=False), rtol=1e-4, atol=1e-8)
    # the uint8 (rounded) images give other statistics: the floats were really used
    rounded = torch.stack([ImageFiles(val, RES)[i][0] for i in (0, 1, 2, 3, 4, 0, 1)])
    assert not np.allclose(ext(rounded, "tf1_bilinear")[0].double().numpy().mean(0), stats.mu, rtol=1e-6, atol=0)


def expected_images(G, num, batch, seed=0):
    """What evaluate_generator's contract says batch k holds: latents and bases seeded by
    chunk_seed(seed, k), G in eval mode."""
    out = []
    for k in range(-(-num // batch)):
        torch.manual_seed(chunk_seed(seed, k))
        z, y = sample_latents(min(batch, num - k * batch), G.z_dim, G.n_classes)
        with torch.no_grad():
            out.append(G(z, y))
    return torch.cat(out)


def inception_score_one_split(logits):
    logp = torch.log_softmax(logits.double(), 1)
    p = logp.exp()
    return torch.exp((p * (logp - torch.log(p.mean(0)))).sum(1).mean()).item()


def test_paper_protocol_on_a_tiny_checkpoint(ckpt, paper_stats, weights, tmp_path, monkeypatch, capsys):
    seen = []
    forward = InceptionFeatures.forward

    def recording(self, images, resize="pytorch_fid"):
        pool3, logits = forward(self, images, resize)
        seen.append((images.clone(), resize, logits))
        return pool3, logits

    monkeypatch.setattr(InceptionFeatures, "forward", recording)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--ckpt", str(ckpt), "--protocol", "paper", "--stats", str(paper_stats), "--num", "4", "--batch", "2",
              "--no-extras", "--no-progress", "--device", "cpu"]
    assert main(["eval", *common, "--out", str(a)]) == 0
    r = json.loads(a.read_text())
    p = r["protocol"]
    assert (p["name"], p["generator"], p["num_samples"], p["resize_to_299"], p["quantized"], p["is_splits"]) == \
        ("paper", "G", 4, "tf1_bilinear", False, 1)
    assert (p["bn"], p["truncation"], p["seed"], p["repeats"]) == ("running", None, 0, 1)
    assert p["reference"] == {"file": str(paper_stats.resolve()), "split": "val", "count": 7,
                              "digest": weights_digest(paper_stats), "quantized": False}
    assert p["inception_weights"] == weights_digest(weights) and r["ema"] is False
    assert "not the paper protocol's 50,176" in " ".join(r["notes"])
    # raw G by default, its float output fed to Inception (no uint8 rounding), TF1 resize
    fed = [(x, resize, logits) for x, resize, logits in seen if len(x) > 1]   # the batches, not the probe
    images = torch.cat([x for x, _, _ in fed])
    cfg, (G, G_ema) = generators()
    torch.testing.assert_close(images, expected_images(G, 4, 2), rtol=0, atol=0)
    assert not torch.allclose(images, expected_images(G_ema, 4, 2))
    assert images.dtype == torch.float32 and {resize for _, resize, _ in seen} == {"tf1_bilinear"}
    assert not torch.equal((images + 1) * 127.5, ((images + 1) * 127.5).round())
    # one IS split over all samples, from the logits Inception returned
    logits = torch.cat([lg for _, _, lg in fed])
    # (4 samples in hamgan's usual 10 splits are 4 splits of one sample, whose scores are exactly 1)
    assert r["is_mean"] == pytest.approx(inception_score_one_split(logits), rel=1e-9) and r["is_std"] == 0.0
    assert r["is_mean"] > 1 + 1e-6 and r["fid"] > 0

    # --ema scores G_ema and says so; --compare names exactly the differing field
    seen.clear()
    assert main(["eval", *common, "--ema", "--out", str(b)]) == 0
    assert json.loads(b.read_text())["protocol"]["generator"] == "G_ema"
    torch.testing.assert_close(torch.cat([x for x, _, _ in seen if len(x) > 1]), expected_images(G_ema, 4, 2),
                               rtol=0, atol=0)
    capsys.readouterr()
    assert main(["eval", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "differ in 1 field(s)" in out and "generator: a.json 'G', b.json 'G_ema'" in out

    # a result without a protocol object is refused, naming the fields it lacks
    legacy = tmp_path / "old.json"
    legacy.write_text(json.dumps({k: v for k, v in r.items() if k != "protocol"}))
    assert main(["eval", "--compare", str(a), str(legacy)]) == 2
    err = capsys.readouterr().err
    assert "old.json has no protocol object" in err and "resize_to_299" in err and "generator" in err


def test_compare_lists_every_differing_field(ckpt, tmp_path, capsys):
    """pytorch-fid conventions vs the paper's, without statistics: every convention is listed."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    common = ["--ckpt", str(ckpt), "--num", "2", "--batch", "2", "--no-extras", "--no-progress", "--device", "cpu"]
    assert main(["eval", *common, "--out", str(a)]) == 0
    assert main(["eval", *common, "--protocol", "paper", "--seed", "1", "--out", str(b)]) == 0
    capsys.readouterr()
    assert main(["eval", "--compare", str(a), str(b)]) == 0
    lines = [line.strip().split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert sorted(lines) == ["generator", "is_splits", "name", "quantized", "resize_to_299", "seed"]


def test_eval_refuses_reference_statistics_of_another_protocol(ckpt, val, tmp_path, capsys):
    pfid = tmp_path / "pfid.npz"
    assert main(["fid-stats", "--data", str(val), "--resolution", str(RES), "--out", str(pfid), "--workers", "0",
                 "--no-progress", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["eval", "--ckpt", str(ckpt), "--protocol", "paper", "--stats", str(pfid), "--num", "2",
                 "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "protocol: statistics 'pytorch_fid', this evaluation 'paper'" in err
    assert "resize_to_299: statistics 'pytorch_fid', this evaluation 'tf1_bilinear'" in err
    assert "hamgan fid-stats --protocol paper" in err
    # and the paper protocol takes the official pixels only: not a store of PIL-resized images
    for i, c in enumerate(("a", "b")):
        (tmp_path / "tree" / c).mkdir(parents=True)
        Image.open(val / f"{i}.png").save(tmp_path / "tree" / c / "x.png")
    assert main(["prepare", "--src", str(tmp_path / "tree"), "--out", str(tmp_path / "store"), "--size", str(RES),
                 "--resize", "bilinear", "--workers", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["fid-stats", "--protocol", "paper", "--data", str(tmp_path / "store"), "--out",
                 str(tmp_path / "s.npz"), "--no-progress", "--device", "cpu"]) == 2
    assert "resized with 'bilinear'" in capsys.readouterr().err


def test_repeats_report_mean_and_std(ckpt, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--ckpt", str(ckpt), "--protocol", "paper", "--num", "2", "--batch", "2", "--repeats", "3",
                 "--no-extras", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    runs = [run["is_mean"] for run in r["runs"]]
    assert len(runs) == 3 and len(set(runs)) == 3                   # seeds 0, 1, 2: different samples
    assert r["is_mean"] == pytest.approx(np.mean(runs)) and r["is_mean_std"] == pytest.approx(np.std(runs, ddof=1))
    assert r["protocol"]["repeats"] == 3 and r["fid"] is None
