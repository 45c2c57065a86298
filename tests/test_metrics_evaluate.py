"""Generator evaluation: the same numbers as the pipeline written out by hand, the caller's
state left alone, statistics refused before any work, and 2 gloo processes = 1 process.

Uses a tiny fake generator with hamgan's interface (G(z, y), z_dim, n_classes) and, since the
bookkeeping is under test here (the Inception network is in test_metrics_inception.py and the
command-line tests), a cheap stand-in feature extractor: the real one costs ~0.2 s per image on
a CPU."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from hamgan.errors import HamganError
from hamgan.images import to_uint8
from hamgan.metrics.evaluate import chunk_seed, evaluate_generator, sample_latents
from hamgan.metrics.fid import FIDStats, StatsError, frechet_distance
from hamgan.metrics.inception_score import inception_score
from hamgan.metrics.kid import kernel_inception_distance
from hamgan.metrics.precision_recall import precision_recall

RES, Z_DIM, N_CLASSES, DIMS = 16, 8, 3, 64
ARGS = dict(num_samples=5, batch_size=2, seed=3, extras=True, extras_cap=4, progress=False)
CLASS_NAMES = ["a", "b", "c"]
COND_ARGS = dict(num_samples=330, batch_size=64, seed=1, extras=True, progress=False, class_names=CLASS_NAMES)


class FakeGenerator(nn.Module):
    """z (B, 8), y (B,) -> (B, 3, 16, 16) in [-1, 1]; draws fresh noise per forward (as the NMF
    bases do) and records the mode it ran in."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.n_classes = Z_DIM, N_CLASSES
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(Z_DIM, 3 * RES * RES, generator=g))
        self.embed = nn.Parameter(torch.randn(N_CLASSES, 3 * RES * RES, generator=g))
        self.modes = []

    def forward(self, z, y):
        self.modes.append(self.training)
        h = z @ self.weight + self.embed[y] + 0.3 * torch.rand(len(z), 3 * RES * RES)
        return torch.tanh(h).view(-1, 3, RES, RES)


