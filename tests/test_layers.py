"""Spectral norm, batch norms (plain, cross-replica arithmetic, class-conditional) and residual blocks."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hamgan.layers import (BatchNorm2d, ClassTableBN, DBlock, GBlock, LinearCBN, _cross_replica_normalise,
                           power_iteration_paused, refresh_spectral_norm, sn_conv2d, sn_embedding, sn_linear,
                           spectral_norms)

TORCH_BN = dict(eps=1e-5, momentum=0.1, running_var="unbiased")   # torch.nn.BatchNorm2d's arithmetic


def top_singular_value(module) -> float:
    w = module.weight.detach()
    return torch.linalg.matrix_norm(w.flatten(1), ord=2).item()


# --------------------------------------------------------------------------- spectral norm


@pytest.mark.parametrize("make", [lambda: sn_conv2d(6, 10, 3), lambda: sn_linear(12, 7), lambda: sn_embedding(9, 5)])
def test_spectral_norm_converges_to_unit_largest_singular_value(make):
    torch.manual_seed(0)
    m = make()
    with torch.no_grad():
        m.parametrizations.weight.original.mul_(5.0)   # far from 1 before normalisation
    for _ in range(100):
        m.weight                                       # one power iteration per access in training
    assert top_singular_value(m) == pytest.approx(1.0, abs=1e-3)
    assert {"parametrizations.weight.original", "parametrizations.weight.0._u",
            "parametrizations.weight.0._v"} <= set(m.state_dict())


def test_one_power_iteration_in_training_none_in_eval():
    torch.manual_seed(0)
    m = sn_linear(8, 5)
    p = spectral_norms(m)[0]
    w = m.parametrizations.weight.original.detach()
    v0 = p._v.clone()
    m(torch.randn(2, 8))
    u1 = F.normalize(w @ v0, dim=0, eps=1e-6)          # one step from the previous (u, v)
    torch.testing.assert_close(p._u, u1)
    torch.testing.assert_close(p._v, F.normalize(w.T @ u1, dim=0, eps=1e-6))
    m.eval()
    before = p._u.clone()
    m(torch.randn(2, 8))
    assert torch.equal(p._u, before)


def test_refresh_after_reinitialisation():
    torch.manual_seed(0)
    m = sn_conv2d(4, 8, 3)
    with torch.no_grad():
        m.parametrizations.weight.original.copy_(torch.randn(8, 4, 3, 3) * 10)
    m.eval()                                            # no iteration: only the refresh can fix sigma
    stale = top_singular_value(m)
    refresh_spectral_norm(m, iterations=100)
    assert abs(stale - 1) > 0.05 and top_singular_value(m) == pytest.approx(1.0, abs=1e-3)


def with_singular_values(shape, values, seed=0):
    """A random (out, in) matrix with exactly the given singular values (an independent oracle)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g))
    s = torch.zeros(shape)
    s[range(len(values)), range(len(values))] = torch.tensor(values)
    return u @ s @ v.T


@pytest.mark.parametrize("kind", ["at_most_1", "exact"])
@pytest.mark.parametrize("top", [0.6, 2.5])
def test_spectral_norm_kinds(kind, top):
    """'at most 1' leaves a layer whose largest singular value is below 1 as it is and divides one
    above 1 by it; 'exact' divides both."""
    w = with_singular_values((7, 12), [top, 0.5 * top, 0.1 * top])
    m = sn_linear(12, 7, kind=kind)
    with torch.no_grad():
        m.parametrizations.weight.original.copy_(w)
    for _ in range(50):
        m.weight                                       # power iterations (training mode)
    m.eval()
    divisor = top if kind == "exact" or top > 1 else 1.0
    torch.testing.assert_close(m.weight, w / divisor, rtol=1e-4, atol=1e-6)
    x = torch.randn(3, 12)
    torch.testing.assert_close(m(x), x @ (w / divisor).T + m.bias, rtol=1e-4, atol=1e-5)
    assert spectral_norms(m)[0].kind == kind


def test_at_most_1_power_iteration_and_pausing_as_exact():
    """The kind changes only the divisor: both kinds run the same single power iteration per
    training forward, and power_iteration_paused stops it for both."""
    norms = []
    for kind in ("at_most_1", "exact"):
        torch.manual_seed(0)
        m = sn_conv2d(4, 6, 3, kind=kind)
        x = torch.randn(2, 4, 5, 5)
        m(x)
        with power_iteration_paused(m):
            before = spectral_norms(m)[0]._u.clone()
            m(x)
            assert torch.equal(spectral_norms(m)[0]._u, before)
        norms.append(spectral_norms(m)[0])
    assert torch.equal(norms[0]._u, norms[1]._u) and torch.equal(norms[0]._v, norms[1]._v)


