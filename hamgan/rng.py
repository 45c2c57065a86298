"""Random number generators: derived seeds, and capturing/restoring every RNG state."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def derive_seed(*keys: int | str) -> int:
    """A well-mixed 63-bit seed from integers and strings (e.g. run seed, step, phase)."""
    words = [k if isinstance(k, int) else int.from_bytes(k.encode(), "little") % 2**32 for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA states, as tensors/ints (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": [int(x) for x in random.getstate()[1]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def private_rng():
    """Inside, torch's CPU and (initialised) CUDA generators may be re-seeded freely: their states
    are restored on exit, so e.g. an evaluation in the middle of training leaves it untouched."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield
