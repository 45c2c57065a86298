"""`hamgan import-tf` on a full-size HamGAN checkpoint: wall time, peak memory, and agreement with
TensorFlow's outputs.

    /tmp/tfvenv/bin/python scripts/make_tf_fixture.py --size full --out /tmp/tf_hamgan_full   # ~1 GB, once
    python scripts/bench_import.py --ckpt /tmp/tf_hamgan_full/model.ckpt-1000000 --config configs/hamgan_strong.toml

Each repetition runs the command as a user does (`python -m hamgan import-tf ... --out X.pt`, a
fresh process: interpreter start, imports, reading and checking every tensor, mapping, writing);
its peak resident memory is the child's ru_maxrss, next to that of a process that only imports
torch and hamgan (the floor). The phases are timed once in this process. With the fixture's
reference.npz beside the checkpoint, the imported G (inference mode) and D are run on TF's inputs
with TF's NMF bases and compared with TF's outputs.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_child(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `python args` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(args)}")
    return seconds, usage.ru_maxrss / 1024


def phases(ckpt: str, config: str) -> dict[str, float]:
    from hamgan.config import load_config
    from hamgan.crc32c import crc32c
    from hamgan.tf_import import import_tf
    from hamgan.tfbundle import TensorBundle

    cfg = load_config(config)
    start = time.perf_counter()
    result = import_tf(ckpt, cfg.model)
    total = time.perf_counter() - start
    bundle = TensorBundle(ckpt)
    names = [v.found for layer in result.layers for v in layer.vars.values()]
    raw = [bundle.read(n) for n in names]
    start = time.perf_counter()
    for a in raw:
        crc32c(a)
    crc = time.perf_counter() - start
    size = sum(a.nbytes for a in raw)
    return {"import_tf": total, "crc": crc, "bytes": size, "tensors": len(names)}


def check(out: Path, reference: Path) -> tuple[float, float]:
    """Max |hamgan - TF| of G's images and D's scores on the fixture's inputs and bases."""
    import numpy as np
    import torch

    from hamgan.checkpoint import load_generator, load_state
    from hamgan.ham import NMF
    from hamgan.models import build_discriminator

    ref = dict(np.load(reference))
    G, cfg, payload = load_generator(out)
    D = build_discriminator(cfg.model)
    load_state(D, payload["D"], "D")
    D.eval()
    for net, key in ((G, "g_bases"), (D, "d_bases")):
        (ham,) = [m for m in net.modules() if isinstance(m, NMF)]
        bases = torch.from_numpy(ref[key])
        ham.initial_bases = lambda x, mode="sample", b=bases: b.clone()
    y = torch.from_numpy(ref["y"])
    with torch.no_grad():
        images = G(torch.from_numpy(ref["z"]), y)
        scores = D(torch.from_numpy(ref["x"]).permute(0, 3, 1, 2), y)
    g = (images - torch.from_numpy(ref["g_images"]).permute(0, 3, 1, 2)).abs().max().item()
    d = (scores - torch.from_numpy(ref["d_scores"]).reshape(-1)).abs().max().item()
    return g, d


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--config", default=str(ROOT / "configs" / "hamgan_strong.toml"))
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    import torch
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")

    floor = [run_child(["-c", "import torch, numpy, hamgan.tf_import, hamgan.checkpoint"]) for _ in range(args.reps)]
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for k in range(args.reps):
            out = Path(tmp) / f"imported{k}.pt"
            runs.append(run_child(["-m", "hamgan", "import-tf", "--ckpt", args.ckpt, "--config", args.config,
                                   "--out", str(out), "--no-progress"]))
        size = out.stat().st_size
        reference = Path(args.ckpt).parent / "reference.npz"
        agreement = check(out, reference) if reference.is_file() else None
    ph = phases(args.ckpt, args.config)

    print("| process | wall s (median) | peak RSS MiB (median) |\n|---|---:|---:|")
    print(f"| `python -c 'import torch, hamgan...'` (floor) | {statistics.median(s for s, _ in floor):.1f} | "
          f"{statistics.median(m for _, m in floor):,.0f} |")
    print(f"| `hamgan import-tf ... --out X.pt` | {statistics.median(s for s, _ in runs):.1f} | "
          f"{statistics.median(m for _, m in runs):,.0f} |")
    print(f"\nin-process: import_tf {ph['import_tf']:.1f} s for {ph['tensors']} tensors "
          f"({ph['bytes'] / 2**20:,.0f} MiB read); of which CRC-32C of those bytes {ph['crc']:.1f} s "
          f"({ph['bytes'] / 2**20 / ph['crc']:.0f} MiB/s); written checkpoint {size / 2**20:,.0f} MiB")
    if agreement is not None:
        print(f"agreement with TensorFlow: G images max |diff| {agreement[0]:.2e}, D scores max |diff| "
              f"{agreement[1]:.2e}")


if __name__ == "__main__":
    main()