def test_unknown_spectral_norm_kind():
    with pytest.raises(ValueError, match="at_most_1"):
        sn_linear(3, 4, kind="bounded")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast would run the power iteration in half")
def test_spectral_norm_sigma_in_float32_under_cuda_autocast():
    m = sn_linear(256, 256).cuda().eval()
    ref = m.weight
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.equal(m.weight, ref)


# --------------------------------------------------------------------------- batch norm


def test_batchnorm_equals_torch_batchnorm_in_training_and_eval():
    torch.manual_seed(0)
    ours, ref = BatchNorm2d(5, **TORCH_BN), nn.BatchNorm2d(5)
    gain, bias = torch.rand(5) + 0.5, torch.randn(5)
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.copy_(gain)
            m.bias.copy_(bias)
    for _ in range(3):
        x = torch.randn(4, 5, 3, 3) * 3 + 2
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn_like(x)
        out_o, out_r = ours(xo), ref(xr)
        torch.testing.assert_close(out_o, out_r)
        (out_o * g).sum().backward()
        (out_r * g).sum().backward()
        torch.testing.assert_close(xo.grad, xr.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert ours.num_batches_tracked == ref.num_batches_tracked == 3
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))


def _compare_with_batch_norm(make_x, rm, steps, **tol):
    rm_ref, rv, rv_ref = rm.clone(), torch.ones_like(rm), torch.ones_like(rm)
    for _ in range(steps):
        x = make_x().requires_grad_()
        xr = x.detach().clone().requires_grad_()
        g = torch.randn_like(x)
        out = _cross_replica_normalise(x, rm, rv, 0.1, 1e-5, reduce=lambda t: t, unbiased=True)
        ref = F.batch_norm(xr, rm_ref, rv_ref, None, None, True, 0.1, 1e-5)
        torch.testing.assert_close(out, ref, **tol)
        (out * g).sum().backward()
        (ref * g).sum().backward()
        torch.testing.assert_close(x.grad, xr.grad, **tol)
        torch.testing.assert_close(rm, rm_ref)
        torch.testing.assert_close(rv, rv_ref)


def test_cross_replica_arithmetic_equals_batch_norm():
    """The sum / sum-of-squares path with a one-process 'reduce' is exactly batch norm:
    outputs, input gradients and running statistics (unbiased variance)."""
    torch.manual_seed(0)
    _compare_with_batch_norm(lambda: torch.randn(5, 6, 4, 4) * torch.linspace(0.5, 3, 6).view(6, 1, 1) + 1,
                             torch.zeros(6), steps=3)


def test_cross_replica_sums_around_the_running_mean():
    """Data with mean 1000 and std 1: E[x^2] - E[x]^2 in float32 would lose every digit of the
    variance; summing around the (tracked) running mean keeps them."""
    torch.manual_seed(0)
    _compare_with_batch_norm(lambda: torch.randn(4, 3, 5, 5) + 1000, torch.full((3,), 999.7), steps=2,
                             rtol=1e-4, atol=1e-4)


def reference_running_stats(batches, momentum):
    """TF-GAN's moving averages written out: r <- decay r + (1 - decay) stat, biased variance,
    from (0, 1), no zero-debiasing."""
    mean, var = torch.zeros(batches[0].shape[1], dtype=torch.float64), torch.ones(batches[0].shape[1], dtype=torch.float64)
    for x in batches:
        x = x.double()
        decay = 1 - momentum
        mean = decay * mean + momentum * x.mean((0, 2, 3))
        var = decay * var + momentum * x.var((0, 2, 3), unbiased=False)
    return mean.float(), var.float()


