"""Inception Score, streamed: exp(E_x KL(p(y|x) || p(y))) per split, mean and std over splits.

As the original IS code: softmax over the 1008 logits (computed without the fc bias), the
samples cut into `splits` contiguous parts by their index, std with ddof=0. Per split,
    mean_x KL(p(y|x) || p(y)) = mean_x sum_y p log p - sum_y p(y) log p(y),  p(y) = mean_x p(y|x),
so a split needs only sum_x p(y|x) (C,), sum_x sum_y p log p and a count: the accumulator is
a few float64 sums that add across batches and processes, whatever order samples arrive in.
"""
from __future__ import annotations

import torch


class ISAccumulator:
    """Per-split sums for the Inception Score of `num_samples` samples with indices 0..n-1."""

    def __init__(self, num_samples: int, splits: int = 10, num_classes: int = 1008, device="cpu"):
        self.splits = max(1, min(splits, num_samples))
        # exclusive end index of each split: split s = [s*n//splits, (s+1)*n//splits)
        self.ends = torch.tensor([(s + 1) * num_samples // self.splits for s in range(self.splits)],
                                 device=device)
        self.p_sum = torch.zeros(self.splits, num_classes, dtype=torch.float64, device=device)
        self.plogp_sum = torch.zeros(self.splits, dtype=torch.float64, device=device)
        self.count = torch.zeros(self.splits, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, index: torch.Tensor) -> None:
        """logits (B, C); index (B,) long: each sample's position in the whole evaluation."""
        logits = logits.detach().to(self.p_sum.device, torch.float64)
        split = torch.bucketize(index.to(self.ends.device), self.ends, right=True)
        if (split >= self.splits).any():
            raise IndexError(f"sample index {int(index.max())} beyond the {int(self.ends[-1])} samples declared")
        logp = torch.log_softmax(logits, dim=1)
        p = logp.exp()
        self.p_sum.index_add_(0, split, p)
        self.plogp_sum.index_add_(0, split, (p * logp).sum(1))
        self.count.index_add_(0, split, torch.ones_like(split, dtype=torch.float64))

    def all_reduce(self) -> None:
        import torch.distributed as dist
        for t in (self.p_sum, self.plogp_sum, self.count):
            dist.all_reduce(t)

    def result(self) -> tuple[float, float]:
        """(mean, std) of the per-split scores."""
        if (self.count == 0).any():
            raise ValueError("some Inception Score splits received no samples")
        py = self.p_sum / self.count[:, None]
        py_logpy = torch.where(py > 0, py * py.clamp_min(1e-300).log(), torch.zeros_like(py)).sum(1)
        scores = torch.exp(self.plogp_sum / self.count - py_logpy)
        return scores.mean().item(), scores.std(unbiased=False).item()


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS of all samples at once. logits: (N, C) -> (mean, std) over `splits` contiguous splits."""
    acc = ISAccumulator(logits.shape[0], splits, logits.shape[1], device=logits.device)
    acc.update(logits, torch.arange(logits.shape[0], device=logits.device))
    return acc.result()
