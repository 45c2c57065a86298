"""Conditional accuracy and intra-class metrics: real images of the right class score the
classifiers' ceiling, shuffled labels score chance, per-class numbers add up, the shape
classifier is blind to colour (a blob of the right colour scores chance), cached classifiers
are keyed by their data, Inception's head is mapped to the data's classes, and intra-class
FID/KID see what accuracy cannot (one look per class)."""
import numpy as np
import pytest
import torch

from hamgan.data.shapes import COLOURS, KINDS, ShapesDataset, render
from hamgan.errors import HamganError
from hamgan.metrics import classifier as C
from hamgan.metrics.conditional import (ClassAccuracy, ConditionalMetrics, InceptionHead, imagenet_classes,
                                        intra_class_metrics)
from hamgan.metrics.fid import FIDStats

RES, N_CLASSES = 32, 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Classifiers of a 2,000-image shapes set, trained by a shortened recipe (~15 CPU-seconds)."""
    cache = tmp_path_factory.mktemp("classifiers")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("MAX_TRAIN", 1500), ("MAX_HELD_OUT", 300), ("STEPS", 150)):
            mp.setattr(C, name, value)
        data = ShapesDataset(RES, N_CLASSES, size=2000, seed=0)
        classifiers = C.get_classifiers(data, cache, progress=False)
        yield data, classifiers, cache


def real_images(n=400, seed=5):
    """Real images the classifiers never saw: (uint8 (n, 3, R, R), labels (n,))."""
    data = ShapesDataset(RES, N_CLASSES, size=n, seed=seed)
    return torch.stack([data[i][0] for i in range(n)]), torch.tensor([data.label(i) for i in range(n)])


def blobs(classes, seed=0):
    """For each class, a soft ellipse in the class's colour on a dark graded background: the
    right colour, no shape. Drawn here independently of hamgan's renderer."""
    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    t = np.arange(RES) + 0.5
    yy, xx = np.meshgrid(t, t, indexing="ij")
    out = []
    for c in classes.tolist():
        cy, cx = rng.uniform(11, 21, 2)
        ry, rx = rng.uniform(5, 9, 2)
        alpha = np.clip(1.5 - ((yy - cy) / ry) ** 2 - ((xx - cx) / rx) ** 2, 0, 1)[..., None]
        background = rng.uniform(0, 60, 3) + (yy[..., None] / RES) * rng.uniform(-20, 20, 3)
        colour = np.asarray(COLOURS[colours[c % len(colours)]]) * rng.uniform(0.8, 1.0)
        out.append(np.clip(background + alpha * (colour - background) + 0.5, 0, 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def measure(classifiers, images, classes):
    metrics = ConditionalMetrics(N_CLASSES, classifiers)
    for lo in range(0, len(images), 128):
        metrics.update(images[lo:lo + 128], classes[lo:lo + 128])
    return metrics.result()


def test_real_images_of_the_right_class_score_the_ceiling(trained):
    _, classifiers, _ = trained
    result = measure(classifiers, *real_images())
    for name in ("class", "shape"):
        ceiling = result[f"acc_{name}_ceiling"]
        assert ceiling >= 0.9, name
        assert result[f"acc_{name}"] >= ceiling - 0.04, name
        assert len(result[f"acc_{name}_per_class"]) == N_CLASSES


def test_shuffled_labels_score_chance(trained):
    _, classifiers, _ = trained
    images, classes = real_images()
    shuffled = classes[torch.randperm(len(classes), generator=torch.Generator().manual_seed(0))]
    result = measure(classifiers, images, shuffled)
    assert result["acc_class"] == pytest.approx(1 / N_CLASSES, abs=0.05)
    # the shape of a random class matches the true one with probability 1/5 (each kind is 2 classes)
    assert result["acc_shape"] == pytest.approx(1 / len(KINDS), abs=0.06)


def test_per_class_numbers_add_up(trained):
    _, classifiers, _ = trained
    images, classes = real_images(n=250)
    classes[:30] = 3  # unequal class sizes
    result = measure(classifiers, images, classes)
    counts = np.bincount(classes.numpy(), minlength=N_CLASSES)
    assert result["class_counts"] == counts.tolist()
    for name in ("class", "shape"):
        per_class = np.array(result[f"acc_{name}_per_class"])
        assert (per_class * counts).sum() / counts.sum() == pytest.approx(result[f"acc_{name}"], abs=1e-12)
    # by hand, for the class classifier
    pred = classifiers.models["class"].predict(images)
    for c in range(N_CLASSES):
        assert result["acc_class_per_class"][c] == pytest.approx((pred[classes == c] == c).float().mean().item())


def test_a_blob_of_the_right_colour_scores_chance_on_shape_only(trained):
    """The failure the shape accuracy exists for: right colour, no shape. The colour-sighted
    class classifier is fooled most of the time; the shape classifier gives every blob the same
    kind of answer whatever its colour, so it scores chance."""
    _, classifiers, _ = trained
    classes = torch.arange(400) % N_CLASSES
    result = measure(classifiers, blobs(classes), classes)
    assert result["acc_shape"] == pytest.approx(1 / len(KINDS), abs=0.08)
    assert result["acc_class"] > 0.3  # colour alone goes a long way


def test_the_shape_classifier_does_not_see_colour(trained):
    """One silhouette painted in each of the 8 colours: the same prediction for (nearly) all."""
    _, classifiers, _ = trained
    shape = classifiers.models["shape"]
    agree = 0
    for i in range(40):
        painted = torch.stack([torch.from_numpy(render(KINDS[i % 5], rgb, RES, np.random.default_rng([9, i])))
                               .permute(2, 0, 1) for rgb in COLOURS.values()])
        pred = shape.predict(painted)
        agree += int((pred == pred[0]).all())
    assert agree >= 38


def test_cached_classifiers_are_keyed_by_their_data(trained, monkeypatch):
    data, classifiers, cache = trained
    key = C.cache_key(data, 0)
    path = C.cache_path(cache, key)
    assert path.is_file() and path.parent == cache
    # the same data again: read back, not retrained, same predictions
    monkeypatch.setattr(C, "train_classifiers", lambda *a, **k: pytest.fail("retrained"))
    for name, value in (("MAX_TRAIN", 1500), ("MAX_HELD_OUT", 300), ("STEPS", 150)):
        monkeypatch.setattr(C, name, value)
    again = C.get_classifiers(ShapesDataset(RES, N_CLASSES, size=2000, seed=0), cache, progress=False)
    images, _ = real_images(n=50)
    assert torch.equal(again.models["shape"].predict(images), classifiers.models["shape"].predict(images))
    assert again.ceilings == classifiers.ceilings
    # other data (another seed's images) has another key, and the file made for this data is refused for it
    other = C.cache_key(ShapesDataset(RES, N_CLASSES, size=2000, seed=1), 0)
    assert other != key and C.cache_path(cache, other) != path
    with pytest.raises(C.ClassifierCacheError, match="other data"):
        C.Classifiers.load(path, other)
    # so is a file of the wrong kind
    bad = cache / "bad.pt"
    bad.write_bytes(b"not a classifier")
    with pytest.raises(C.ClassifierCacheError, match="damaged"):
        C.Classifiers.load(bad)


def test_fingerprint_sees_pixels_labels_and_classes():
    base = ShapesDataset(16, 4, size=100, seed=0)
    fp = C.data_fingerprint(base)
    assert fp == C.data_fingerprint(ShapesDataset(16, 4, size=100, seed=0))
    assert fp["digest"] != C.data_fingerprint(ShapesDataset(16, 4, size=100, seed=1))["digest"]  # pixels
    assert fp != C.data_fingerprint(ShapesDataset(16, 5, size=100, seed=0))                    # classes
    assert fp != C.data_fingerprint(ShapesDataset(16, 4, size=101, seed=0))                    # size


def test_class_accuracy_counts():
    acc = ClassAccuracy(3)
    acc.update(torch.tensor([True, False, True, True]), torch.tensor([0, 0, 2, 2]))
    overall, per_class = acc.result()
    assert overall == 0.75 and per_class == [0.5, None, 1.0]


def test_inception_head_recovers_the_label_map():
    """Features whose top-1 column follows a hidden permutation 78% of the time: the fitted
    head finds the permutation and reads logits through it."""
    rng = np.random.default_rng(0)
    n_classes, dims, logits_n = 20, 32, 26
    columns = rng.permutation(logits_n)[:n_classes]
    fc = torch.from_numpy(rng.normal(size=(logits_n, dims))).float()
    # features: least squares for a one-hot logit at the class column (or, 22% of the time, elsewhere)
    labels = np.repeat(np.arange(n_classes), 10)
    target_col = np.where(rng.random(len(labels)) < 0.78, columns[labels], rng.integers(logits_n, size=len(labels)))
    wanted = np.full((len(labels), logits_n), -1.0)
    wanted[np.arange(len(labels)), target_col] = 5.0
    feats = np.linalg.lstsq(fc.numpy(), wanted.T, rcond=None)[0].T.astype(np.float32)
    ref = FIDStats(np.zeros(dims), np.eye(dims), len(labels), {}, feats, labels)
    head, (ceiling, per_class) = InceptionHead.fit(ref, fc, n_classes)
    assert head.columns.tolist() == columns.tolist()
    logits = torch.from_numpy(feats) @ fc.T
    assert ceiling == pytest.approx((head.predict(logits).numpy() == labels).mean())
    assert 0.7 < ceiling < 0.9 and len(per_class) == n_classes
    assert imagenet_classes(["n01440764", "n15075141"]) and not imagenet_classes(["red circle"])


def labelled(features, labels):
    f = np.asarray(features, np.float32)
    return FIDStats(f.mean(0), np.cov(f, rowvar=False), len(f), {}, f, np.asarray(labels))


def test_intra_class_metrics_see_one_look_per_class():
    """Class 1 comes in two looks (two modes). A sample that draws each class as the real data
    does scores near zero; one that draws class 1 in a single look has the same classes in the
    same numbers, so accuracy cannot tell, but its intra-class FID/KID for class 1 rise."""
    rng = np.random.default_rng(0)
    d, n = 8, 200

    def draw(c, k, looks=(0.2, 1.0)):  # non-negative and small, like pool3 features
        centres = [0.5] if c == 0 else looks
        return np.abs(rng.choice(centres, k)[:, None] + rng.normal(0, 0.1, (k, d)))
    labels = np.repeat([0, 1], n)
    ref = labelled(np.concatenate([draw(0, n), draw(1, n)]), labels)
    good = labelled(np.concatenate([draw(0, n), draw(1, n)]), labels)
    one_look = labelled(np.concatenate([draw(0, n), draw(1, n, looks=(1.0,))]), labels)
    notes = []
    g, c = intra_class_metrics(good, ref, 2, notes), intra_class_metrics(one_look, ref, 2, notes)
    assert c["intra_fid_per_class"][1] > 10 * g["intra_fid_per_class"][1]
    assert c["intra_kid_per_class"][1] > 10 * abs(g["intra_kid_per_class"][1])
    assert c["intra_fid_per_class"][0] < 2 * g["intra_fid_per_class"][0] + 0.01  # class 0 is fine in both
    assert c["intra_fid"] == pytest.approx(np.mean(c["intra_fid_per_class"]))
    assert c["intra_kid"] == pytest.approx(np.mean(c["intra_kid_per_class"]))
    # too few samples of a class: skipped with a note
    notes = []
    assert intra_class_metrics(labelled(draw(0, 60), [0] * 59 + [1]), ref, 2, notes) == {}
    assert "only 1 samples" in notes[0]


def test_too_few_classes_is_an_error():
    with pytest.raises(HamganError, match="at least 2 classes"):
        C.train_classifiers(type("One", (), {"class_names": ["a"], "__len__": lambda s: 5})(), progress=False)
