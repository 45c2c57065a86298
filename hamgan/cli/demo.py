"""`hamgan demo`: NMF inside a Hamburger recovers a planted low-rank signal.

(Placeholder for the training demo: it shows the block working on data whose answer is known.)"""
import torch

from ..ham import NMF


def add_arguments(p):
    p.add_argument("--seed", type=int, default=0)


def run(args):
    torch.manual_seed(args.seed)
    d, n, r = 64, 256, 8
    planted = torch.rand(4, d, r) @ torch.rand(4, r, n)
    noisy = planted + 0.05 * torch.rand_like(planted)
    print(f"planted rank-{r} non-negative signal ({d}x{n}) + noise; NMF reconstruction error vs planted:")
    for steps in (0, 1, 6, 30, 100):
        torch.manual_seed(args.seed)
        out = NMF(d, r, steps=steps)(noisy)
        err = ((out - planted).norm() / planted.norm()).item()
        print(f"  K = {steps:3d} steps: relative error {err:.4f}")
