"""Statistics reported by name where they arise: the collector, and what the blocks report."""
import math

import torch

from hamgan import stats
from hamgan.attention import SelfAttention
from hamgan.ham import NMF, Hamburger, relative_error


def test_nothing_is_recorded_unless_collecting():
    stats.report("x", torch.tensor(1.0))          # no collector: a no-op
    assert not stats.collecting()
    collector = stats.Collector()
    assert not collector and collector.summary() == ({}, None)


def test_means_over_reports_and_steps_and_the_first_non_finite_step():
    collector = stats.Collector()
    with collector.step(1):
        stats.report("a", torch.tensor([1.0, 3.0]))   # a tensor counts as its mean
        stats.report("a", 4.0)                        # step 1: a = mean(2, 4) = 3
        assert stats.collecting()
    with collector.step(2):
        stats.report("a", 5.0)
        stats.report("b", torch.tensor(7.0))          # b only in step 2
    assert not stats.collecting()
    means, bad = collector.summary()
    assert means == {"a": 4.0, "b": 7.0} and bad is None
    assert not collector                              # a summary starts afresh

    with collector.step(3):
        stats.report("a", 1.0)
    with collector.step(4):
        stats.report("a", math.inf)
        stats.report("b", math.nan)
    with collector.step(5):
        stats.report("b", math.nan)
    means, bad = collector.summary()
    assert bad == (4, ["a", "b"]) and math.isnan(means["b"])


def test_a_reported_tensor_keeps_its_value_at_the_time_of_the_report():
    p = torch.nn.Parameter(torch.tensor(1.0))
    collector = stats.Collector()
    with collector.step(1):
        stats.report("p", p)
        with torch.no_grad():
            p.add_(10.0)                              # e.g. an optimiser step after the forward
    assert collector.summary()[0] == {"p": 1.0}


def test_relative_error_equals_the_reconstruction_it_avoids_forming():
    torch.manual_seed(0)
    x, bases, coef = torch.rand(3, 8, 20), torch.rand(3, 8, 4), torch.rand(3, 20, 4)
    direct = torch.stack([torch.linalg.norm(x[i] - bases[i] @ coef[i].T) / torch.linalg.norm(x[i]) for i in range(3)])
    torch.testing.assert_close(relative_error(x, bases, coef), direct.mean())
    exact = relative_error(bases @ coef.transpose(1, 2), bases, coef)
    assert exact.item() < 1e-3


def test_blocks_report_under_their_names_and_only_while_collecting():
    ham = Hamburger(16, rank=4, steps=3)
    attn = SelfAttention(16)
    stats.name_reporters(ham, "G.context.1.0")
    stats.name_reporters(attn, "D.context.1.0")
    with torch.no_grad():
        ham.sigma.fill_(0.25)
        attn.gamma.fill_(-0.5)
    x = torch.rand(2, 16, 6, 6)
    ham(x), attn(x)                                   # not collecting: nothing kept
    collector = stats.Collector()
    with collector.step(1):
        ham(x)
        attn(x)
    means, _ = collector.summary()
    assert set(means) == {"sigma/G.context.1.0", "recon_error/G.context.1.0.ham", "gamma/D.context.1.0"}
    assert means["sigma/G.context.1.0"] == 0.25 and means["gamma/D.context.1.0"] == -0.5
    # the NMF of this forward: K = 3 steps from random bases leave a clearly non-zero error
    assert 0.01 < means["recon_error/G.context.1.0.ham"] < 1


def test_the_reconstruction_error_is_the_decompositions_own():
    """Reported error == the error of the factors the decomposition returns."""
    nmf = NMF(8, 4, steps=5)
    x = torch.rand(4, 8, 30)
    collector = stats.Collector()
    torch.manual_seed(0)
    with collector.step(1):
        bases, coef = nmf.factorize(x)
    reported = collector.summary()[0]["recon_error/ham"]
    direct = torch.linalg.norm(x - bases @ coef.transpose(1, 2), dim=(1, 2)) / torch.linalg.norm(x, dim=(1, 2))
    assert math.isclose(reported, direct.mean().item(), rel_tol=1e-5)
