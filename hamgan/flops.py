"""Model FLOP of a training step, counted from the networks, and what a device allows.

Counting runs the networks under `torch.utils.flop_counter.FlopCounterMode` on fake tensors
(shapes without storage: any size, no memory, no arithmetic), so the full 128 px networks are
counted in seconds on any machine. Counted are what the counter counts: convolutions and
matrix products, forward and backward (2 FLOP per multiply-add; a backward pass computes the
input gradient only where the input needs one and the weight gradient only where the weight
does). That is the usual "model FLOP" of MFU figures: batch norm, activations, the hinge, the
spectral-norm power iteration and the optimiser are elementwise or per-step and left out.

Per image means per image of the global batch: the hinge loss's D phase processes its real and
its generated images, so it costs G forward + (D forward and backward) x 2 per image.

Peaks: `DEVICE_PEAKS`, the vendor's dense (no sparsity) rates of known GPUs; an unknown device
reports achieved FLOP/s only.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from .config import Config, ModelConfig
from .loss import Batch, HingeLoss
from .models import build_discriminator, build_generator


def count_flops(fn: Callable, *args, **kwargs) -> tuple[object, int]:
    """(fn(*args, **kwargs), FLOP of the convolutions and matrix products it ran)."""
    with FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return out, counter.get_total_flops()


@contextlib.contextmanager
def fake_networks(model: ModelConfig) -> Iterator[tuple[nn.Module, nn.Module]]:
    """G and D of `model` in training mode, made of fake CPU tensors; inside, every new tensor
    is fake too. Built on the meta device first: no initialisation, fast at any size."""
    with torch.device("meta"):
        G, D = build_generator(model), build_discriminator(model)
    with FakeTensorMode(allow_non_fake_inputs=True):
        G.to_empty(device="cpu")
        D.to_empty(device="cpu")
        yield G, D


@dataclass(frozen=True)
class StepFlops:
    """Model FLOP per image of the global batch of a training step: one update of each phase of
    the loss (`phases`), how many updates of it a step makes on average (`updates`: repeats /
    interval), the EMA update; for reference, each network's forward alone."""

    phases: dict[str, float]
    updates: dict[str, float]
    ema: float                 # one lerp (3 FLOP) per G parameter per step, shared by the batch
    g_forward: float
    d_forward: float

    @property
    def step(self) -> float:
        return sum(self.updates[name] * flop for name, flop in self.phases.items()) + self.ema

    def gflop_per_image(self) -> dict[str, float]:
        """{phase: GFLOP, ..., "EMA": GFLOP, "step": GFLOP}, to 4 significant digits."""
        per_image = {**self.phases, "EMA": self.ema, "step": self.step}
        return {name: float(f"{v / 1e9:.4g}") for name, v in per_image.items()}


def _update(loss, phase, batch, G, D) -> None:
    """The gradient computation of one update of `phase`, as the trainer makes it."""
    loss.accumulate(phase, batch, G, D).float().backward()


def step_flops(cfg: Config, loss=None, per_process: int = 2) -> StepFlops:
    """Count a training step of `cfg` (its networks, global batch, EMA) under `loss` (default:
    the hinge loss with train.d_steps D updates, as `hamgan.train` uses): each phase as the
    trainer runs it, `loss.accumulate` and the backward, with only the phase's network's
    parameters requiring gradients. The networks are counted on `per_process` images and
    divided: their cost is linear in the batch."""
    model, t, b = cfg.model, cfg.train, per_process
    loss = loss if loss is not None else HingeLoss(t.d_steps)
    with fake_networks(model) as (G, D):
        z = torch.randn(b, model.z_dim)
        y = torch.randint(model.n_classes, (b,)) if model.n_classes else None
        real = torch.rand(b, 3, model.resolution, model.resolution) * 2 - 1
        with torch.no_grad():
            fake, g_forward = count_flops(G, z, y)
            _, d_forward = count_flops(D, fake, y)
        phases = {}
        for phase in loss.phases:
            G.requires_grad_(phase.net == "G")
            D.requires_grad_(phase.net == "D")
            batch = Batch(real if phase.real else None, y if phase.real else None, z, y)
            phases[phase.name] = count_flops(_update, loss, phase, batch, G, D)[1] / b
        n_params = sum(p.numel() for p in G.parameters())
    return StepFlops(phases=phases, updates={p.name: p.repeats / p.interval for p in loss.phases},
                     ema=3 * n_params / t.batch_size if t.ema else 0.0, g_forward=g_forward / b,
                     d_forward=d_forward / b)


# --------------------------------------------------------------------------- device peaks


@dataclass(frozen=True)
class DevicePeak:
    """A GPU's dense peak rates in TFLOP/s by the precision of the multiply-adds (None: the chip
    has no unit for it). fp16/bf16 are tensor-core rates with float32 accumulation (what
    PyTorch uses); tf32 is the rate of float32 convolutions and matrix products when TF32 is
    allowed."""

    name: str
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float


