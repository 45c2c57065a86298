"""Model FLOP counted from the networks (hamgan.flops) against hand counts, and device peaks."""
import pytest
import torch
import torch.nn as nn

from hamgan.config import load_config
from hamgan.flops import (DEVICE_PEAKS, StepFlops, compute_precision, count_flops, device_peak, peak_flops,
                          step_flops, throughput)
from hamgan.loss import HingeLoss, Phase
from hamgan.ham import Hamburger
from hamgan.models import build_generator


def conv(c_in, c_out, k, res):
    """FLOP of a k x k convolution c_in -> c_out with a res x res output, one image."""
    return 2 * c_in * c_out * k * k * res * res


def test_counter_matches_a_hand_count_of_a_small_network():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.Flatten(),
                        nn.Linear(2 * 5 * 5, 7))
    x = torch.randn(2, 3, 5, 5)
    layers = [conv(3, 4, 3, 5), conv(4, 2, 1, 5), 2 * 50 * 7]          # per image
    assert count_flops(net, x)[1] == 2 * sum(layers)
    # backward: weight gradients everywhere, input gradients except for the first layer (x needs none)
    backward = layers[0] + 2 * layers[1] + 2 * layers[2]
    assert count_flops(lambda: net(x).sum().backward())[1] == 2 * (sum(layers) + backward)


def test_hamburger_forward_and_one_step_backward_match_a_hand_count():
    c, r, k, side = 6, 3, 2, 4
    n = side * side
    ham = Hamburger(c, rank=r, steps=k)
    x = torch.randn(1, c, side, side)
    d = c                                                               # one group: D = C
    lower = conv(c, d, 1, side)
    # NMF: X^T B once, then per step: coef update (B^T B, C (B^T B)), bases update (C^T C,
    # B (C^T C), X C) and X^T B for every step after the first; the final coef update again
    step = 2 * d * r * r + 2 * n * r * r + 2 * n * r * r + 2 * d * r * r + 2 * d * n * r
    iterate = 2 * n * d * r + k * step + (k - 1) * 2 * n * d * r
    final = 2 * n * d * r + 2 * d * r * r + 2 * n * r * r
    upper = 2 * c * d * r + 2 * c * r * n                               # W B, then (W B) C^T
    forward = lower + iterate + final + upper
    with torch.no_grad():
        assert count_flops(ham, x)[1] == forward
    # one-step gradient: only the final coef update is differentiated, bases held constant;
    # x needs no gradient here, so the lower bread computes its weight gradient only
    backward = lower + 2 * n * d * r + 2 * c * d * r + 2 * (2 * c * r * n)
    assert count_flops(lambda: ham(x).sum().backward())[1] == forward + backward


