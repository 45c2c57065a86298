"""FID: streaming float64 feature statistics, statistics files, and the Frechet distance.

The distance is computed in float64 by the symmetric route
    tr sqrt(S1 S2) = tr sqrt(F^T S2 F),  S1 = F F^T  (F = S1^1/2, or a pivoted Cholesky factor)
with a symmetric eigenvalue solver: exact for PSD matrices (singular ones included), far faster
than scipy.linalg.sqrtm on 2048x2048, and immune to the sqrtm signature change that breaks
pytorch-fid 0.3.0 on new SciPy.

A statistics file (.npz, no pickles) holds ``mu`` (D,), ``sigma`` (D, D) float64 (the keys
pytorch-fid reads, so pytorch-fid can use hamgan's files), ``count``, the provenance
(backbone, weights digest, resize, image size, dims) that must match an evaluation's, and
optionally ``features`` (M, D) float32: a uniform random sample of the reference features
for KID and precision/recall, with their class ``labels`` (M,) int64 when the images had
labels (indices into the provenance's ``class_names``) for intra-class FID/KID.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.linalg.lapack
import torch

from ..atomic import atomic_write
from ..errors import HamganError

FORMAT = "hamgan-fid-stats"
VERSION = 1
# provenance keys that must agree between reference statistics and an evaluation
CHECKED = ("backbone", "weights", "resize", "image_size", "dims")
MIN_SAMPLES = 2048  # fewer samples than dimensions: singular covariance, FID biased upwards


class StatsError(HamganError):
    """A statistics file that is missing, damaged, or produced differently from the evaluation."""


class FeatureStats:
    """Streaming mean and covariance of features in float64: sums over batches, so partial
    statistics from several processes combine by adding them (`all_reduce`). Raw sums in
    float64 keep ~1e-12 relative accuracy for pool3 features (mean and spread of one order)."""

    def __init__(self, dim: int, device="cpu"):
        self.dim = dim
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, feats: torch.Tensor) -> None:
        """feats: (B, dim), any float dtype; accumulated in float64 on this object's device."""
        x = feats.detach().to(self.sum.device, torch.float64)
        self.sum += x.sum(0)
        self.outer.addmm_(x.t(), x)  # in place: no (dim, dim) temporary per batch
        self.count += x.shape[0]

    def all_reduce(self) -> None:
        """Sum the statistics of every torch.distributed process (in place, on all of them)."""
        import torch.distributed as dist
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=self.sum.device)
        for t in (self.sum, self.outer, count):
            dist.all_reduce(t)
        self.count = int(round(count.item()))

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """mu (dim,), sigma (dim, dim): the unbiased (n - 1) covariance, as numpy.cov gives."""
        if self.count < 2:
            raise ValueError(f"statistics need at least 2 samples, got {self.count}")
        n = self.count
        mu = self.sum / n
        cov = (self.outer - n * torch.outer(mu, mu)) / (n - 1)
        cov = (cov + cov.t()) / 2  # exactly symmetric despite rounding
        return mu.cpu().numpy(), cov.cpu().numpy()


