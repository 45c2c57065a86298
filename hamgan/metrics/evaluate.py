"""Evaluation of a generator or of a set of images: FID, IS and, as extras, KID and
precision/recall (k = 3). Shared by in-training evaluation, `hamgan eval` and `hamgan fid-stats`.

Everything is streamed: per batch, images -> Inception (pool3 (B, 2048), logits (B, 1008)) ->
float64 sums (mean/covariance, IS per split). Only the features KID and precision/recall need
are kept: at most `extras_cap` (10,000) x 2048 float32 per side, ~80 MB.

Generated samples are a function of (seed, batch index) alone: global batch k (samples
k*B .. k*B+B-1) is drawn after seeding with (seed, k), whichever process draws it. Under
torch.distributed, process r draws batches r, r+W, r+2W, ..., the sums are all-reduced, and
the result is the same as in one process with the same batch size.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Optional

import numpy as np
import torch

from .. import distributed as ddp
from ..errors import HamganError
from ..images import to_uint8
from ..layers import eval_mode
from ..rng import private_rng
from .fid import MIN_SAMPLES, FeatureStats, FIDStats, fid_from_stats
from .inception import FEATURE_DIM, NUM_LOGITS, InceptionFeatures, get_extractor
from .inception_score import ISAccumulator

SPLITS = 10
EXTRAS_CAP = 10_000  # features kept per side for KID / precision-recall
PR_K = 3


class Accumulator:
    """The streamed state of one evaluation of `num_samples` images with indices 0..n-1:
    feature statistics, IS sums, and the features of the indices in `keep` (sorted, long)."""

    def __init__(self, num_samples: int, device="cpu", splits: int = SPLITS,
                 keep: Optional[torch.Tensor] = None, dims: int = FEATURE_DIM, num_logits: int = NUM_LOGITS):
        self.num_samples = num_samples
        self.stats = FeatureStats(dims, device)
        self.inception_score = ISAccumulator(num_samples, splits, num_logits, device)
        self.keep = None if keep is None or len(keep) == 0 else keep.to(device)
        self.kept = (torch.zeros(len(self.keep), dims, device=device)
                     if self.keep is not None else None)

    @classmethod
    def for_extractor(cls, extractor, provenance: dict, num_samples: int, device, splits: int,
                      keep: Optional[torch.Tensor]) -> "Accumulator":
        return cls(num_samples, device, splits, keep, dims=provenance["dims"],
                   num_logits=getattr(extractor, "num_logits", NUM_LOGITS))

    def update(self, pool3: torch.Tensor, logits: torch.Tensor, index: torch.Tensor) -> None:
        """pool3 (B, 2048), logits (B, 1008), index (B,) positions of these images."""
        index = index.to(self.stats.sum.device)
        self.stats.update(pool3)
        self.inception_score.update(logits, index)
        if self.keep is not None:
            slot = torch.searchsorted(self.keep, index).clamp_(max=len(self.keep) - 1)
            hit = self.keep[slot] == index
            self.kept[slot[hit]] = pool3[hit].to(self.kept)

    def all_reduce(self) -> None:
        """Sum over processes; every index is seen by exactly one, so kept rows add up."""
        import torch.distributed as dist
        self.stats.all_reduce()
        self.inception_score.all_reduce()
        if self.kept is not None:
            dist.all_reduce(self.kept)

    def summarize(self, provenance: dict, reference: Optional[FIDStats], extras: bool,
                  has_classifier: bool = True) -> tuple[FIDStats, dict]:
        """(statistics of these images, {fid, is_mean, is_std, [kid_mean, kid_std, precision,
        recall], num_samples, notes})."""
        if self.stats.count != self.num_samples:
            raise RuntimeError(f"saw {self.stats.count} images, expected {self.num_samples}")
        sample = FIDStats.from_stream(self.stats, provenance, self.kept)
        is_mean, is_std = self.inception_score.result()
        out = {"fid": None, "is_mean": is_mean, "is_std": is_std, "num_samples": self.stats.count}
        notes = []
        if not has_classifier:
            notes.append("IS is 1 by construction: these Inception weights have no classifier "
                         "(fc layer all zeros, e.g. the offline conversion); FID/KID are unaffected")
        if reference is not None:
            small = min(sample.count, reference.count)
            if small < MIN_SAMPLES:
                notes.append(f"FID from {small} samples (< {MIN_SAMPLES}): rank-deficient covariance, "
                             "biased upwards; compare only FIDs made with equal sample counts")
            out["fid"] = fid_from_stats(sample, reference)   # checks compatibility, warns when small
        if extras:
            out.update(extra_metrics(sample, reference, notes, device=self.stats.sum.device))
        out["notes"] = notes
        return sample, out


def extra_metrics(sample: FIDStats, reference: Optional[FIDStats], notes: list, device="cpu") -> dict:
    """KID and precision/recall from the kept feature samples (None where one side has none)."""
    from .kid import kernel_inception_distance
    from .precision_recall import precision_recall

    out = dict(kid_mean=None, kid_std=None, precision=None, recall=None)
    if reference is None or reference.features is None or sample.features is None:
        notes.append("KID and precision/recall need reference statistics with a feature sample "
                     "(`hamgan fid-stats --keep-features N`, N > 0)")
        return out
    if min(len(sample.features), len(reference.features)) <= PR_K:
        notes.append(f"KID and precision/recall need more than {PR_K} samples on each side")
        return out
    out["kid_mean"], out["kid_std"] = kernel_inception_distance(reference.features, sample.features,
                                                                device=device)
    out["precision"], out["recall"] = precision_recall(reference.features, sample.features, k=PR_K,
                                                       device=device)
    return out


# --------------------------------------------------------------------------- helpers


def _extractor(inception, device) -> InceptionFeatures:
    """The feature extractor: the module given (an InceptionFeatures, or a stand-in with its
    call signature, `provenance(image_size)` (whose 'dims' sizes the features), `has_classifier`
    and optionally `num_logits`), else InceptionFeatures from a weights path or from the usual
    resolution (None)."""
    if isinstance(inception, torch.nn.Module):
        return inception.to(device)
    return get_extractor(device, inception)


def _provenance(extractor, image: torch.Tensor, reference: Optional[FIDStats]) -> dict:
    """What the statistics of images like `image` (..., H, W) will be made with; checked against
    the reference statistics before any long run."""
    provenance = extractor.provenance(image.shape[-1])
    if image.shape[-1] != image.shape[-2]:
        provenance["image_size"] = f"{image.shape[-2]}x{image.shape[-1]}"
    if reference is not None:
        reference.check_compatible(provenance)
    return provenance


def _reference(ref_stats) -> Optional[FIDStats]:
    if ref_stats is None or isinstance(ref_stats, FIDStats):
        return ref_stats
    return FIDStats.load(ref_stats)


class _Clock:
    """Adds wall time per phase into `timings` (synchronising CUDA first); a no-op without it."""

    def __init__(self, timings: Optional[dict], device):
        self.timings = timings
        self.cuda = torch.device(device).type == "cuda"

    @contextlib.contextmanager
    def __call__(self, phase: str):
        if self.timings is None:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, disable=not enabled)


def _broadcast_result(result, error: Optional[str]):
    """Rank 0's result (or its error) to every process; raises there too if rank 0 failed."""
    result, error = ddp.broadcast_object((result, error))
    if error is not None:
        raise HamganError(error)
    return result


