"""The fast settings of a training run (`train.fast`), resolved for its device.

On CUDA, `train.fast` turns on:
- bf16 autocast and channels_last, where `train.amp` / `train.channels_last` are 'auto' (bf16
  only on GPUs with bf16 units, compute capability 8.0 and later);
- fused Adam (one kernel for all parameters; with fp16 it also takes the gradient scaler's
  unscaling and inf check without a host synchronisation);
- TF32 for the float32 matrix products left (the Hamburgers' NMF, which autocast keeps in
  float32); cuDNN already uses TF32 for float32 convolutions by PyTorch's default;
- cuDNN autotuning (`cudnn.benchmark`: the fastest convolution algorithm per shape, found in
  the first steps);
- batches pinned and copied to the GPU on a side stream one step ahead (`DevicePrefetcher`).
On the CPU it turns on fused Adam only (measured faster there). 'auto' keeps fp32 and NCHW on
the CPU: channels_last alone is slower there, and bf16, though faster there too, stays an
explicit choice on the machine where the tests and the demo run. docs/BENCHMARKS.md has what
each item gave. `train.fast = false` gives PyTorch's plain settings.

Whatever the settings, latents go to the GPU from pinned memory (`to_device`): a plain copy
would make every step wait for the GPU to finish the work queued before it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig
from .errors import HamganError


@dataclass(frozen=True)
class Settings:
    """What a run does, with every 'auto' decided for its device."""

    amp: str                 # "none" | "bf16" | "fp16"
    channels_last: bool
    compile: bool
    fused_adam: bool
    tf32_matmul: bool
    cudnn_benchmark: bool
    prefetch: bool           # pinned batches copied to the device one step ahead

    def describe(self) -> str:
        """e.g. 'bf16 autocast, channels_last, fused Adam, TF32 matmuls, cuDNN autotuning, device prefetch'."""
        items = [f"{self.amp} autocast" if self.amp != "none" else "fp32",
                 "channels_last" if self.channels_last else "NCHW"]
        items += [name for on, name in ((self.compile, "torch.compile"), (self.fused_adam, "fused Adam"),
                                        (self.tf32_matmul, "TF32 matmuls"), (self.cudnn_benchmark, "cuDNN autotuning"),
                                        (self.prefetch, "device prefetch")) if on]
        return ", ".join(items)


def resolve(train: TrainConfig, device: torch.device) -> Settings:
    """The settings `train` asks for on `device`."""
    cuda, fast = device.type == "cuda", train.fast
    amp = train.amp
    if amp == "auto":
        amp = "bf16" if fast and cuda and torch.cuda.get_device_capability(device) >= (8, 0) else "none"
    if amp == "fp16" and not cuda:
        raise HamganError("train.amp = 'fp16' needs CUDA; use 'bf16' on the CPU")
    channels_last = fast and cuda if train.channels_last == "auto" else bool(train.channels_last)
    fused = cuda or (device.type == "cpu" and _fused_adam_on_cpu())
    return Settings(amp=amp, channels_last=channels_last, compile=train.compile, fused_adam=fast and fused,
                    tf32_matmul=fast and cuda, cudnn_benchmark=fast and cuda, prefetch=fast and cuda)


def _fused_adam_on_cpu() -> bool:
    """Whether this torch has fused Adam for CPU tensors (2.4 and later)."""
    try:
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def apply_backend(settings: Settings, device: torch.device) -> None:
    """Set the process-wide CUDA flags of `settings` (both ways, so that one run's settings do
    not leak into the next run in the same process). Nothing on the CPU."""
    if device.type != "cuda":
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):     # torch >= 2.9; mixing it with allow_tf32 is an error there
        matmul.fp32_precision = "tf32" if settings.tf32_matmul else "ieee"
    else:
        matmul.allow_tf32 = settings.tf32_matmul
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark


def adam(params, lr: float, betas, eps: float, settings: Settings) -> torch.optim.Adam:
    """Adam, fused when the settings say so."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps,
                            **({"fused": True} if settings.fused_adam else {}))


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (on the CPU) on `device`; to CUDA through pinned memory without blocking the
    host (a plain copy to CUDA waits for the GPU to finish all work queued before it)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class DevicePrefetcher:
    """The (images, labels) batches of `loader` on a CUDA `device`, the next one copied on a
    side stream while the current step runs. Counts nothing: the consumer counts the batches
    it takes (the loader runs one batch ahead)."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device
        self.stream = torch.cuda.Stream(device)
        self._next = None

    def _fetch(self) -> tuple[torch.Tensor, ...]:
        batch = next(self.loader)
        with torch.cuda.stream(self.stream):
            return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in batch)

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        batch = self._next if self._next is not None else self._fetch()
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)          # the step's kernels start after the copy
        for t in batch:
            t.record_stream(current)              # its memory is not reused before the step is done
        self._next = self._fetch()
        return batch
