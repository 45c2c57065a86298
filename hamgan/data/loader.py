"""Training batches: an endless iterator of (uint8 images (b, 3, H, W), int64 labels (b,)).

The sampler (main process) decides every batch's indices and flips; DataLoader workers only
fetch and assemble whole batches (one memmap gather for a prepared store), so the stream is the
same for any number of workers and a resumed loader replays exactly. Images stay uint8 until
the trainer moves them to the device (`hamgan.images.to_float`): 4x less to copy. Workers ignore
the stop signals (`hamgan.stopping`): the training process finishes its step, they end with it.
"""
from __future__ import annotations

import atexit
import weakref

import numpy as np
import torch

from ..stopping import ignore_stop_signals
from .sampler import InfiniteShardedSampler


def fetch_batch(dataset, indices: np.ndarray, flips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """indices (b,), flips bool (b,) -> (uint8 (b, 3, H, W), int64 (b,)), flipped left-right where asked."""
    if hasattr(dataset, "get_batch"):
        images, labels = dataset.get_batch(indices)
    else:
        items = [dataset[int(i)] for i in indices]
        images = torch.stack([im for im, _ in items])
        labels = torch.tensor([y for _, y in items], dtype=torch.int64)
    if flips.any():  # in numpy: 4x faster than torch's uint8 flip; the tensor shares the memory
        pixels, sel = images.numpy(), np.flatnonzero(flips)
        pixels[sel] = pixels[sel, ..., ::-1]
    return images, labels


class _BatchFetcher(torch.utils.data.Dataset):
    """DataLoader adaptor: its 'index' is a whole batch (indices, flips) from the sampler."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, key):
        return fetch_batch(self.dataset, *key)


def _stop_workers(ref: weakref.ref) -> None:
    it = ref()
    if it is not None:
        it._shutdown_workers()


class InfiniteLoader:
    """Endless batches for one rank; `position` = batches handed out so far (save it, or
    `state_dict()`, in checkpoints and pass it back as `start`)."""

    def __init__(self, dataset, batch_size: int, *, seed: int, rank: int = 0, world: int = 1, start: int = 0,
                 flip: bool = False, workers: int = 2, drop_last: bool = True, accum: int = 1,
                 pin_memory: bool | None = None, prefetch: int = 2):
        self.dataset = dataset
        self.sampler = InfiniteShardedSampler(len(dataset), batch_size, seed=seed, rank=rank, world=world,
                                              accum=accum, drop_last=drop_last, flip=flip, start=start)
        self.position = start
        self.workers, self.prefetch = workers, prefetch
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._it = None

    def _start(self):
        self.sampler.position = self.position  # the sampler runs ahead of what was consumed
        if self.workers == 0:
            return (fetch_batch(self.dataset, *key) for key in self.sampler)
        it = iter(torch.utils.data.DataLoader(
            _BatchFetcher(self.dataset), batch_size=None, sampler=self.sampler, num_workers=self.workers,
            pin_memory=self.pin_memory, prefetch_factor=self.prefetch, worker_init_fn=ignore_stop_signals))
        # At interpreter exit, multiprocessing ends child processes with SIGTERM, which these
        # workers ignore, then waits for them: a loader still referenced then (a global of a
        # script) would hang the exit. So stop its workers first (atexit runs last-in, first-out).
        atexit.register(_stop_workers, weakref.ref(it))
        return it

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = self._start()
        batch = next(self._it)
        self.position += 1
        return batch

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.sampler.epoch_of(self.position)

    def state_dict(self) -> dict:
        return {**self.sampler.state_dict(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Jump to a saved position (workers restart on the next batch)."""
        self.close()
        self.sampler.load_state_dict(state)
        self.position = self.sampler.position

    def close(self) -> None:
        """Stop the worker processes (they also stop when the loader is garbage collected)."""
        self._it = None


def build_loader(dataset, batch_size: int, *, seed: int, rank: int = 0, world: int = 1, start: int = 0,
                 flip: bool = False, workers: int = 2, drop_last: bool = True, accum: int = 1,
                 pin_memory: bool | None = None) -> InfiniteLoader:
    """Endless (uint8 (b, 3, H, W), int64 (b,)) batches of `batch_size` images (this process's
    batch) from `dataset` for process `rank` of `world`, starting after `start` consumed batches.

    Epoch order and flips come from `seed` only (see `sampler.py`). `accum`: gradient-
    accumulation rounds per step; with `drop_last` each epoch is cut to whole global batches of
    world * accum * batch_size images. `workers`: fetching processes (0: in this process);
    `pin_memory`: default whether CUDA is available."""
    return InfiniteLoader(dataset, batch_size, seed=seed, rank=rank, world=world, start=start, flip=flip,
                          workers=workers, drop_last=drop_last, accum=accum, pin_memory=pin_memory)
