"""`hamgan fid-stats` and `hamgan eval` end to end, with seeded random Inception weights (given
through $HAMGAN_INCEPTION_WEIGHTS; the hub cache points at an empty temporary folder and
downloads fail the test) and a handful of images."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.cli import main
from hamgan.metrics.fid import FIDStats
from hamgan.metrics.inception import (BACKBONE, ENV_VAR, RESIZE, WEIGHTS_FILE, weights_digest,
                                      write_random_weights)


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
    assert r["num_samples"] == 4 and r["reference_count"] == 4
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
    assert main(["eval", "--images", str(folder), "--protocol", "paper", "--num", "4"]) == 2
    assert "contradicts" in capsys.readouterr().err


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
                 "--truncation", "1.0", "--out", str(results), "--no-progress", "--device", "cpu"]) == 0
    r = json.loads(results.read_text())
    assert r["num_samples"] == 4 and r["step"] == 7 and r["ema"] is True and r["truncation"] == 1.0
    assert r["fid"] > 0 and r["is_mean"] >= 1.0
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["kid_mean"] is not None
    assert r["inception_weights"] == weights_digest(weights)


def test_image_sources(folder, tmp_path):
    from hamgan.errors import HamganError
    from hamgan.metrics.evaluate import evaluate_images
    from hamgan.metrics.sources import ImageFiles, open_images

    ds, info = open_images(str(folder), resolution=16, resize="lanczos")  # any layout; training's transform
    assert len(ds) == 4 and ds[0][0].shape == (3, 16, 16) and ds[0][0].dtype == torch.uint8
    assert info == {"source": str(folder.resolve()), "source_resize": "lanczos"}
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
