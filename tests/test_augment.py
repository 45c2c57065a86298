"""DiffAugment: each operation against a loop written out by hand, rows of a global batch
augmented alike however the batch is split, gradients through it, shapes and dtypes kept."""
import pytest
import torch

from hamgan.augment import CUTOUT_RATIO, DiffAugment, draw_parameters, parse_policy
from hamgan.errors import HamganError

B, H, W = 6, 8, 12


def images(b=B, seed=0, dtype=torch.float32):
    return (torch.rand(b, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1).to(dtype)


def test_translation_moves_each_image_by_its_shift_and_fills_zeros():
    x = images()
    out = DiffAugment("translation")(x, seed=5)
    p = draw_parameters(["translation"], B, H, W, seed=5)
    assert p["shift_y"].abs().max() <= 1 and p["shift_x"].abs().max() <= 2  # 1/8 of 8 and 12 px, rounded
    assert (p["shift_y"] != 0).any() and (p["shift_x"] != 0).any()
    want = torch.zeros_like(x)
    for i in range(B):
        dy, dx = int(p["shift_y"][i]), int(p["shift_x"][i])
        for y in range(H):
            for xx in range(W):
                if 0 <= y - dy < H and 0 <= xx - dx < W:
                    want[i, :, y, xx] = x[i, :, y - dy, xx - dx]
    assert torch.equal(out, want)


def test_cutout_zeroes_one_square_of_half_the_side_per_image():
    x = images() + 3  # no pixel is zero before the cutout
    out = DiffAugment("cutout")(x, seed=2)
    p = draw_parameters(["cutout"], B, H, W, seed=2)
    ch, cw = int(H * CUTOUT_RATIO + 0.5), int(W * CUTOUT_RATIO + 0.5)
    for i in range(B):
        top, left = int(p["cut_y"][i]) - ch // 2, int(p["cut_x"][i]) - cw // 2
        mask = torch.zeros(H, W, dtype=torch.bool)
        mask[max(top, 0):max(top + ch, 0), max(left, 0):max(left + cw, 0)] = True
        assert torch.equal(out[i][:, mask], torch.zeros_like(out[i][:, mask]))
        assert torch.equal(out[i][:, ~mask], x[i][:, ~mask])
        assert 0 < mask.sum() <= ch * cw


def test_colour_is_brightness_then_saturation_then_contrast():
    x = images()
    out = DiffAugment("color")(x, seed=9)
    p = draw_parameters(["color"], B, H, W, seed=9)
    for i in range(B):
        v = x[i] + p["brightness"][i]
        v = (v - v.mean(0)) * p["saturation"][i] + v.mean(0)
        v = (v - v.mean()) * p["contrast"][i] + v.mean()
        torch.testing.assert_close(out[i], v)
    assert p["brightness"].abs().max() <= 0.5 and p["saturation"].max() <= 2 and p["contrast"].min() >= 0.5


@pytest.mark.parametrize("split", [[6], [3, 3], [1, 2, 3], [2, 2, 2]])
def test_rows_of_a_global_batch_are_augmented_as_in_one_piece(split):
    """What 1 or 2 processes, or accumulation rounds, holding different rows apply is exactly what
    one process holding the whole global batch applies."""
    aug = DiffAugment("color,translation,cutout")
    x = images()
    whole = aug(x, seed=123)
    parts, first = [], 0
    for b in split:
        torch.manual_seed(first)  # the global RNG plays no part
        parts.append(aug(x[first:first + b], seed=123, rows=(first, B)))
        first += b
    assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(aug(x, seed=124), whole)


def test_operations_draw_independently_of_the_policy():
    x = images()
    p_all = draw_parameters(["color", "translation", "cutout"], B, H, W, seed=1)
    p_one = draw_parameters(["cutout"], B, H, W, seed=1)
    assert torch.equal(p_all["cut_y"], p_one["cut_y"]) and torch.equal(p_all["cut_x"], p_one["cut_x"])
    assert torch.equal(DiffAugment("none")(x, seed=1), x) and not DiffAugment("")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_shapes_dtypes_and_memory_format_are_kept(dtype, channels_last):
    x = images(dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for policy in ("translation", "cutout", "color", "color,translation,cutout"):
        out = DiffAugment(policy)(x, seed=0)
        assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
        if channels_last:
            assert out.is_contiguous(memory_format=torch.channels_last)


def test_gradients_flow_through_every_operation_to_the_generator():
    """A linear 'generator' trained through the augmentation: its weights get the gradient the
    chain rule gives (translation and cutout route pixel gradients, colour scales them)."""
    g = torch.nn.Linear(4, 3 * H * W)
    z = torch.randn(B, 4, generator=torch.Generator().manual_seed(0))
    aug = DiffAugment("color,translation,cutout")
    fake = torch.tanh(g(z)).view(B, 3, H, W)
    weights = torch.linspace(-1, 1, fake.numel()).view_as(fake)
    (aug(fake, seed=7) * weights).sum().backward()
    assert g.weight.grad.abs().sum() > 0 and torch.isfinite(g.weight.grad).all()
    # the chain rule by hand from d loss / d image: through tanh, then the linear layer
    leaf = fake.detach().requires_grad_(True)
    (grad_fake,) = torch.autograd.grad((aug(leaf, seed=7) * weights).sum(), leaf)
    weight_grad = ((grad_fake.reshape(B, -1) * (1 - fake.detach().reshape(B, -1) ** 2)).T @ z)
    torch.testing.assert_close(g.weight.grad, weight_grad)
    # pixels moved out of the picture or cut out get no gradient
    only_moves = DiffAugment("translation,cutout")
    leaf = images().requires_grad_(True)
    only_moves(leaf, seed=3).sum().backward()
    kept = only_moves(torch.ones_like(leaf), seed=3)
    assert sorted(leaf.grad.unique().tolist()) == [0.0, 1.0] and leaf.grad.sum() == kept.sum()


def test_policy_errors_name_the_bad_operation():
    assert parse_policy("cutout, translation") == ("translation", "cutout")
    with pytest.raises(HamganError, match="blur"):
        parse_policy("translation,blur")
    with pytest.raises(ValueError, match="outside"):
        DiffAugment("cutout")(images(), seed=0, rows=(4, 8))