@dataclasses.dataclass
class FIDStats:
    """Reference or sample statistics: mu (D,), sigma (D, D) float64, count, provenance, and an
    optional (M, D) float32 feature sample for KID / precision-recall with its (M,) int64 class
    labels."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    provenance: dict
    features: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None

    @classmethod
    def from_stream(cls, stats: FeatureStats, provenance: dict, features=None, labels=None) -> "FIDStats":
        mu, sigma = stats.mean_cov()
        if features is None or len(features) == 0:
            features = labels = None
        return cls(mu, sigma, stats.count, dict(provenance),
                   None if features is None else np.asarray(_numpy(features), np.float32),
                   None if labels is None else np.asarray(_numpy(labels), np.int64))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to `path` (.npz) atomically (`hamgan.atomic`)."""
        path = Path(path)
        arrays = dict(mu=self.mu.astype(np.float64), sigma=self.sigma.astype(np.float64),
                      count=np.int64(self.count), format=np.str_(FORMAT), version=np.int64(VERSION),
                      provenance=np.str_(json.dumps(self.provenance, sort_keys=True)))
        if self.features is not None:
            arrays["features"] = self.features.astype(np.float32)
        if self.labels is not None:
            arrays["labels"] = self.labels.astype(np.int64)
        with atomic_write(path) as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FIDStats":
        path = Path(path)
        if not path.is_file():
            raise StatsError(f"statistics file {path} does not exist (make one with `hamgan fid-stats`)")
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except Exception as e:
            raise StatsError(f"{path} is damaged or not an .npz file ({type(e).__name__}: {e})") from None
        if "mu" not in data or "sigma" not in data:
            raise StatsError(f"{path} holds no FID statistics (no 'mu'/'sigma' arrays)")
        if str(data.get("format", "")) != FORMAT or "provenance" not in data:
            raise StatsError(f"{path} does not record how its features were produced (backbone, weights, "
                             "image size, resize), so comparing it with hamgan's features could give a "
                             "meaningless FID; recompute it with `hamgan fid-stats`")
        if int(data["version"]) > VERSION:
            raise StatsError(f"{path} was written by a newer hamgan (stats version {int(data['version'])})")
        return cls(mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64),
                   count=int(data["count"]), provenance=json.loads(str(data["provenance"])),
                   features=data.get("features"), labels=data.get("labels"))

    def check_compatible(self, provenance: dict, what: str = "reference statistics") -> None:
        """Raise StatsError if these statistics were produced differently from `provenance`."""
        diffs = [f"{k}: {self.provenance.get(k)!r} here vs {provenance.get(k)!r} in this evaluation"
                 for k in CHECKED if self.provenance.get(k) != provenance.get(k)]
        if diffs:
            raise StatsError(f"{what} were produced differently from this evaluation, so FID would be "
                             f"meaningless ({'; '.join(diffs)}); recompute them with `hamgan fid-stats` "
                             "with the same Inception weights and image size")


def _numpy(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


def _psd_factor(s: np.ndarray, method: str) -> np.ndarray:
    """F (D, r) with F F^T = S, for symmetric PSD S (D, D).

    'auto': pivoted Cholesky (LAPACK pstrf), which stops at the numerical rank r: O(D^2 r), and
    exact for the singular covariances of fewer samples than dimensions. 'eigh': V W^1/2 from a
    full eigendecomposition (the textbook symmetric square root; several times slower)."""
    if method == "auto":
        c, piv, rank, info = scipy.linalg.lapack.dpstrf(s, lower=1)
        if info < 0:
            raise ValueError(f"pivoted Cholesky failed (LAPACK info {info})")
        factor = np.empty((len(s), rank))
        factor[piv - 1] = np.tril(c)[:, :rank]  # P^T S P = L L^T  =>  S = (P L)(P L)^T
        return factor
    if method == "eigh":
        w, v = np.linalg.eigh(s)
        return v * np.sqrt(np.clip(w, 0, None))
    raise ValueError(f"method must be 'auto' or 'eigh', got {method!r}")


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, method: str) -> float:
    """tr sqrt(S1 S2) for symmetric PSD S1, S2 (D, D) float64.

    For any F with S1 = F F^T, F^T S2 F is symmetric PSD with the nonzero eigenvalues of S2 S1,
    so the trace is the sum of square roots of its eigenvalues (eigvalsh: no eigenvectors)."""
    factor = _psd_factor(s1, method)
    middle = factor.T @ s2 @ factor
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())  # clip: rounding makes ~0 eigenvalues < 0


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "auto") -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) in float64, by the symmetric route.

    mu: (D,), sigma: (D, D) symmetric PSD. `method`: how S1 is factored, 'auto' (pivoted
    Cholesky) or 'eigh' (the symmetric square root); both are exact, see `_psd_factor`."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"shapes do not match: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2, method))


def fid_from_stats(sample: FIDStats, reference: FIDStats) -> float:
    """FID of `sample` against `reference`, refusing statistics made differently; warns when
    either side has fewer than 2048 samples (rank-deficient covariance, biased FID)."""
    reference.check_compatible(sample.provenance)
    small = min(sample.count, reference.count)
    if small < MIN_SAMPLES:
        warnings.warn(f"FID from {small} samples (< {MIN_SAMPLES}): the covariance is rank-deficient and "
                      "the value is biased upwards; compare only FIDs computed with equal sample counts",
                      stacklevel=2)
    return frechet_distance(sample.mu, sample.sigma, reference.mu, reference.sigma)
