"""Model FLOP per image of each preset, counted from the networks, against a hand count of the
3x3 convolutions written here from the architecture tables.

    python scripts/bench_flops.py [--presets hamgan_baby sagan ...]

Counting is not timing: the numbers do not depend on the machine. For each preset:
`hamgan.flops.step_flops` (torch's flop counter on fake tensors: every convolution and
matrix product, forward and backward, of each phase of the hinge loss) per image of the global
batch; the same count restricted
to 3x3 convolutions; and the 3x3 convolutions counted by hand, independently of hamgan's
network code, from `hamgan.arch.ARCHS` and the config (channels, resolutions, which gradients
each step computes). The two 3x3 columns must agree exactly; their share of the total says how
much the 3x3 convolutions dominate.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import flop_registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hamgan.arch import ARCHS  # noqa: E402
from hamgan.config import load_config, to_dict  # noqa: E402
from hamgan.flops import StepFlops, step_flops  # noqa: E402

# The issue's estimate for HamGAN-baby at 128 px (GFLOP per image).
ISSUE = {"G forward": 18.5, "G and D forward and backward": 84.0, "iteration": 150.0}


@contextlib.contextmanager
def count_3x3_convolutions_only():
    """Inside, torch's flop counter counts 3x3 convolutions (forward and backward) and nothing
    else (its formulas are read from `flop_registry` when a counter is made)."""
    aten = torch.ops.aten
    saved = dict(flop_registry)

    def kernel_3x3(formula, weight_arg):
        def count(*args, **kwargs):
            return formula(*args, **kwargs) if tuple(args[weight_arg].shape[-2:]) == (3, 3) else 0
        return count

    flop_registry.update({op: (lambda *args, **kwargs: 0) for op in saved})
    flop_registry[aten.convolution] = kernel_3x3(saved[aten.convolution], 1)
    flop_registry[aten.convolution_backward] = kernel_3x3(saved[aten.convolution_backward], 2)
    try:
        yield
    finally:
        flop_registry.update(saved)


def hand_count_3x3(model, d_steps: int) -> dict[str, float]:
    """3x3 convolution FLOP per image from the tables: G's two per up-block and its output conv,
    D's two per block. A layer's backward costs its forward once for the input gradient (when
    its input needs one) and once for the weight gradient (when its weights are trained)."""
    arch, r = ARCHS[model.resolution], model.resolution
    g = [model.G.ch * m for m in (model.G.multipliers or arch.g)]
    d = [model.D.ch * m for m in (model.D.multipliers or arch.d)]

    def conv(c_in, c_out, res):
        return 2 * 9 * c_in * c_out * res * res

    g_convs = []
    for k in range(int(math.log2(r // 4))):
        res = 8 * 2 ** k                                       # up-block k outputs res x res
        g_convs += [conv(g[k], g[k + 1], res), conv(g[k + 1], g[k + 1], res)]
    g_convs.append(conv(g[-1], 3, r))
    d_convs, c_in, res = [], 3, r
    for c_out in d:
        d_convs += [conv(c_in, c_out, res), conv(c_out, c_out, res)]   # at the block's input size
        c_in, res = c_out, max(res // 2, arch.d_bottom)
    g_fwd, d_fwd, d_first = sum(g_convs), sum(d_convs), d_convs[0]
    counts = {"G forward": g_fwd, "D forward": d_fwd,
              "D phase": g_fwd + 2 * (3 * d_fwd - d_first),    # real and fake; images need no gradient
              "G phase": 3 * g_fwd + 2 * d_fwd}                 # D frozen: input gradients only
    counts["step"] = d_steps * counts["D phase"] + counts["G phase"]
    return counts


def as_counts(f: StepFlops, with_ema: bool = True) -> dict[str, float]:
    """The hand count's keys, from a counted `StepFlops` of the hinge loss."""
    return {"G forward": f.g_forward, "D forward": f.d_forward, "D phase": f.phases["D"], "G phase": f.phases["G"],
            "step": f.step - (0 if with_ema else f.ema)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["hamgan_baby", "hamgan_strong", "sagan", "demo"],
                   help="config names in configs/")
    args = p.parse_args(argv)
    giga = 1e-9
    counted, rows = {}, []
    for name in args.presets:
        cfg = load_config(ROOT / "configs" / f"{name}.toml")
        key = json.dumps(to_dict(cfg.model), sort_keys=True)
        if key not in counted:                                 # presets sharing networks are counted once
            with count_3x3_convolutions_only():
                only_3x3 = step_flops(cfg)
            counted[key] = (step_flops(cfg), only_3x3, cfg.train.batch_size)
        total, only_3x3, batch = counted[key]
        total = dataclasses.replace(total, ema=total.ema * batch / cfg.train.batch_size)   # EMA: shared by the batch
        rows.append((name, cfg, total, as_counts(only_3x3, with_ema=False),
                     hand_count_3x3(cfg.model, cfg.train.d_steps)))

    print("GFLOP per image of the global batch (counted by torch's flop counter from the networks; "
          "3x3: the 3x3 convolutions alone)\n")
    print("| preset | px | batch | G fwd | D fwd | D phase | G phase | EMA (MFLOP) | step | 3x3 by hand | 3x3 counted "
          "| 3x3 share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    mismatches = []
    for name, cfg, total, only_3x3, hand in rows:
        mismatches += [f"{name} {k}: hand {hand[k]:.0f}, counted {only_3x3[k]:.0f}"
                       for k in hand if hand[k] != only_3x3[k]]
        print(f"| {name} | {cfg.model.resolution} | {cfg.train.batch_size} | {total.g_forward * giga:.3f} | "
              f"{total.d_forward * giga:.3f} | {total.phases['D'] * giga:.2f} | {total.phases['G'] * giga:.2f} | "
              f"{total.ema * 1e-6:.3f} | {total.step * giga:.2f} | {hand['step'] * giga:.2f} | "
              f"{only_3x3['step'] * giga:.2f} | {100 * hand['step'] / total.step:.1f}% |")
    baby = next((total for name, _, total, _, _ in rows if name == "hamgan_baby"), None)
    if baby is not None:
        ours = {"G forward": baby.g_forward, "G and D forward and backward": 3 * (baby.g_forward + baby.d_forward),
                "iteration": baby.step}
        print("\nHamGAN-baby against the issue's estimate (GFLOP per image; 'G and D forward and backward' "
              "taken as 3 x their forwards, every gradient computed):\n")
        print("| quantity | issue | counted | counted / issue |\n|---|---:|---:|---:|")
        for k, v in ISSUE.items():
            print(f"| {k} | ~{v:g} | {ours[k] * giga:.1f} | {ours[k] * giga / v:.2f} |")
    print("\n3x3 hand count vs counter: " + ("exact agreement on every preset and phase" if not mismatches
                                            else "MISMATCH: " + "; ".join(mismatches)))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
