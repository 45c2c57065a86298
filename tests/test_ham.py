"""The matrix decompositions and the Hamburger block (REFERENCE §1)."""
import pytest
import torch
import torch.nn.functional as F

from hamgan.ham import CD, NMF, VQ, Hamburger

EPS = 1e-6


def reference_nmf(x, bases, steps, eps=EPS):
    """Plain Lee & Seung NMF written independently of hamgan: x (B, D, N) >= 0, bases (B, D, R).
    Returns (bases, coef) after `steps` (coef, bases) updates, and the final coef update."""
    coef = torch.softmax(x.transpose(1, 2) @ bases, dim=-1)
    for _ in range(steps):
        coef = coef * (x.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + eps)
        bases = bases * (x @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + eps)
    return bases, coef


def final_coef_update(x, bases, coef, eps=EPS):
    return coef * (x.transpose(1, 2) @ bases) / (coef @ (bases.transpose(1, 2) @ bases) + eps)


def seeded(module, x, seed=0):
    torch.manual_seed(seed)
    return module(x)


def drawn_bases(b, d, r, seed=0):
    """The bases a decomposition draws after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return torch.rand(b, d, r)


def rel_err(x, y):
    return ((x - y).norm() / x.norm()).item()


# --------------------------------------------------------------------------- NMF


def test_nmf_error_never_increases_and_falls_with_k():
    torch.manual_seed(0)
    x = torch.rand(3, 24, 6) @ torch.rand(3, 6, 40) + 0.1 * torch.rand(3, 24, 40)
    errs = [rel_err(x, seeded(NMF(24, 6, steps=k), x)) for k in range(10)]
    for before, after in zip(errs, errs[1:]):
        assert after <= before * (1 + 1e-5), errs
    assert errs[6] < errs[1] * 0.8, errs


def test_nmf_each_update_is_monotone():
    """Every single coef and bases update (not only whole steps) lowers ||X - B C^T||."""
    torch.manual_seed(1)
    x = torch.rand(2, 16, 30)
    bases = torch.rand(2, 16, 5)
    coef = torch.softmax(x.transpose(1, 2) @ bases, dim=-1)
    last = (x - bases @ coef.transpose(1, 2)).norm()
    for _ in range(8):
        coef = final_coef_update(x, bases, coef)
        e1 = (x - bases @ coef.transpose(1, 2)).norm()
        bases = bases * (x @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + EPS)
        e2 = (x - bases @ coef.transpose(1, 2)).norm()
        assert e1 <= last * (1 + 1e-5) and e2 <= e1 * (1 + 1e-5)
        last = e2
    # and hamgan's NMF reproduces this independent implementation
    ref_b, ref_c = reference_nmf(x, drawn_bases(2, 16, 5, seed=3), 6)
    out = seeded(NMF(16, 5, steps=6), x, seed=3)
    torch.testing.assert_close(out, ref_b @ final_coef_update(x, ref_b, ref_c).transpose(1, 2))


def test_nmf_recovers_planted_low_rank_matrix():
    torch.manual_seed(0)
    w, h = torch.rand(2, 32, 4), torch.rand(2, 4, 64)
    x = w @ h
    out = seeded(NMF(32, 4, steps=300), x)
    assert rel_err(x, out) < 0.02
    # rank 1 cannot: the planted rank really is > 1
    assert rel_err(x, seeded(NMF(32, 1, steps=300), x)) > 0.05


def test_nmf_output_non_negative_and_relu_applied():
    x = torch.randn(2, 8, 20)  # negative entries are clipped by the ham's ReLU
    out = seeded(NMF(8, 4), x)
    assert (out >= 0).all()
    torch.testing.assert_close(out, seeded(NMF(8, 4), F.relu(x)))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("steps", [1, 6])
def test_one_step_gradient_is_last_coef_update_only(steps):
    x = torch.randn(2, 12, 20, requires_grad=True)
    weight = torch.randn(2, 12, 20)
    (seeded(NMF(12, 4, steps=steps), x) * weight).sum().backward()

    xr = x.detach().clone().requires_grad_(True)
    xpos = F.relu(xr)
    with torch.no_grad():
        bases, coef = reference_nmf(xpos, drawn_bases(2, 12, 4), steps)
    ref = bases @ final_coef_update(xpos, bases, coef).transpose(1, 2)
    (ref * weight).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_bptt_gradient_is_autograd_through_the_loop_and_differs_from_one_step():
    x = torch.randn(2, 12, 20, requires_grad=True)
    weight = torch.randn(2, 12, 20)
    (seeded(NMF(12, 4, steps=4, grad="bptt"), x) * weight).sum().backward()
    bptt = x.grad.clone()

    xr = x.detach().clone().requires_grad_(True)
    xpos = F.relu(xr)
    bases, coef = reference_nmf(xpos, drawn_bases(2, 12, 4), 4)
    ((bases @ final_coef_update(xpos, bases, coef).transpose(1, 2)) * weight).sum().backward()
    torch.testing.assert_close(bptt, xr.grad)

    x.grad = None
    (seeded(NMF(12, 4, steps=4, grad="one_step"), x) * weight).sum().backward()
    assert (x.grad - bptt).abs().max() > 1e-3 * bptt.abs().max()


def test_grad_modes_agree_forward_and_none_blocks_gradient():
    x = torch.randn(2, 12, 20, requires_grad=True)
    outs = {g: seeded(NMF(12, 4, grad=g), x) for g in ("one_step", "bptt", "none")}
    torch.testing.assert_close(outs["one_step"], outs["bptt"])
    torch.testing.assert_close(outs["one_step"], outs["none"])
    assert not outs["none"].requires_grad and outs["one_step"].requires_grad


# --------------------------------------------------------------------------- VQ / CD


def test_vq_follows_its_definition():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 30)
    steps, inv_t = 3, 100.0
    bases = drawn_bases(2, 10, 5)
    for _ in range(steps):
        cos = F.normalize(x, dim=1).transpose(1, 2) @ F.normalize(bases, dim=1)   # (B, N, R)
        coef = torch.softmax(inv_t * cos, dim=2)                                   # over R
        coef = coef / (coef.sum(dim=1, keepdim=True) + EPS)                        # over N
        assert torch.allclose(coef.sum(dim=1), torch.ones(2, 5), atol=1e-4)
        bases = x @ coef
    final = torch.softmax(inv_t * F.normalize(x, dim=1).transpose(1, 2) @ F.normalize(bases, dim=1), dim=2)
    out = seeded(VQ(10, 5, steps=steps), x)
    torch.testing.assert_close(out, bases @ final.transpose(1, 2), rtol=1e-4, atol=1e-5)


def test_cd_coefficients_solve_the_ridge_problem():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 30)
    beta = 0.05
    cd = CD(10, 4, steps=3, beta=beta)
    torch.manual_seed(0)
    bases, _ = cd.iterate(x, cd.initial_bases(x), 3)
    assert torch.allclose(bases.norm(dim=1), torch.ones(2, 4), atol=1e-5)  # concept vectors are unit
    out = seeded(cd, x)
    # C = X^T B (B^T B + beta I)^-1  <=>  C (B^T B + beta I) = X^T B  (normal equations of the ridge fit)
    coef = torch.linalg.lstsq(bases, out).solution.transpose(1, 2)
    lhs = coef @ (bases.transpose(1, 2) @ bases + beta * torch.eye(4))
    torch.testing.assert_close(lhs, x.transpose(1, 2) @ bases, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("ham", ["nmf", "cd", "vq"])
def test_every_ham_gives_gradient_and_grads_are_finite(ham):
    block = Hamburger(16, ham=ham, rank=4, steps=3)
    with torch.no_grad():
        block.sigma.fill_(1.0)
    x = torch.randn(2, 16, 6, 10, requires_grad=True)
    block(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- the block


def test_hamburger_groups_split_channels_contiguously():
    from hamgan.ham import record_factors

    block = Hamburger(16, groups=2, dim=6, rank=3).eval()  # eval: no power iteration between the two calls
    x = torch.randn(3, 16, 4, 5)
    with record_factors(block):
        y = block(x)
        seen = block.ham.last["x"]                    # the decomposed matrices (after NMF's ReLU)
    assert y.shape == x.shape
    z = F.relu(block.lower_bread(x))                  # (3, 12, 4, 5): group 0 = channels 0..5
    assert seen.shape == (6, 6, 20)
    torch.testing.assert_close(seen[1], z[0, 6:].reshape(6, 20))
    torch.testing.assert_close(seen[2], z[1, :6].reshape(6, 20))


@pytest.mark.parametrize("groups", [1, 2])
def test_hamburger_equals_lower_bread_ham_upper_bread(groups):
    """The block applies the upper bread to the factors (W B) C^T: the same as the 1x1 conv on
    the reconstruction B C^T, in value and in every gradient."""
    block = Hamburger(16, groups=groups, dim=6, rank=3).eval()
    with torch.no_grad():
        block.sigma.fill_(0.7)
    x = torch.randn(2, 16, 5, 3, requires_grad=True)
    weight = torch.randn(2, 16, 5, 3)
    (seeded(block, x) * weight).sum().backward()
    got = [t.grad.clone() for t in (x, block.sigma, *block.lower_bread.parameters(), *block.upper_bread.parameters())]

    for t in (x, block.sigma, *block.lower_bread.parameters(), *block.upper_bread.parameters()):
        t.grad = None
    z = block.lower_bread(x).reshape(2 * groups, 6, 15)
    torch.manual_seed(0)
    recon = block.ham(z).reshape(2, groups * 6, 5, 3)
    ref = x + block.sigma * block.upper_bread(recon)
    (ref * weight).sum().backward()
    want = [t.grad for t in (x, block.sigma, *block.lower_bread.parameters(), *block.upper_bread.parameters())]
    torch.testing.assert_close(seeded(block, x), ref)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("shape", [(1, 16, 4, 4), (2, 16, 6, 10), (1, 16, 1, 7)])
def test_hamburger_at_initialisation_is_identity_but_learns_sigma(shape):
    block = Hamburger(16, rank=4)
    x = torch.randn(shape, requires_grad=True)
    y = block(x)
    assert torch.equal(y, x)
    y.square().sum().backward()
    assert block.sigma.grad is not None and block.sigma.grad.abs() > 0


def test_eval_uses_eval_steps():
    x = torch.rand(2, 8, 20)
    m = NMF(8, 4, steps=2, eval_steps=5).eval()
    torch.testing.assert_close(seeded(m, x), seeded(NMF(8, 4, steps=5), x))
    assert not torch.allclose(seeded(m.train(), x), seeded(NMF(8, 4, steps=5), x))


def test_norm_receives_the_callers_arguments():
    class LabelledNorm(torch.nn.Module):
        def forward(self, h, y):
            return h * 0 + y.view(-1, 1, 1, 1).float()

    block = Hamburger(8, rank=2, norm=LabelledNorm())
    with torch.no_grad():
        block.sigma.fill_(1.0)
    x = torch.zeros(2, 8, 4, 4)
    out = block(x, torch.tensor([3, 5]))
    assert out[0].eq(3).all() and out[1].eq(5).all()


def test_bases_init_options():
    x = torch.rand(4, 8, 20)
    torch.manual_seed(0)
    b = NMF(8, 3, bases_init="rand_l2").initial_bases(x)
    assert torch.allclose(b.norm(dim=1), torch.ones(4, 3))
    online = NMF(8, 3, groups=2, bases_init="online")
    before = online.bases.clone()
    assert torch.equal(online.initial_bases(x)[2], before[0]) and torch.equal(online.initial_bases(x)[3], before[1])
    online(x)
    assert not torch.equal(online.bases, before)                        # learned in training ...
    assert torch.allclose(online.bases.norm(dim=1), torch.ones(2, 3))
    after = online.bases.clone()
    online.eval()(x)
    assert torch.equal(online.bases, after)                             # ... frozen in eval
    assert "bases" in online.state_dict()


def test_deterministic_for_a_fixed_seed():
    x = torch.randn(2, 16, 8, 8)
    a, b = Hamburger(16, rank=4), Hamburger(16, rank=4)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        with torch.no_grad():
            m.sigma.fill_(1.0)
    assert torch.equal(seeded(a, x, 7), seeded(b, x, 7))
    assert not torch.equal(seeded(a, x, 7), seeded(a, x, 8))  # bases are drawn fresh per forward


# --------------------------------------------------------------------------- precision


def test_autocast_bf16_computes_in_float32_and_returns_callers_dtype():
    x = torch.rand(2, 16, 30).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = seeded(NMF(16, 4), x)
    assert out.dtype == torch.bfloat16
    ref = seeded(NMF(16, 4), x.float()).to(torch.bfloat16)
    assert torch.equal(out, ref)

    block = Hamburger(16, rank=4)
    with torch.no_grad():
        block.sigma.fill_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(torch.randn(2, 16, 6, 6))
    assert torch.isfinite(y).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for fp16 autocast")
def test_autocast_fp16_cuda():
    block = Hamburger(64, rank=8).cuda()
    with torch.no_grad():
        block.sigma.fill_(1.0)
    x = torch.randn(2, 64, 16, 16, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.float16):
        y = block(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("kwargs, name", [
    (dict(channels=10, groups=3), "groups"),
    (dict(channels=16, rank=0), "rank"),
    (dict(channels=16, ham="svd"), "ham"),
    (dict(channels=16, steps=-1), "steps"),
    (dict(channels=0), "channels"),
    (dict(channels=16, grad="sometimes"), "grad"),
    (dict(channels=16, bases_init="zeros"), "bases_init"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Hamburger(**kwargs)


def test_rows_make_bases_independent_of_the_split():
    """2 processes (or accumulation rounds) x 3 samples draw the bases of 1 x 6 samples."""
    from hamgan.ham import Rows

    x = torch.rand(6, 8, 20)
    whole = seeded(NMF(8, 4, groups=1), x)
    halves = []
    for first in (0, 3):
        torch.manual_seed(0)
        halves.append(NMF(8, 4)(x[first:first + 3], bases=(Rows(first, 3, 6),)))
    torch.testing.assert_close(torch.cat(halves), whole)
    # two concatenated global batches (e.g. real and fake), split across 2 processes
    y = torch.rand(6, 8, 20)
    torch.manual_seed(0)
    m = NMF(8, 4)
    ref_x, ref_y = m(x), m(y)
    for first in (0, 3):
        torch.manual_seed(0)
        out = m(torch.cat([x[first:first + 3], y[first:first + 3]]), bases=(Rows(first, 3, 6),) * 2)
        torch.testing.assert_close(out[:3], ref_x[first:first + 3])
        torch.testing.assert_close(out[3:], ref_y[first:first + 3])
    with pytest.raises(ValueError, match="adding up to the batch of 3"):
        m(x[:3], bases=(Rows(0, 2, 6),))
    with pytest.raises(ValueError, match="bases must be"):
        m(x, bases="per-sample")
