"""Improved precision and recall (Kynkaanniemi et al. 2019) with k = 3 nearest neighbours.

Each feature set approximates its manifold by balls around its points, radius = distance to
the point's k-th nearest neighbour in its own set (itself excluded). Precision = share of
fake samples inside the real manifold; recall = share of real samples inside the fake one.
Distances are computed in blocks, so memory is O(block * n), not O(n^2)."""
from __future__ import annotations

import torch


def _blocks(a: torch.Tensor, b: torch.Tensor, block: int):
    """Yield (start, distances (block, len(b))) between rows of a and rows of b."""
    for start in range(0, len(a), block):
        yield start, torch.cdist(a[start:start + block], b)


def knn_radii(feats: torch.Tensor, k: int = 3, block: int = 1024) -> torch.Tensor:
    """(n, d) -> (n,) distance of each point to its k-th nearest other point."""
    if len(feats) <= k:
        raise ValueError(f"need more than k = {k} samples, got {len(feats)}")
    out = torch.empty(len(feats), dtype=feats.dtype, device=feats.device)
    for start, dist in _blocks(feats, feats, block):
        # the k+1 smallest include the point itself at distance 0
        out[start:start + len(dist)] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def _coverage(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, block: int) -> float:
    """Share of `queries` within radii[j] of some points[j]."""
    inside = 0
    for _, dist in _blocks(queries, points, block):
        inside += (dist <= radii[None, :]).any(dim=1).sum().item()
    return inside / len(queries)


def precision_recall(real, fake, k: int = 3, block: int = 1024, device="cpu") -> tuple[float, float]:
    """real (n, d), fake (m, d) features -> (precision, recall) in [0, 1]."""
    real = torch.as_tensor(real, dtype=torch.float32, device=device)
    fake = torch.as_tensor(fake, dtype=torch.float32, device=device)
    precision = _coverage(fake, real, knn_radii(real, k, block), block)
    recall = _coverage(real, fake, knn_radii(fake, k, block), block)
    return precision, recall