# --------------------------------------------------------------------------- generators


def chunk_seed(seed: int, chunk: int) -> int:
    """The RNG seed of global batch `chunk` of an evaluation seeded with `seed`."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, np.uint64)[0] & (2**63 - 1))


def sample_latents(n: int, z_dim: int, n_classes: int, truncation: Optional[float] = None
                   ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """z (n, z_dim) ~ N(0, I), or with `truncation` T a normal truncated to [-T, T] (the
    distribution of BigGAN's truncation trick, which redraws values beyond T); y (n,) uniform
    over classes (None if unconditional). Drawn on the CPU from the global RNG, so the same on
    every device."""
    if truncation is None:
        z = torch.randn(n, z_dim)
    else:
        if truncation <= 0:
            raise HamganError(f"truncation must be > 0, got {truncation}")
        z = torch.nn.init.trunc_normal_(torch.empty(n, z_dim), 0.0, 1.0, -truncation, truncation)
    y = torch.randint(n_classes, (n,)) if n_classes > 0 else None
    return z, y


def evaluate_generator(G: torch.nn.Module, *, num_samples: int, batch_size: int, ref_stats=None,
                       device="cpu", n_classes: Optional[int] = None, truncation: Optional[float] = None,
                       seed: int = 0, extras: bool = False, progress: bool = True, inception=None,
                       splits: int = SPLITS, extras_cap: int = EXTRAS_CAP,
                       timings: Optional[dict] = None) -> Optional[dict]:
    """FID / IS (and with `extras` KID, precision, recall) of `num_samples` generated images.

    G(z (B, z_dim), y (B,) or None) -> (B, 3, R, R) in [-1, 1]; run in eval mode (its mode is
    restored after). Images are quantised with `images.to_uint8` exactly as saved PNGs.
    `ref_stats`: a statistics file, a loaded FIDStats, or None (no FID). `inception`: an
    InceptionFeatures (or a stand-in module, see `_extractor`), a weights path, or None.
    `batch_size` is per process. `timings`: a dict that receives seconds spent in 'generate',
    'inception', 'statistics' (per batch) and 'summary' (once: reduction, distances). Returns {fid (None without reference), is_mean, is_std,
    num_samples, notes} plus, with `extras`, kid_mean, kid_std, precision, recall.

    Under torch.distributed every process must call this; all get rank 0's result dict."""
    if num_samples < 2:
        raise HamganError(f"an evaluation needs at least 2 samples, got {num_samples}")
    if seed < 0:
        raise HamganError(f"the evaluation seed must be >= 0, got {seed}")
    rank, world = ddp.rank(), ddp.world_size()
    net = getattr(G, "module", G)  # DDP-wrapped or not
    z_dim = net.z_dim
    n_classes = net.n_classes if n_classes is None else n_classes
    extractor = _extractor(inception, device)
    reference = _reference(ref_stats)
    keep = torch.arange(min(extras_cap, num_samples)) if extras else None
    clock = _Clock(timings, device)
    mine = range(rank, math.ceil(num_samples / batch_size), world)
    mine_total = sum(min(batch_size, num_samples - k * batch_size) for k in mine)

    with eval_mode(G), torch.no_grad(), private_rng():
        # one sample first: its size completes the provenance, checked before the long run
        torch.manual_seed(chunk_seed(seed, 0))
        z, y = sample_latents(1, z_dim, n_classes, truncation)
        probe = G(z.to(device), None if y is None else y.to(device))
        provenance = _provenance(extractor, probe, reference)
        acc = Accumulator.for_extractor(extractor, provenance, num_samples, device, splits, keep)
        with _progress(mine_total, "eval", progress and rank == 0) as bar:
            for k in mine:
                lo, hi = k * batch_size, min(num_samples, (k + 1) * batch_size)
                with clock("generate"):
                    torch.manual_seed(chunk_seed(seed, k))
                    z, y = sample_latents(hi - lo, z_dim, n_classes, truncation)
                    images = to_uint8(G(z.to(device), None if y is None else y.to(device)))
                with clock("inception"):
                    pool3, logits = extractor(images)
                with clock("statistics"):
                    acc.update(pool3, logits, torch.arange(lo, hi))
                bar.update(hi - lo)

    with clock("summary"):  # once per evaluation: reduction, FID, IS, extras
        if world > 1:
            acc.all_reduce()
        result, error = None, None
        if rank == 0:
            try:
                _, result = acc.summarize(provenance, reference, extras, extractor.has_classifier)
            except Exception as e:  # other processes would wait for the broadcast forever
                if world == 1:
                    raise
                error = f"evaluation failed on rank 0: {type(e).__name__}: {e}"
        return _broadcast_result(result, error)


# --------------------------------------------------------------------------- image sets


def _collate(batch):
    """Stack (uint8 (3, H, W), label, position) items; images of different sizes are an error."""
    sizes = {tuple(img.shape) for img, _, _ in batch}
    if len(sizes) > 1:
        raise HamganError(f"images of different sizes in one batch ({sorted(sizes)[:3]}); statistics need "
                          "images of one size: pass --resolution to crop and resize them")
    return torch.stack([img for img, _, _ in batch]), torch.tensor([pos for _, _, pos in batch])


class _Positions(torch.utils.data.Dataset):
    """dataset[indices[j]] as (image, label, j)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        img, label = self.dataset[int(self.indices[j])]
        return img, label, j


def evaluate_images(dataset, *, batch_size: int = 100, num: Optional[int] = None, ref_stats=None,
                    extras: bool = False, keep_features: int = EXTRAS_CAP, device="cpu", inception=None,
                    workers: int = 0, seed: int = 0, splits: int = SPLITS, progress: bool = True,
                    desc: str = "images", timings: Optional[dict] = None) -> tuple[FIDStats, dict]:
    """Statistics (and FID / IS / extras against `ref_stats`) of a dataset of (uint8 (3, H, W),
    label) items, in one process.

    `num`: a uniform random subset of that many images (seeded; sorted stores are ordered by
    class, so a prefix would be biased). `keep_features`: size of the uniform random feature
    sample kept in the returned statistics (for KID / precision-recall; 0: none).
    Returns (FIDStats, result dict as `evaluate_generator`'s)."""
    total = len(dataset)
    if num is not None and num > total:
        raise HamganError(f"asked for {num} images but the source holds only {total}")
    rng = np.random.default_rng(seed)
    indices = np.arange(total) if num is None or num == total else np.sort(rng.choice(total, num, replace=False))
    n = len(indices)
    if n < 2:
        raise HamganError(f"statistics need at least 2 images, got {n}")
    keep = np.sort(rng.choice(n, min(keep_features, n), replace=False)) if keep_features > 0 else None
    extractor = _extractor(inception, device)
    reference = _reference(ref_stats)
    provenance = _provenance(extractor, dataset[int(indices[0])][0], reference)
    acc = Accumulator.for_extractor(extractor, provenance, n, device, splits,
                                    None if keep is None else torch.from_numpy(keep))
    clock = _Clock(timings, device)
    loader = torch.utils.data.DataLoader(_Positions(dataset, indices), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate,
                                         pin_memory=torch.device(device).type == "cuda")
    with _progress(n, desc, progress) as bar:
        it = iter(loader)
        while True:
            with clock("load"):
                batch = next(it, None)
            if batch is None:
                break
            images, positions = batch
            with clock("inception"):
                pool3, logits = extractor(images)
            with clock("statistics"):
                acc.update(pool3, logits, positions)
            bar.update(len(positions))
    return acc.summarize(provenance, reference, extras, extractor.has_classifier)
