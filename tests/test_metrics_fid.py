"""Frechet distance, streaming statistics and statistics files (REFERENCE section 5)."""
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from hamgan.errors import HamganError
from hamgan.metrics.fid import FeatureStats, FIDStats, StatsError, fid_from_stats, frechet_distance


def random_spd(d, rng, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d) + (0 if rank else 0.1 * np.eye(d))


def sqrtm_reference(mu1, s1, mu2, s2):
    """pytorch-fid's calculate_frechet_distance; on SciPy versions where its
    `sqrtm(..., disp=False)` call fails, the same formula with sqrtm called without it."""
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(calculate_frechet_distance(mu1, s1, mu2, s2))
    except TypeError:
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        covmean = np.real(covmean)
        diff = mu1 - mu2
        return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------- Frechet distance


METHODS = ["auto", "eigh"]  # S1 factored by pivoted Cholesky / by its symmetric square root


@pytest.mark.parametrize("method", METHODS)
def test_equal_statistics_give_zero(method):
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(64), random_spd(64, rng)
    assert abs(frechet_distance(mu, s, mu, s, method)) < 1e-9
    # rank-deficient covariances (fewer samples than dims) too: the ~54 zero eigenvalues come out
    # as rounding noise ~1e-16 whose square roots (~1e-8) add up; tr S is ~64
    s = random_spd(64, rng, rank=10)
    assert abs(frechet_distance(mu, s, mu, s, method)) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_diagonal_covariances_closed_form(method):
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, 20), rng.uniform(0.1, 3, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("c", [0.0, 0.5, 1.0, 3.0])
def test_scaled_covariance_closed_form(c, method):
    """sigma2 = c^2 sigma1: tr(S + c^2 S - 2 c S) = (1 - c)^2 tr S."""
    rng = np.random.default_rng(2)
    mu, s = rng.standard_normal(32), random_spd(32, rng)
    assert frechet_distance(mu, s, mu, c * c * s, method) == pytest.approx((1 - c) ** 2 * np.trace(s), rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_one_dimensional_closed_form(method):
    """N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2."""
    assert frechet_distance(1.5, 4.0, -0.5, 9.0, method) == pytest.approx(2.0 ** 2 + (2.0 - 3.0) ** 2, rel=1e-14)
    assert frechet_distance([0.0], [[0.25]], [0.0], [[0.25]], method) == pytest.approx(0.0, abs=1e-15)
    assert frechet_distance(0.0, 0.0, 0.0, 4.0, method) == pytest.approx(4.0, rel=1e-14)  # a point mass


@pytest.mark.parametrize("method", METHODS)
def test_non_commuting_2x2_closed_form(method):
    """For 2x2 PSD A, B: the eigenvalues l1, l2 of AB are >= 0, so
    (tr sqrt(AB))^2 = l1 + l2 + 2 sqrt(l1 l2) = tr(AB) + 2 sqrt(det A det B)."""
    a = np.array([[2.0, 1.0], [1.0, 2.0]])
    b = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert not np.allclose(a @ b, b @ a)
    mu1, mu2 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    # tr(AB) = 2 + 8 = 10, det A = 3, det B = 4
    expected = 1.0 + 4.0 + 4.0 + 5.0 - 2 * math.sqrt(10 + 2 * math.sqrt(12))
    assert frechet_distance(mu1, a, mu2, b, method) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_symmetric_and_agrees_with_sqrtm_reference(method):
    rng = np.random.default_rng(3)
    for d in (16, 128):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.3
        s1, s2 = random_spd(d, rng), random_spd(d, rng)
        ours = frechet_distance(mu1, s1, mu2, s2, method)
        assert frechet_distance(mu2, s2, mu1, s1, method) == pytest.approx(ours, rel=1e-10)
        assert ours == pytest.approx(sqrtm_reference(mu1, s1, mu2, s2), rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_singular_covariance(method):
    """S1 = A A^T / 40 of rank 40 in 128-d (fewer samples than dimensions): then exactly
    tr sqrt(S1 S2) = tr sqrt(A^T S2 A / 40), a 40x40 problem without ~0 eigenvalues."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((128, 40))
    s1, s2 = a @ a.T / 40, random_spd(128, rng)
    mu1, mu2 = rng.standard_normal(128), rng.standard_normal(128)
    tr_sqrt = np.sqrt(np.linalg.eigvalsh(a.T @ s2 @ a / 40)).sum()
    exact = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    ours = frechet_distance(mu1, s1, mu2, s2, method)
    # pivoted Cholesky stops at the rank: exact; square roots (eigh, sqrtm) add sqrt(~1e-16) per
    # zero eigenvalue, ~1e-6 in all
    assert ours == pytest.approx(exact, rel=1e-12 if method == "auto" else 1e-7)
    assert frechet_distance(mu2, s2, mu1, s1, method) == pytest.approx(exact, rel=1e-7)
    assert sqrtm_reference(mu1, s1, mu2, s2) == pytest.approx(exact, rel=1e-7)
    # both singular
    b = rng.standard_normal((128, 30))
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(a.T @ (b @ b.T / 30) @ a / 40), 0, None)).sum()
    exact = np.trace(s1) + np.trace(b @ b.T / 30) - 2 * tr_sqrt
    assert frechet_distance(mu1, s1, mu1, b @ b.T / 30, method) == pytest.approx(exact, rel=1e-7)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="sqrtm")


# --------------------------------------------------------------------------- streaming statistics


def test_streaming_statistics_equal_those_of_concatenated_features():
    torch.manual_seed(0)
    # large mean, small spread: the case where sloppy accumulation loses digits
    batches = [torch.randn(n, 16) * 0.05 + 3.0 for n in (7, 1, 30, 12)]
    stream = FeatureStats(16)
    for b in batches:
        stream.update(b.float())
    mu, sigma = stream.mean_cov()
    all_feats = torch.cat(batches).float().double().numpy()
    assert stream.count == 50 and mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, all_feats.mean(0), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(all_feats, rowvar=False), rtol=1e-9, atol=1e-14)
    assert np.array_equal(sigma, sigma.T)


def test_stats_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    prov = {"backbone": "b", "weights": "w", "resize": "r", "image_size": 32, "dims": 8, "source": "x"}
    stats = FIDStats(rng.standard_normal(8), random_spd(8, rng), 123, prov,
                     rng.standard_normal((5, 8)).astype(np.float32))
    path = stats.save(tmp_path / "sub" / "ref.npz")
    back = FIDStats.load(path)
    assert np.array_equal(back.mu, stats.mu) and np.array_equal(back.sigma, stats.sigma)
    assert back.count == 123 and back.provenance == prov
    assert np.array_equal(back.features, stats.features)
    # pytorch-fid reads the same file (its keys are mu / sigma)
    with np.load(path) as f:
        assert np.array_equal(f["mu"], stats.mu) and np.array_equal(f["sigma"], stats.sigma)
    # without features
    stats.features = None
    assert FIDStats.load(stats.save(tmp_path / "b.npz")).features is None
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary files left


@pytest.mark.parametrize("key,value", [("backbone", "torchvision"), ("weights", "0123"), ("resize", "lanczos-299"),
                                       ("image_size", 64), ("dims", 768)])
def test_mismatched_statistics_are_refused(key, value):
    prov = {"backbone": "b", "weights": "w", "resize": "r", "image_size": 32, "dims": 2}
    ref = FIDStats(np.zeros(2), np.eye(2), 5000, dict(prov, **{key: value}))
    sample = FIDStats(np.zeros(2), np.eye(2), 5000, prov)
    with pytest.raises(StatsError, match=key):
        fid_from_stats(sample, ref)
    assert isinstance(StatsError("x"), HamganError)
    # informational keys (e.g. where the reference came from) may differ
    assert fid_from_stats(sample, FIDStats(np.zeros(2), np.eye(2), 5000, dict(prov, source="elsewhere"))) == 0


def test_statistics_without_provenance_are_refused(tmp_path):
    """pytorch-fid's own .npz files (mu, sigma only) say nothing about how they were made."""
    path = tmp_path / "pfid.npz"
    np.savez(path, mu=np.zeros(4), sigma=np.eye(4))
    with pytest.raises(StatsError, match="recompute"):
        FIDStats.load(path)
    with pytest.raises(StatsError, match="does not exist"):
        FIDStats.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StatsError, match="damaged"):
        FIDStats.load(tmp_path / "junk.npz")


def test_few_samples_warn():
    prov = {"backbone": "b", "weights": "w", "resize": "r", "image_size": 32, "dims": 2}
    small = FIDStats(np.zeros(2), np.eye(2), 100, prov)
    with pytest.warns(UserWarning, match="2048"):
        assert fid_from_stats(small, small) == pytest.approx(0, abs=1e-12)
