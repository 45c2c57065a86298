"""Inception Score, KID and precision/recall on features whose answers are known."""
import numpy as np
import pytest
import torch

from hamgan.metrics.inception_score import ISAccumulator, inception_score
from hamgan.metrics.kid import kernel_inception_distance
from hamgan.metrics.precision_recall import knn_radii, precision_recall


def reference_is(logits, splits):
    """The original IS code's formula (float64 numpy), split by split."""
    p = torch.softmax(logits.double(), 1).numpy()
    scores = []
    n = len(p)
    for s in range(splits):
        part = p[s * n // splits:(s + 1) * n // splits]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return np.mean(scores), np.std(scores)


def test_is_of_uniform_predictions_is_one():
    mean, std = inception_score(torch.zeros(50, 1008))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_classes", [1, 5, 37])
def test_is_of_n_equally_used_one_hot_classes_is_n(n_classes):
    labels = torch.arange(10 * n_classes) % n_classes  # every split sees each class once
    logits = torch.full((len(labels), 1008), -1e4)
    logits[torch.arange(len(labels)), labels] = 1e4
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(n_classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)


def test_is_matches_original_formula_and_is_order_free():
    torch.manual_seed(0)
    logits = torch.randn(103, 1008) * 3  # 103: splits of unequal size
    expected = reference_is(logits, 10)
    assert inception_score(logits, 10) == pytest.approx(expected, rel=1e-10)
    # streamed in shuffled batches (as from several processes): the same
    acc = ISAccumulator(103, 10)
    order = torch.randperm(103)
    for chunk in order.split(17):
        acc.update(logits[chunk], chunk)
    assert acc.result() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(IndexError):
        acc.update(logits[:1], torch.tensor([103]))


def test_kid_zero_for_one_distribution_positive_for_two():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    same, _ = kernel_inception_distance(a, b, num_subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(a, b + 1.0, num_subsets=20, subset_size=200)
    assert abs(same) < 0.02 and shifted > 0.2


def test_kid_equals_unbiased_mmd_written_out():
    """With subsets as large as the sets, KID is the unbiased MMD^2 of the whole sets
    (a permutation does not change it), here written with explicit sums."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((12, 4)) + 0.3
    k = lambda a, b: (a @ b / 4 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = kernel_inception_distance(x, y, num_subsets=3, subset_size=100)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std == pytest.approx(0, abs=1e-12)


def test_knn_radii_by_hand():
    pts = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # neighbours of 0: 1, 3, 7 -> 1st 1, 2nd 3; of 7: 3, 1, 0 -> 1st 4, 2nd 6
    assert knn_radii(pts, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(pts, k=2, block=3).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_precision_recall_known_cases():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 8)).astype(np.float32)
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    # mode collapse: fakes all near one real point are realistic (precision 1) but cover little (recall low)
    collapsed = real[:1] + 0.01 * rng.standard_normal((200, 8)).astype(np.float32)
    precision, recall = precision_recall(real, collapsed, block=64)
    assert precision == 1.0 and recall < 0.05
    # 1-D by hand, k = 1: real radii [1, 1, 2, 4] around 0, 1, 3, 7; fakes 0.5 (in), 5 (in: |5-7| <= 4), 20 (out)
    r, f = np.array([[0.0], [1.0], [3.0], [7.0]]), np.array([[0.5], [5.0], [20.0]])
    # fake radii, k = 1: 0.5 -> 4.5, 5 -> 4.5, 20 -> 15; real points all within 4.5 of 0.5 or 5
    assert precision_recall(r, f, k=1) == (pytest.approx(2 / 3), 1.0)
