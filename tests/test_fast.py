"""The fast settings (hamgan/fast.py): what `train.fast` and the 'auto' values resolve to on
each device, the process-wide flags, fused Adam in the trainer."""
import pytest
import torch

from hamgan import fast
from hamgan.config import load_config
from hamgan.errors import HamganError

CUDA = torch.device("cuda")


def settings(device, *overrides, capability=(9, 0), monkeypatch=None):
    if monkeypatch is not None:   # resolve a CUDA device's settings on any machine
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return fast.resolve(load_config(None, list(overrides)).train, torch.device(device))


def test_on_cuda_fast_turns_everything_on(monkeypatch):
    s = settings(CUDA, monkeypatch=monkeypatch)
    assert s == fast.Settings(amp="bf16", channels_last=True, compile=False, fused_adam=True, tf32_matmul=True,
                              cudnn_benchmark=True, prefetch=True)
    assert s.describe() == ("bf16 autocast, channels_last, fused Adam, TF32 matmuls, cuDNN autotuning, "
                            "device prefetch")


def test_auto_bf16_needs_bf16_units_and_explicit_values_win(monkeypatch):
    assert settings(CUDA, capability=(7, 0), monkeypatch=monkeypatch).amp == "none"      # V100: no bf16 units
    s = settings(CUDA, "train.amp=fp16", "train.channels_last=false", "train.compile=true", monkeypatch=monkeypatch)
    assert (s.amp, s.channels_last, s.compile) == ("fp16", False, True)


def test_fast_off_is_plain_pytorch_and_auto_means_fp32_nchw(monkeypatch):
    assert settings(CUDA, "train.fast=false", monkeypatch=monkeypatch) == fast.Settings(
        amp="none", channels_last=False, compile=False, fused_adam=False, tf32_matmul=False, cudnn_benchmark=False,
        prefetch=False)
    s = settings(CUDA, "train.fast=false", "train.amp=bf16", "train.channels_last=true", monkeypatch=monkeypatch)
    assert (s.amp, s.channels_last) == ("bf16", True)


def test_on_the_cpu_fast_is_fused_adam_only():
    assert settings("cpu") == fast.Settings(amp="none", channels_last=False, compile=False, fused_adam=True,
                                            tf32_matmul=False, cudnn_benchmark=False, prefetch=False)
    assert settings("cpu", "train.amp=bf16", "train.channels_last=true").amp == "bf16"
    with pytest.raises(HamganError, match="fp16.*needs CUDA"):
        settings("cpu", "train.amp=fp16")


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9")
def test_backend_flags_are_set_both_ways_and_untouched_on_the_cpu(monkeypatch):
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.fp32_precision, cudnn.benchmark)
    try:
        fast.apply_backend(settings(CUDA, monkeypatch=monkeypatch), CUDA)
        assert (matmul.fp32_precision, cudnn.benchmark) == ("tf32", True)
        fast.apply_backend(settings(CUDA, "train.fast=false", monkeypatch=monkeypatch), CUDA)
        assert (matmul.fp32_precision, cudnn.benchmark) == ("ieee", False)   # nothing leaks into the next run
        fast.apply_backend(settings(CUDA, monkeypatch=monkeypatch), torch.device("cpu"))
        assert (matmul.fp32_precision, cudnn.benchmark) == ("ieee", False)
    finally:
        matmul.fp32_precision, cudnn.benchmark = before


def test_the_trainer_uses_fused_adam_when_fast():
    from hamgan.train import build
    from .test_train import tiny
    for on in (True, False):
        training, _, _ = build(tiny(f"train.fast={str(on).lower()}"), torch.device("cpu"))
        assert [bool(opt.defaults["fused"]) for opt in training.opt.values()] == [on, on]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prefetcher_hands_over_the_loaders_batches_on_the_gpu():
    batches = [(torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8), torch.tensor([k, k + 1])) for k in range(4)]
    source = iter(batches)
    prefetcher = fast.DevicePrefetcher(source, CUDA)
    for k in range(2):
        images, labels = next(prefetcher)
        assert images.is_cuda and labels.is_cuda
        assert torch.equal(images.cpu(), batches[k][0]) and torch.equal(labels.cpu(), batches[k][1])
    assert next(source) is batches[3]           # it ran one batch ahead
