"""Training steps in bf16 / fp16 autocast (and fp32 with TF32) against IEEE fp32: finite, and the
weight updates of a few steps of a tiny config agree within a stated tolerance. bf16 runs on the
CPU too; the CUDA cases are skipped without CUDA (scripts/gpu_check.sh runs them)."""
import pytest
import torch

from hamgan.train import build, train_step

from .test_train import LINEAR_ADAM, tiny

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
STEPS = 3


def updates(device: str, *overrides) -> torch.Tensor:
    """All of G's and D's parameters after STEPS steps minus before, flattened into one vector.
    Adam with a large epsilon (LINEAR_ADAM): updates proportional to the gradients, so rounding
    in the gradients shows in the updates instead of being normalised away."""
    training, runner, _ = build(tiny(*LINEAR_ADAM, *overrides), torch.device(device))
    for net, scaler in training.scaler.items():
        if scaler.is_enabled():
            # GradScaler starts at 2^16 and skips the steps that overflow while it lowers the
            # scale (by design); start where this small network does not overflow
            training.scaler[net] = torch.amp.GradScaler(device, init_scale=2.0 ** 8)
    params = list(training.G.parameters()) + list(training.D.parameters())
    before = torch.cat([p.detach().flatten().clone() for p in params])
    for _ in range(STEPS):
        train_step(training, runner)
    return torch.cat([p.detach().flatten() for p in params]).float() - before


@pytest.mark.parametrize("device, overrides, tolerance", [
    pytest.param("cpu", ["train.amp=bf16"], 0.2, id="cpu-bf16"),
    pytest.param("cuda", ["train.amp=bf16"], 0.2, marks=needs_cuda, id="cuda-bf16"),
    pytest.param("cuda", ["train.amp=fp16"], 0.05, marks=needs_cuda, id="cuda-fp16"),
    pytest.param("cuda", ["train.amp=none", "train.channels_last=false"], 0.05, marks=needs_cuda,
                 id="cuda-fp32-tf32"),
])
def test_mixed_precision_steps_stay_finite_and_close_to_fp32(device, overrides, tolerance):
    """Tolerances: relative L2 distance of the updates, ||u - u_fp32|| / ||u_fp32||; bf16 keeps 8
    significant bits (~0.4 % per rounding), fp16 and TF32 11; a wrong loss scale or dtype gives ~1."""
    reference = updates(device, "train.fast=false", "train.amp=none", "train.channels_last=false")
    mixed = updates(device, *overrides)
    assert torch.isfinite(mixed).all()
    error = ((mixed - reference).norm() / reference.norm()).item()
    print(f"{device} {' '.join(overrides)}: relative update error {error:.4f} (tolerance {tolerance})")
    assert reference.norm() > 0 and error < tolerance