class FakeExtractor(nn.Module):
    """InceptionFeatures' interface: uint8 (B, 3, 16, 16) -> features (B, 64) >= 0, logits (B, 100),
    by fixed random projections of the pixels (64-d: a 2048-d eigh costs seconds on a CPU)."""

    has_classifier, num_logits = True, 100

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3 * RES * RES, DIMS, generator=g) / (3 * RES * RES) ** 0.5)
        self.register_buffer("fc", torch.randn(DIMS, self.num_logits, generator=g))

    def provenance(self, image_size, resize="pytorch_fid"):
        return {"backbone": "fake", "weights": "fake", "resize": "none", "image_size": image_size, "dims": DIMS}

    def forward(self, images, resize="pytorch_fid"):
        pool3 = torch.relu(images.float().flatten(1) / 255 @ self.proj)
        return pool3, pool3 @ self.fc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(extractor, reference statistics path with a feature sample)."""
    root = tmp_path_factory.mktemp("eval")
    extractor = FakeExtractor()
    rng = np.random.default_rng(0)
    feats = rng.gamma(1.0, 0.3, (40, DIMS))  # non-negative, like pool3
    ref = FIDStats(feats.mean(0), np.cov(feats, rowvar=False), 40, extractor.provenance(RES),
                   feats[:10].astype(np.float32))
    return extractor, ref.save(root / "ref.npz")


@pytest.fixture(scope="module")
def single(setup):
    """One single-process evaluation, shared by the tests below (Inception time is precious)."""
    extractor, ref = setup
    G = FakeGenerator().train()
    rng_before = torch.get_rng_state()
    with pytest.warns(UserWarning, match="2048"):
        result = evaluate_generator(G, ref_stats=ref, inception=extractor, **ARGS)
    return G, result, rng_before, torch.get_rng_state()


def test_evaluation_equals_the_pipeline_written_out(setup, single):
    extractor, ref_path = setup
    G, result, rng_before, rng_after = single
    # G ran in eval mode (a 1-image probe + 3 batches) and is back in training mode
    assert G.modes == [False] * 4 and G.training
    assert torch.equal(rng_before, rng_after)  # the caller's RNG stream is untouched
    # by hand: global batch k drawn after seeding with (seed, k), quantised as PNGs
    G.eval()
    images = []
    with torch.no_grad():
        for k, n in enumerate((2, 2, 1)):
            torch.manual_seed(chunk_seed(3, k))
            z, y = sample_latents(n, Z_DIM, N_CLASSES)
            images.append(to_uint8(G(z, y)))
        pool3, logits = extractor(torch.cat(images))
    feats = pool3.double().numpy()
    ref = FIDStats.load(ref_path)
    expected_fid = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref.mu, ref.sigma)
    assert result["num_samples"] == 5
    # (rel 1e-7: 5 samples give a singular covariance, whose ~0 eigenvalues' square roots are noise)
    assert result["fid"] == pytest.approx(expected_fid, rel=1e-7)
    assert (result["is_mean"], result["is_std"]) == pytest.approx(inception_score(logits), rel=1e-9)
    kept = pool3[:4].numpy()  # extras keep the first extras_cap samples
    assert (result["kid_mean"], result["kid_std"]) == pytest.approx(
        kernel_inception_distance(ref.features, kept), rel=1e-6)
    assert (result["precision"], result["recall"]) == precision_recall(ref.features, kept)
    assert any("2048" in note for note in result["notes"])
    json.dumps(result)  # plain numbers, ready for a results file


def conditional_setup(root):
    """(classifiers, reference path) for conditional evaluations: a fixed untrained class
    classifier (its predictions are arbitrary but deterministic) and labelled reference
    features, 100 per class, of the same class names."""
    from hamgan.metrics.classifier import Classifiers, ImageClassifier
    torch.manual_seed(0)
    model = ImageClassifier("colour", N_CLASSES, RES, list(range(N_CLASSES))).eval()
    classifiers = Classifiers({"data": {"class_names": CLASS_NAMES}}, {"class": model}, {"class": (0.9, [0.8, 0.9, 1.0])})
    rng = np.random.default_rng(1)
    feats = rng.gamma(1.0, 0.3, (300, DIMS)).astype(np.float32)
    ref = FIDStats(feats.mean(0), np.cov(feats, rowvar=False), 300, {**FakeExtractor().provenance(RES),
                   "class_names": CLASS_NAMES}, feats, np.repeat(np.arange(N_CLASSES), 100))
    return classifiers, ref.save(root / "labelled.npz")


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    classifiers, ref = conditional_setup(tmp_path_factory.mktemp("conditional"))
    with pytest.warns(UserWarning, match="2048"):
        result = evaluate_generator(FakeGenerator(), ref_stats=ref, inception=FakeExtractor(),
                                    classifiers=classifiers, **COND_ARGS)
    return classifiers, ref, result


def test_conditional_metrics_equal_the_pipeline_written_out(conditional):
    from hamgan.metrics.conditional import intra_class_metrics
    classifiers, ref_path, result = conditional
    G, extractor = FakeGenerator().eval(), FakeExtractor()
    images, labels = [], []
    with torch.no_grad():
        for k in range(math.ceil(330 / 64)):
            torch.manual_seed(chunk_seed(1, k))
            z, y = sample_latents(min(64, 330 - 64 * k), Z_DIM, N_CLASSES)
            images.append(to_uint8(G(z, y)))
            labels.append(y)
    images, labels = torch.cat(images), torch.cat(labels)
    hit = classifiers.models["class"].predict(images) == labels
    assert result["class_counts"] == torch.bincount(labels, minlength=N_CLASSES).tolist()
    assert result["acc_class"] == pytest.approx(hit.double().mean().item())
    assert result["acc_class_per_class"] == pytest.approx([hit[labels == c].double().mean().item() for c in range(3)])
    assert (result["acc_class_ceiling"], result["acc_class_ceiling_per_class"]) == classifiers.ceilings["class"]
    pool3, _ = extractor(images)
    f = pool3.numpy()
    sample = FIDStats(f.mean(0), np.cov(f, rowvar=False), len(f), {}, f, labels.numpy())
    expected = intra_class_metrics(sample, FIDStats.load(ref_path), N_CLASSES, [])
    assert result["intra_fid"] == pytest.approx(expected["intra_fid"], rel=1e-6)
    assert result["intra_kid"] == pytest.approx(expected["intra_kid"], rel=1e-5)
    assert "acc_inception" not in result  # not ImageNet classes
    json.dumps(result)


def test_accuracy_alone_needs_no_inception(conditional):
    """inception=False: the same conditional accuracies, no Inception features at all."""
    classifiers, ref_path, result = conditional
    alone = evaluate_generator(FakeGenerator(), inception=False, classifiers=classifiers,
                               **{**COND_ARGS, "extras": False})
    assert alone["fid"] is None and "is_mean" not in alone and alone["num_samples"] == 330
    for key in ("acc_class", "acc_class_per_class", "class_counts"):
        assert alone[key] == result[key], key
    with pytest.raises(HamganError, match="needs Inception features"):
        evaluate_generator(FakeGenerator(), inception=False, ref_stats=ref_path, **COND_ARGS)


def test_mismatched_reference_is_refused_before_generating(setup, tmp_path):
    extractor, ref_path = setup
    ref = FIDStats.load(ref_path)
    ref.provenance["image_size"] = 128  # made from 128 px images; G makes 16 px ones
    G = FakeGenerator()
    with pytest.raises(StatsError, match="image_size"):
        evaluate_generator(G, num_samples=4, batch_size=2, ref_stats=ref, inception=extractor, progress=False)
    assert len(G.modes) == 1  # only the probe ran
    with pytest.raises(HamganError, match="at least 2"):
        evaluate_generator(G, num_samples=1, batch_size=2, inception=extractor, progress=False)


def test_latents():
    torch.manual_seed(0)
    z, y = sample_latents(2000, 4, 10, truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # truncated, not scaled to nothing
    assert set(y.tolist()) == set(range(10))
    z, y = sample_latents(3, 4, 0)
    assert y is None and z.shape == (3, 4)
    with pytest.raises(HamganError):
        sample_latents(3, 4, 10, truncation=0.0)
    assert chunk_seed(0, 1) != chunk_seed(1, 0) and chunk_seed(5, 7) == chunk_seed(5, 7)


def _ddp_worker(rank, init_file, ref, out_dir):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        result = evaluate_generator(FakeGenerator(), ref_stats=ref, inception=FakeExtractor(), **ARGS)
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
        classifiers, labelled = conditional_setup(out_dir / f"r{rank}")
        result = evaluate_generator(FakeGenerator(), ref_stats=labelled, inception=FakeExtractor(),
                                    classifiers=classifiers, **COND_ARGS)
        (out_dir / f"conditional{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(setup, single, conditional, tmp_path):
    import warnings

    import torch.multiprocessing as mp
    _, ref = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.spawn(_ddp_worker, args=(tmp_path / "init", ref, tmp_path), nprocs=2)
    expected = single[1]
    for rank in (0, 1):  # every rank gets rank 0's result
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == expected.keys() and got["num_samples"] == 5
        for key in ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall"):
            assert got[key] == pytest.approx(expected[key], rel=1e-7, abs=1e-12), key
        got, expected_cond = json.loads((tmp_path / f"conditional{rank}.json").read_text()), conditional[2]
        assert got.keys() == expected_cond.keys()
        for key in ("class_counts", "acc_class", "acc_class_per_class", "intra_fid_per_class", "intra_kid_per_class"):
            assert got[key] == pytest.approx(expected_cond[key], rel=1e-6), key