# (pattern searched in torch.cuda.get_device_name(), peaks), most specific first. Datasheets
# quote tensor-core rates "with sparsity" for Ampere and later: halved here.
DEVICE_PEAKS: tuple[tuple[str, DevicePeak], ...] = (
    # H100/H200 NVL: NVIDIA H100 NVL and H200 NVL product briefs (FP32 60; TF32 835*, BF16/FP16 1671*)
    (r"\bH[12]00 NVL\b", DevicePeak("H100/H200 NVL", fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5)),
    # H100 PCIe: NVIDIA H100 Tensor Core GPU datasheet (FP32 51; TF32 756*, BF16/FP16 1513*)
    #   https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
    (r"\bH100\b.*\bPCIe\b", DevicePeak("H100 PCIe", fp32=51.0, tf32=378.0, bf16=756.5, fp16=756.5)),
    # H100 SXM5 ("NVIDIA H100 80GB HBM3"), H200 SXM, GH200: the same datasheet and the H200 /
    # GH200 datasheets (FP32 67; TF32 989*, BF16/FP16 1979*)
    (r"\b(GH200|H200|H100)\b", DevicePeak("H100/H200 SXM", fp32=67.0, tf32=494.7, bf16=989.4, fp16=989.4)),
    # A100 SXM4 and PCIe, 40 and 80 GB: NVIDIA A100 datasheet (FP32 19.5; TF32 156, BF16/FP16 312)
    #   https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    (r"\bA100\b", DevicePeak("A100", fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0)),
    # A10 (not A10G): NVIDIA A10 datasheet (FP32 31.2; TF32 62.5, BF16/FP16 125)
    (r"\bA10\b", DevicePeak("A10", fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0)),
    # L40S: NVIDIA L40S datasheet (FP32 91.6; TF32 366*, BF16/FP16 733*)
    (r"\bL40S\b", DevicePeak("L40S", fp32=91.6, tf32=183.0, bf16=362.0, fp16=362.0)),
    # L4: NVIDIA L4 datasheet (FP32 30.3; TF32 120*, BF16/FP16 242*)
    #   https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet
    (r"\bL4\b", DevicePeak("L4", fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0)),
    # RTX 4090: NVIDIA Ada GPU architecture whitepaper, appendix A (FP32 82.6; TF32 82.6;
    # FP16/BF16 with FP32 accumulate 165.2)
    (r"\bRTX 4090\b", DevicePeak("GeForce RTX 4090", fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2)),
    # RTX 3090: NVIDIA Ampere GA102 whitepaper, appendix A (FP32 35.6; TF32 35.6; FP16/BF16
    # with FP32 accumulate 71)
    (r"\bRTX 3090\b", DevicePeak("GeForce RTX 3090", fp32=35.6, tf32=35.6, bf16=71.0, fp16=71.0)),
    # V100: NVIDIA V100 datasheet (SXM2: FP32 15.7, tensor FP16 125; PCIe: 14, 112; V100S PCIe:
    # 16.4, 130); no TF32 or BF16 units
    (r"\bV100S\b", DevicePeak("V100S PCIe", fp32=16.4, tf32=None, bf16=None, fp16=130.0)),
    (r"\bV100\b.*\bPCIE\b", DevicePeak("V100 PCIe", fp32=14.0, tf32=None, bf16=None, fp16=112.0)),
    (r"\bV100\b", DevicePeak("V100 SXM2", fp32=15.7, tf32=None, bf16=None, fp16=125.0)),
    # T4: NVIDIA T4 datasheet (FP32 8.1, FP16 mixed precision 65)
    (r"\bT4\b", DevicePeak("T4", fp32=8.1, tf32=None, bf16=None, fp16=65.0)),
)

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def device_peak(name: str) -> DevicePeak | None:
    """The peaks of the GPU `torch.cuda.get_device_name()` calls `name`, or None if unknown."""
    return next((peak for pattern, peak in DEVICE_PEAKS if re.search(pattern, name, re.IGNORECASE)), None)


def compute_precision(amp: str) -> str:
    """The precision hamgan's convolutions run in on CUDA under `amp` (none / bf16 / fp16):
    bf16 / fp16 under autocast; otherwise tf32 when cuDNN may use it (PyTorch's default), else
    fp32."""
    if amp in ("bf16", "fp16"):
        return amp
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):   # torch >= 2.9 (allow_tf32 may raise there)
        return "fp32" if conv.fp32_precision == "ieee" else "tf32"
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def peak_flops(device: torch.device | str, precision: str) -> float | None:
    """The dense peak FLOP/s of `device` at `precision` (one of PRECISIONS); None on a CPU, an
    unknown GPU or a precision the GPU has no unit for."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if device.type != "cuda":
        return None
    peak = device_peak(torch.cuda.get_device_name(device))
    tflops = None if peak is None else getattr(peak, precision)
    return None if tflops is None else tflops * 1e12


def throughput(flops: StepFlops, images_per_second: float, device: torch.device | str, amp: str) -> dict:
    """How a run's speed compares with its device: the model GFLOP per image (each phase, EMA,
    the whole step), the TFLOP/s achieved at `images_per_second` (this device's share) and, on
    a known GPU, its dense peak at the precision the convolutions run in (`amp` resolved: none /
    bf16 / fp16) and the fraction of it."""
    achieved = flops.step * images_per_second
    report = {"GFLOP_per_image": flops.gflop_per_image(), "achieved_TFLOP_per_second": achieved / 1e12}
    precision = compute_precision(amp)
    peak = peak_flops(device, precision)
    if peak is not None:
        report[f"peak_TFLOP_per_second_{precision}"] = peak / 1e12
        report["fraction_of_peak"] = achieved / peak
    return report
