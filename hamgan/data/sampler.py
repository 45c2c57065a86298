"""Which images each training batch holds: an endless, sharded, resumable index stream.

Epoch e visits the dataset in the order ``perm_e``, a permutation drawn from (seed, e) alone,
with a horizontal flip for each of its slots drawn from (seed, e) too. The global stream is the
concatenation of the epochs; it is cut into chunks of b images (b = this process's batch), and
process r of W takes chunks r, r + W, r + 2W, ... (its k-th batch is chunk k * W + r). So:

* one step's W * b images (W * accum * b with gradient accumulation) are the same images,
  in the same order, however the global batch is split over processes and rounds;
* processes get disjoint parts of every epoch that together cover it;
* flips depend on (seed, epoch, slot), not on workers, world size or when a run resumed.

`drop_last=True` uses ``(n // global_batch) * global_batch`` images of each epoch
(global_batch = W * accum * b), so no step straddles two epochs; the few left out are different
ones every epoch. `drop_last=False` uses every image: steps run on across epoch boundaries.

The position is the number of batches this process has consumed; any position is reached
directly (at most two permutations are drawn), which makes resuming exact and cheap.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np

from ..errors import HamganError


class InfiniteShardedSampler:
    """Endless (indices int64 (b,), flips bool (b,)) batches for process `rank`, from `start` on."""

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1, accum: int = 1,
                 drop_last: bool = True, flip: bool = False, start: int = 0):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} not in 0..{world - 1}")
        if batch_size < 1 or accum < 1:
            raise HamganError(f"batch size and accumulation rounds must be positive, got {batch_size}, {accum}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.accum, self.drop_last, self.flip = rank, world, accum, drop_last, flip
        global_batch = world * accum * batch_size
        self.used = n // global_batch * global_batch if drop_last else n  # stream images per epoch
        if self.used == 0:
            raise HamganError(f"{n} images are fewer than one global batch of {global_batch} "
                              f"({world} processes x {accum} rounds x {batch_size}): use a smaller batch or more data")
        self.position = start
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole epoch: (permutation int64 (n,), flip of each slot bool (n,))."""
        if epoch not in self._epochs:
            perm = np.random.default_rng([self.seed, epoch, 0]).permutation(self.n)
            if self.flip:
                flips = np.random.default_rng([self.seed, epoch, 1]).random(self.n) < 0.5
            else:
                flips = np.zeros(self.n, dtype=bool)
            if len(self._epochs) >= 2:  # keep two: a batch may straddle an epoch boundary
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = (perm, flips)
        return self._epochs[epoch]

    def stream(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Global stream slots [start, start + count): (indices (count,), flips (count,))."""
        parts_i, parts_f = [], []
        while count:
            epoch, off = divmod(start, self.used)
            perm, flips = self.epoch_order(epoch)
            take = min(count, self.used - off)
            parts_i.append(perm[off:off + take])
            parts_f.append(flips[off:off + take])
            start, count = start + take, count - take
        return np.concatenate(parts_i), np.concatenate(parts_f)

    def batch(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's batch number `position`: chunk position * world + rank of the stream."""
        chunk = position * self.world + self.rank
        return self.stream(chunk * self.batch_size, self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        while True:
            out = self.batch(self.position)
            self.position += 1
            yield out

    def epoch_of(self, position: int) -> int:
        """The epoch of the first image of batch `position`."""
        return (position * self.world + self.rank) * self.batch_size // self.used

    def state_dict(self) -> dict:
        return {"position": self.position, "n": self.n, "batch_size": self.batch_size, "seed": self.seed,
                "world": self.world, "accum": self.accum, "drop_last": self.drop_last, "flip": self.flip}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position. A different dataset size is an error; other
        differences (seed, batch split...) only mean the run will not replay exactly."""
        if state["n"] != self.n:
            raise HamganError(f"the saved data position is for a dataset of {state['n']} images; this one "
                              f"has {self.n}: the data changed since the checkpoint")
        changed = [k for k in ("batch_size", "seed", "world", "accum", "drop_last", "flip")
                   if state.get(k, getattr(self, k)) != getattr(self, k)]
        if changed:
            warnings.warn(f"resuming the data stream with different {', '.join(changed)}: images will not "
                          f"follow the order of the original run", stacklevel=2)
        self.position = int(state["position"])
