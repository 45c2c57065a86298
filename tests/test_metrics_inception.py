"""The Inception feature extractor: weights resolution, equality with pytorch-fid, and (with the
real weights present) FID that tells images from noise.

Comparisons with pytorch-fid use seeded random weights written under a temporary TORCH_HOME, so
they never read the real cache; downloads are replaced by a function that fails the test."""
import hashlib
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.metrics import inception as inc
from hamgan.metrics.evaluate import evaluate_images
from hamgan.metrics.fid import FeatureStats, frechet_distance
from hamgan.metrics.inception import (ENV_VAR, WEIGHTS_FILE, InceptionFeatures, InceptionWeightsError,
                                      resolve_weights, write_random_weights)
from hamgan.metrics.inception_score import inception_score
from hamgan.metrics.sources import ImageFiles


def _no_download(url, dst, *args, **kwargs):
    raise AssertionError(f"a test tried to download {url}")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    return write_random_weights(tmp_path_factory.mktemp("weights") / WEIGHTS_FILE, seed=0)


@pytest.fixture
def torch_home(tmp_path, monkeypatch, random_weights):
    """A temporary TORCH_HOME whose hub cache holds the random weights; no env override, no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert inc.hub_weights_path() == hub / WEIGHTS_FILE  # really the temporary cache
    hub.mkdir(parents=True)
    (hub / WEIGHTS_FILE).symlink_to(random_weights)
    return hub / WEIGHTS_FILE


def test_weights_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    explicit, env = tmp_path / "explicit.pth", tmp_path / "env.pth"
    explicit.write_bytes(b"a")
    env.write_bytes(b"b")
    hub = tmp_path / "torch" / "hub" / "checkpoints" / WEIGHTS_FILE

    # offline with nothing anywhere: the download is tried, fails, and the error says what to put where
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InceptionWeightsError) as err:
        resolve_weights()
    assert calls == [inc.WEIGHTS_URL]
    assert WEIGHTS_FILE in str(err.value) and str(hub.parent) in str(err.value) and ENV_VAR in str(err.value)
    assert not list(hub.parent.iterdir())  # no partial download left behind
    with pytest.raises(InceptionWeightsError, match=WEIGHTS_FILE):
        resolve_weights(download=False)

    # online: downloaded into the hub cache
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **kw: open(dst, "wb").write(b"c"))
    assert resolve_weights() == hub and hub.read_bytes() == b"c"
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    assert resolve_weights() == hub  # the cache, no second download
    monkeypatch.setenv(ENV_VAR, str(env))
    assert resolve_weights() == env  # the environment beats the cache
    assert resolve_weights(explicit) == explicit  # an explicit path beats everything
    with pytest.raises(InceptionWeightsError, match="does not exist"):
        resolve_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.pth"))
    with pytest.raises(InceptionWeightsError, match=ENV_VAR):
        resolve_weights()
    # a file that is not Inception weights
    with pytest.raises(InceptionWeightsError, match="not pytorch-fid"):
        InceptionFeatures(explicit)


def test_features_and_statistics_equal_pytorch_fid(torch_home, tmp_path):
    """Files -> features -> statistics, against pytorch-fid's own pipeline on the same files
    with the same weights (found, like pytorch-fid finds them, in the temporary hub cache)."""
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    names = ["a.png", "b.png", "sub/c.png"]
    for name in names:  # odd, non-square size: the resize to 299 is part of what is compared
        Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(folder / name)
    ours = InceptionFeatures()
    assert ours.weights_path == torch_home
    stats, result = evaluate_images(ImageFiles(folder), batch_size=3, keep_features=3, inception=ours,
                                    progress=False)
    theirs = get_activations([str(folder / n) for n in names], InceptionV3([3]).eval(), batch_size=3,
                             dims=2048, device="cpu", num_workers=0)
    assert theirs.std() > 0.01  # features are not degenerate, so equality means something
    assert np.array_equal(stats.features, theirs)  # kept features, in file order: bit for bit
    np.testing.assert_allclose(stats.mu, theirs.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.sigma, np.cov(theirs, rowvar=False), rtol=1e-5, atol=1e-9)
    digest = hashlib.sha256(torch_home.read_bytes()).hexdigest()[:16]
    assert stats.provenance == {"backbone": inc.BACKBONE, "weights": digest, "resize": "bilinear-299",
                                "image_size": "37x45", "dims": 2048}
    assert result["fid"] is None and result["is_mean"] >= 1.0

    # the logits come from the same forward: pool3 @ fc.weight^T, no bias
    image = torch.from_numpy(np.array(Image.open(folder / "a.png"))).permute(2, 0, 1)[None]
    pool3, logits = ours(image)
    assert pool3.shape == (1, 2048) and logits.shape == (1, 1008)
    np.testing.assert_allclose(pool3[0].numpy(), theirs[0], rtol=1e-4, atol=1e-6)  # batch of 1 vs 3
    fc = torch.load(torch_home, weights_only=True)["fc.weight"]
    torch.testing.assert_close(logits, pool3 @ fc.t())
    # floats in [-1, 1] (generator output) are the same images: the same features, to rounding
    pool3_float, _ = ours(image.float() / 127.5 - 1)
    torch.testing.assert_close(pool3_float, pool3, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="uint8 or float"):
        ours(image[:, :2])


def tf1_legacy_bilinear_reference(x: np.ndarray, size: int) -> np.ndarray:
    """TF1's resize_bilinear (align_corners=False, half_pixel_centers=False) written out pixel by
    pixel from its definition: output (i, j) reads source (i * H / size, j * W / size), between
    the floor and the ceil (clamped to the last pixel) of each coordinate."""
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (size, size))
    for i in range(size):
        sy = np.float32(i) * (np.float32(h) / np.float32(size))
        y0, y1 = int(np.floor(sy)), min(int(np.ceil(sy)), h - 1)
        for j in range(size):
            sx = np.float32(j) * (np.float32(w) / np.float32(size))
            x0, x1 = int(np.floor(sx)), min(int(np.ceil(sx)), w - 1)
            fy, fx = sy - np.floor(sy), sx - np.floor(sx)
            out[..., i, j] = ((1 - fy) * ((1 - fx) * x[..., y0, x0] + fx * x[..., y0, x1])
                              + fy * ((1 - fx) * x[..., y1, x0] + fx * x[..., y1, x1]))
    return out


@pytest.mark.parametrize("shape", [(7, 5), (16, 16), (128, 128)])
def test_tf1_legacy_resize_equals_its_definition_and_differs_from_pytorch_fid(shape):
    rng = np.random.default_rng(0)
    size = 299 if shape == (128, 128) else 11
    x = rng.uniform(-1, 1, (2, 3) + shape).astype(np.float32)
    ours = inc.resize_tf1_bilinear(torch.from_numpy(x), size).numpy()
    assert ours.shape == (2, 3, size, size)
    np.testing.assert_allclose(ours, tf1_legacy_bilinear_reference(x, size), rtol=0, atol=2e-6)
    # the first row and column are source pixels 0 (no half-pixel shift), unlike F.interpolate's
    np.testing.assert_array_equal(ours[..., 0, 0], x[..., 0, 0])
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                             align_corners=False).numpy()
    assert np.abs(ours - theirs).max() > 0.05


def test_tf1_resize_mode_of_the_extractor(random_weights):
    """resize='tf1_bilinear': [-1, 1] images through resize_tf1_bilinear into the same network;
    uint8 input is mapped to [-1, 1] first; the provenance says which resize."""
    ours = InceptionFeatures(random_weights)
    rng = np.random.default_rng(1)
    u8 = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    x = u8.float() / 127.5 - 1
    pool3, logits = ours(x, resize="tf1_bilinear")
    with inc._full_fp32():
        direct = ours.features(inc.resize_tf1_bilinear(x, 299)).flatten(1)
    torch.testing.assert_close(pool3, direct)
    torch.testing.assert_close(ours(u8, resize="tf1_bilinear")[0], pool3, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours(x)[0], pool3, rtol=1e-3)
    assert ours.provenance(32, "tf1_bilinear")["resize"] == "tf1-bilinear-299"
    assert ours.provenance(32)["resize"] == "bilinear-299"


def _smooth_images(n, seed):
    """Low-frequency colour fields (n, 3, 64, 64) uint8: one 'kind' of image."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=64, mode="bilinear") * 255).round().to(torch.uint8)


def test_real_weights_fid_separates_images_from_noise():
    try:
        path = resolve_weights(download=False)
    except InceptionWeightsError as e:
        pytest.skip(f"real Inception weights absent ({e}); ../shared/tools/offline_fid_weights.py makes them")
    extractor = InceptionFeatures(path)
    noise = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    pool3, logits = extractor(torch.cat([_smooth_images(12, seed=1), noise]))  # one forward: CPU is slow

    def stats(rows):
        s = FeatureStats(2048)
        s.update(pool3[rows])
        return s.mean_cov()

    half1, half2, other = stats(slice(0, 6)), stats(slice(6, 12)), stats(slice(12, 18))
    same, different = frechet_distance(*half1, *half2), frechet_distance(*half1, *other)
    # (6 samples a side bias both upwards; here ~114 vs ~517 with the offline conversion)
    assert same < different / 3, (same, different)
    if not extractor.has_classifier:  # the offline conversion: IS is 1 by construction
        assert inception_score(logits, splits=2) == (pytest.approx(1.0, abs=1e-12), pytest.approx(0, abs=1e-12))