@pytest.mark.parametrize("path", ["batch_norm", "cross_replica_sums"])
def test_running_statistics_follow_tf_gan_moving_averages(path, monkeypatch):
    """Default BN: decay 0.999 (momentum 0.001), biased variance; the one-process path (torch's
    kernel and a correction) and the cross-replica sums (forced with a one-process 'reduce')."""
    torch.manual_seed(0)
    if path == "cross_replica_sums":
        monkeypatch.setattr("hamgan.distributed.world_size", lambda: 2)
        monkeypatch.setattr("hamgan.distributed.all_reduce_sum", lambda t: t)
    bn = BatchNorm2d(6)
    assert (bn.eps, bn.momentum, bn.unbiased) == (1e-3, 1e-3, False)
    batches = [torch.randn(3, 6, 2, 2) * torch.linspace(0.1, 4, 6).view(6, 1, 1) + 2 for _ in range(4)]
    for x in batches:
        out = bn(x)
        xhat = (x - x.mean((0, 2, 3), keepdim=True)) / (x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-3).sqrt()
        torch.testing.assert_close(out, xhat, rtol=1e-4, atol=1e-5)
    mean, var = reference_running_stats(batches, 1e-3)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-7)
    # a momentum as large as torch's makes the bias visible: n = 12 values per channel, n / (n - 1) = 1.09
    big = BatchNorm2d(6, momentum=0.5)
    for x in batches:
        big(x)
    torch.testing.assert_close(big.running_var, reference_running_stats(batches, 0.5)[1], rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(big.eval()(x), (x - big.running_mean.view(6, 1, 1)) /
                               (big.running_var.view(6, 1, 1) + 1e-3).sqrt())


def test_cross_replica_keeps_dtype_and_memory_format():
    x = torch.randn(4, 8, 5, 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    out = _cross_replica_normalise(x, torch.zeros(8), torch.ones(8), 0.1, 1e-5, reduce=lambda t: t)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)


def test_class_table_bn_looks_up_per_class_and_mixes_linearly():
    torch.manual_seed(0)
    bn = ClassTableBN(4, n_classes=3)            # TF-GAN's eps 1e-3 by default
    with torch.no_grad():
        bn.gain.copy_(torch.rand(3, 4) + 0.5)
        bn.bias.copy_(torch.randn(3, 4))
    bn.eval()                                           # per-sample: running statistics
    x = torch.randn(2, 4, 3, 3)
    y = torch.tensor([2, 0])
    out = bn(x, F.one_hot(y, 3).float())
    xhat = x / (1 + 1e-3) ** 0.5
    torch.testing.assert_close(out, xhat * bn.gain[y][:, :, None, None] + bn.bias[y][:, :, None, None])
    mix = bn(x, torch.tensor([[0.25, 0, 0.75], [0.25, 0, 0.75]]))
    ends = 0.25 * bn(x, F.one_hot(torch.tensor([0, 0]), 3).float()) + 0.75 * bn(x, F.one_hot(torch.tensor([2, 2]), 3).float())
    torch.testing.assert_close(mix, ends)
    fresh = ClassTableBN(4, n_classes=3).eval()         # tables start at gain 1, bias 0
    torch.testing.assert_close(fresh(x, F.one_hot(y, 3).float()), xhat)


def test_linear_cbn_is_one_plus_linear_gain():
    torch.manual_seed(0)
    bn = LinearCBN(4, cond_dim=6).eval()
    x, c = torch.randn(3, 4, 2, 2), torch.randn(3, 6)
    xhat = x / (1 + 1e-3) ** 0.5
    gain, bias = 1 + bn.gain(c), bn.bias(c)
    torch.testing.assert_close(bn(x, c), xhat * gain[:, :, None, None] + bias[:, :, None, None])
    torch.testing.assert_close(bn(x, torch.zeros(3, 6)), xhat)
    assert spectral_norms(bn.gain) and spectral_norms(bn.bias) and bn.gain.bias is None


# --------------------------------------------------------------------------- residual blocks


def test_gblock_shape_and_conditioning_reaches_both_norms():
    torch.manual_seed(0)
    seen = []
    block = GBlock(8, 4, lambda c: ClassTableBN(c, 3))
    for bn in (block.bn1, block.bn2):
        bn.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    cond = F.one_hot(torch.tensor([0, 2]), 3).float()
    out = block(torch.randn(2, 8, 5, 6), cond)
    assert out.shape == (2, 4, 10, 12)
    assert len(seen) == 2 and all(s is cond for s in seen)


def test_dblock_shapes_and_skip_rules():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    assert DBlock(8, 16)(x).shape == (2, 16, 3, 3)
    same = DBlock(8, 8, downsample=False)
    assert same.skip is None and same(x).shape == (2, 8, 6, 6)
    assert DBlock(8, 8, downsample=True).skip is not None
    # identity skip really is the input: with the residual branch zeroed the block is the identity
    with torch.no_grad():
        same.conv2.parametrizations.weight.original.zero_()
        same.conv2.parametrizations.weight.original[0, 0, 1, 1] = 1e-3   # keep sigma finite
        same.conv2.bias.zero_()
    same.eval()
    h = same.conv2(F.relu(same.conv1(F.relu(x))))
    torch.testing.assert_close(same(x), x + h)


def test_optimised_first_block_does_not_relu_the_image():
    torch.manual_seed(0)
    opt, pre = DBlock(3, 8, preactivation=False), DBlock(3, 8, preactivation=True)
    pre.load_state_dict(opt.state_dict())
    opt.eval(), pre.eval()
    x = -torch.rand(1, 3, 4, 4)                         # all negative: a ReLU on the input would zero it
    assert not torch.allclose(opt(x), pre(x))
    # the pre-activated block's residual branch sees relu(x) = 0: only its skip depends on x
    zero = torch.zeros_like(x)
    torch.testing.assert_close(pre(x) - pre.skip(F.avg_pool2d(x, 2)), pre(zero) - pre.skip(zero[..., ::2, ::2] * 0))
