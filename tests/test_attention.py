"""SAGAN / BigGAN self-attention baseline."""
import pytest
import torch
import torch.nn.functional as F

from hamgan.attention import SelfAttention


def test_matches_the_sagan_formula_and_fused_equals_explicit():
    torch.manual_seed(0)
    att = SelfAttention(32).eval()
    with torch.no_grad():
        att.gamma.fill_(0.7)
    x = torch.randn(2, 32, 6, 10)
    theta = att.theta(x).flatten(2)
    phi = F.max_pool2d(att.phi(x), 2).flatten(2)
    g = F.max_pool2d(att.g(x), 2).flatten(2)
    beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)          # (B, N, N/4): softmax over keys
    assert beta.shape == (2, 60, 15)
    ref = x + 0.7 * att.o((g @ beta.transpose(1, 2)).view(2, 16, 6, 10))
    torch.testing.assert_close(att(x), ref, rtol=1e-4, atol=1e-5)
    att.fused = False
    torch.testing.assert_close(att(x), ref, rtol=1e-4, atol=1e-5)


def test_identity_at_initialisation_with_gradient_for_gamma():
    att = SelfAttention(16)
    x = torch.randn(1, 16, 4, 8)
    y = att(x)
    assert torch.equal(y, x)
    y.square().sum().backward()
    assert att.gamma.grad.abs() > 0


def test_bf16_autocast():
    att = SelfAttention(16)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = att(torch.randn(2, 16, 8, 8))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("channels", [0, 12])
def test_bad_channels(channels):
    with pytest.raises(ValueError, match="channels"):
        SelfAttention(channels)