def test_step_flops_match_a_hand_count_of_every_layer():
    """Small networks without context blocks, counted layer by layer from the arch tables."""
    g_mult, d_mult, ch, n, z_dim = [4, 3, 2, 1], [1, 2, 3, 4], 2, 3, 16
    cfg = load_config(None, ["model.resolution=32", f"model.n_classes={n}", f"model.z_dim={z_dim}",
                             f"model.G.ch={ch}", f"model.D.ch={ch}", f"model.G.multipliers={g_mult}",
                             f"model.D.multipliers={d_mult}", "model.G.context=[]", "model.D.context=[]",
                             "train.batch_size=8"])
    g_ch, d_ch = [ch * m for m in g_mult], [ch * m for m in d_mult]

    # G: each layer's forward; weights always need gradients, inputs except z and the one-hot labels
    linear = 2 * z_dim * 16 * g_ch[0]
    convs, tables = [], []
    for k, (c_in, c_out) in enumerate(zip(g_ch, g_ch[1:])):
        res = 8 * 2 ** k
        convs += [conv(c_in, c_out, 3, res), conv(c_out, c_out, 3, res), conv(c_in, c_out, 1, res // 2)]
        tables += [2 * (2 * n * c_in), 2 * (2 * n * c_out)]             # gain and bias look-ups
    convs.append(conv(g_ch[-1], 3, 3, 32))
    g_forward = linear + sum(convs) + sum(tables)
    g_backward = linear + 2 * sum(convs) + sum(tables)

    # D: 32 -> 16 -> 8 (down-blocks), then two blocks at 8x8; skips pool before their 1x1 conv
    d_convs, first, c_in, res = [], 0, 3, 32
    for k, c_out in enumerate(d_ch):
        down = k < 2
        out_res = res // 2 if down else res
        block = [conv(c_in, c_out, 3, res), conv(c_out, c_out, 3, res)]
        skip = [conv(c_in, c_out, 1, out_res)] if (down or c_in != c_out) else []
        if k == 0:
            first = block[0] + skip[0]                                   # the layers reading images
        d_convs += block + skip
        c_in, res = c_out, out_res
    d_forward = sum(d_convs) + 2 * d_ch[-1]                              # + linear C -> 1

    f = step_flops(cfg, per_process=3)                                   # counted on 3 images, per image
    assert (f.g_forward, f.d_forward) == (g_forward, d_forward)
    # D phase: G forward without gradients; D forward and backward on real and fake images, its
    # input gradients needed everywhere but in the layers reading the images
    assert f.phases["D"] == g_forward + 2 * (3 * d_forward - first)
    # G phase: D's weights frozen (input gradients only), back through D into G
    assert f.phases["G"] == g_forward + g_backward + 2 * d_forward
    assert f.ema == 3 * sum(p.numel() for p in build_generator(cfg.model).parameters()) / 8
    assert f.step == f.phases["D"] + f.phases["G"] + f.ema


def test_step_flops_follow_the_phases_of_the_loss():
    """Two D updates per step, and a phase of a loss written outside the package every 2nd step."""
    cfg = load_config(None, ["model.resolution=32", "model.n_classes=3", "model.G.ch=2", "model.D.ch=2",
                             "model.G.context=[]", "model.D.context=[]", "train.ema=false"])

    class HingeAndDExtra(HingeLoss):
        def __init__(self):
            super().__init__(d_steps=2)
            self.phases.append(Phase("D_extra", "D", interval=2, real=True))

        def accumulate(self, phase, batch, G, D):
            if phase.name == "D_extra":                                  # a second look at the real images
                return D(batch.real, batch.real_y).mean()
            return super().accumulate(phase, batch, G, D)

    f = step_flops(cfg, HingeAndDExtra())
    assert f.updates == {"D": 2, "G": 1, "D_extra": 0.5} and f.ema == 0
    # D forward and backward on real images: weight gradients everywhere, input gradients but
    # in the first layers (the D phase does that for real and fake images)
    assert f.phases["D_extra"] == (f.phases["D"] - f.g_forward) / 2
    assert f.step == 2 * f.phases["D"] + f.phases["G"] + 0.5 * f.phases["D_extra"]


def test_throughput_reports_flop_per_second_and_no_peak_on_the_cpu():
    f = StepFlops(phases={"D": 3e9, "G": 2e9}, updates={"D": 1, "G": 1}, ema=1e6, g_forward=0, d_forward=0)
    report = throughput(f, images_per_second=100.0, device="cpu", amp="bf16")
    assert report == {"GFLOP_per_image": {"D": 3.0, "G": 2.0, "EMA": 0.001, "step": 5.001},
                      "achieved_TFLOP_per_second": pytest.approx(0.5001)}


# --------------------------------------------------------------------------- device peaks


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", "H100/H200 SXM"),
    ("NVIDIA H200", "H100/H200 SXM"),
    ("NVIDIA GH200 480GB", "H100/H200 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100/H200 NVL"),
    ("NVIDIA A100-SXM4-80GB", "A100"),
    ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
    ("Tesla V100-SXM2-16GB", "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"),
    ("Tesla V100S-PCIE-32GB", "V100S PCIe"),
    ("Tesla T4", "T4"),
    ("NVIDIA A10G", None),          # not an A10: different rates, not in the table
    ("NVIDIA L40", None),           # not an L4 or an L40S
    ("NVIDIA GeForce RTX 4080", None),
])
def test_device_names_find_their_peaks(name, expected):
    peak = device_peak(name)
    assert (peak.name if peak else None) == expected


def test_peak_table_is_consistent():
    for _, peak in DEVICE_PEAKS:
        assert peak.fp16 >= peak.fp32 and (peak.tf32 is None or peak.fp32 <= peak.tf32 <= peak.fp16)
        assert peak.bf16 is None or peak.bf16 == peak.fp16
    h100 = device_peak("NVIDIA H100 80GB HBM3")
    assert (h100.fp32, h100.tf32, h100.bf16) == (67.0, 494.7, 989.4)    # datasheet, dense


@pytest.mark.skipif(not hasattr(torch.backends.cudnn, "conv"), reason="torch < 2.9")
def test_no_peak_on_the_cpu_and_precision_of_the_convolutions():
    assert peak_flops("cpu", "bf16") is None
    with pytest.raises(ValueError, match="precision"):
        peak_flops("cpu", "int8")
    assert compute_precision("bf16") == "bf16" and compute_precision("fp16") == "fp16"
    assert compute_precision("none") == "tf32"                          # PyTorch's default for cuDNN
    conv = torch.backends.cudnn.conv
    before, conv.fp32_precision = conv.fp32_precision, "ieee"
    try:
        assert compute_precision("none") == "fp32"
    finally:
        conv.fp32_precision = before
