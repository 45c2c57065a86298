"""The resumable, sharded, infinite sampler and loader (issue 4)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.data import InfiniteShardedSampler, PreparedStore, build_loader, prepare
from hamgan.errors import HamganError


class Numbered(torch.utils.data.Dataset):
    """Image i (3, 4, 6) holds i in channel 0 and a left-to-right ramp in channel 1, so a batch
    reveals which images it holds and which were flipped; label i % 3."""

    class_names = ["a", "b", "c"]

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.zeros(3, 4, 6, dtype=torch.uint8)
        image[0] = i
        image[1] = torch.arange(6, dtype=torch.uint8)
        return image, i % 3


def ids(images):
    return images[:, 0, 0, 0].tolist()


def flipped(images):
    return (images[:, 1, 0, 0] == 5).tolist()


def take(loader, k):
    return [next(loader) for _ in range(k)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# --------------------------------------------------------------------------- position


def test_sampler_position_survives_save_load():
    s = InfiniteShardedSampler(50, 8, seed=3, flip=True)
    it = iter(s)
    for _ in range(9):  # past an epoch boundary (6 batches per epoch)
        next(it)
    state = json.loads(json.dumps(s.state_dict()))  # what a checkpoint stores must serialise
    expected = [next(it) for _ in range(5)]
    fresh = InfiniteShardedSampler(50, 8, seed=3, flip=True)
    fresh.load_state_dict(state)
    it = iter(fresh)
    for i, f in expected:
        j, g = next(it)
        assert np.array_equal(i, j) and np.array_equal(f, g)
    with pytest.raises(HamganError, match="dataset of 50 images"):
        InfiniteShardedSampler(51, 8, seed=3).load_state_dict(state)
    with pytest.warns(UserWarning, match="seed"):
        InfiniteShardedSampler(50, 8, seed=4).load_state_dict(state)


@pytest.mark.parametrize("drop_last", [True, False])
def test_resumed_loader_yields_the_same_batches(drop_last):
    data = Numbered(37)
    full = take(build_loader(data, 5, seed=1, flip=True, workers=0, drop_last=drop_last), 20)
    # resume from a saved position, with worker processes this time
    resumed = build_loader(data, 5, seed=1, flip=True, workers=2, start=11, drop_last=drop_last)
    assert_same_batches(take(resumed, 9), full[11:])
    assert resumed.position == 20
    # load_state_dict on a running loader jumps back
    state = build_loader(data, 5, seed=1, flip=True, workers=0, start=4, drop_last=drop_last).state_dict()
    resumed.load_state_dict(state)
    assert_same_batches(take(resumed, 3), full[4:7])
    resumed.close()
    x, y = full[0]
    assert x.dtype == torch.uint8 and x.shape == (5, 3, 4, 6) and y.dtype == torch.int64
    assert y.tolist() == [i % 3 for i in ids(x)]


def test_epochs_reshuffle_deterministically_and_visit_every_image():
    data = Numbered(30)
    seen = [i for x, _ in take(build_loader(data, 6, seed=0, workers=0), 15) for i in ids(x)]
    epochs = [seen[k:k + 30] for k in range(0, 90, 30)]
    assert all(sorted(e) == list(range(30)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    again = [i for x, _ in take(build_loader(data, 6, seed=0, workers=0), 5) for i in ids(x)]
    other = [i for x, _ in take(build_loader(data, 6, seed=1, workers=0), 5) for i in ids(x)]
    assert again == epochs[0] and other != epochs[0]


# --------------------------------------------------------------------------- DDP shards


def rank_batches(n, b, world, steps, **kw):
    """[rank][step] -> list of image indices."""
    return [[InfiniteShardedSampler(n, b, seed=7, rank=r, world=world, **kw).batch(k)[0].tolist()
             for k in range(steps)] for r in range(world)]


def test_ddp_shards_are_disjoint_and_cover_the_epoch():
    n, world, b = 103, 4, 5
    # drop_last=False: the ranks' batches, step by step, are the epoch in order, then the next one
    ranks = rank_batches(n, b, world, 6, drop_last=False)
    stream = [i for k in range(6) for r in range(world) for i in ranks[r][k]]
    # every slot comes from one rank: no repeat among the first n means disjoint and covering
    assert sorted(stream[:n]) == list(range(n))
    assert len(set(stream[n:])) == len(stream[n:])  # the next epoch starts afresh
    # drop_last=True: each epoch is cut to whole global batches (5 steps of 4 x 5), disjoint
    ranks = rank_batches(n, b, world, 5)
    epoch = [i for k in range(5) for r in range(world) for i in ranks[r][k]]
    assert len(epoch) == len(set(epoch)) == 100
    assert InfiniteShardedSampler(n, b, seed=7, rank=0, world=world).epoch_of(5) == 1


@pytest.mark.parametrize("drop_last", [True, False])
def test_global_batch_is_the_same_however_it_is_split(drop_last):
    """1 process x 2b == 2 processes x b (rank order) == 1 process x 2 accumulation rounds x b,
    images and flips, over several epochs."""
    n, b, steps = 45, 4, 14
    one = InfiniteShardedSampler(n, 2 * b, seed=3, flip=True, drop_last=drop_last)
    two = [InfiniteShardedSampler(n, b, seed=3, rank=r, world=2, flip=True, drop_last=drop_last) for r in range(2)]
    acc = InfiniteShardedSampler(n, b, seed=3, accum=2, flip=True, drop_last=drop_last)
    for k in range(steps):
        idx, flips = one.batch(k)
        for other in ([two[0].batch(k), two[1].batch(k)], [acc.batch(2 * k), acc.batch(2 * k + 1)]):
            assert np.array_equal(idx, np.concatenate([i for i, _ in other]))
            assert np.array_equal(flips, np.concatenate([f for _, f in other]))


def test_ranks_of_a_loader_get_disjoint_batches():
    data = Numbered(40)
    batches = [ids(next(build_loader(data, 4, seed=2, rank=r, world=2, workers=0))[0]) for r in range(2)]
    assert not set(batches[0]) & set(batches[1])


# --------------------------------------------------------------------------- flips


def test_flips_are_correct_reproducible_and_off_by_default():
    data = Numbered(64)
    plain = take(build_loader(data, 16, seed=5, workers=0), 8)
    assert not any(f for x, _ in plain for f in flipped(x))
    flips = take(build_loader(data, 16, seed=5, flip=True, workers=0), 8)
    fraction = np.mean([f for x, _ in flips for f in flipped(x)])
    assert 0.35 < fraction < 0.65
    for (x, _), (xf, _) in zip(plain, flips):  # same images, same order; flipped ones mirrored
        assert ids(x) == ids(xf)
        for a, b, f in zip(x, xf, flipped(xf)):
            assert torch.equal(b, a.flip(-1) if f else a)
    # a flip belongs to (seed, epoch, slot of the epoch order): the same for any world size
    by_world = []
    for world in (1, 2):
        decided = {}
        for rank in range(world):
            s = InfiniteShardedSampler(64, 8, seed=5, rank=rank, world=world, flip=True)
            for k in range(s.used // (world * 8)):
                idx, f = s.batch(k)
                decided.update(zip(idx.tolist(), f.tolist()))
        by_world.append(decided)
    assert by_world[0] == by_world[1]


# --------------------------------------------------------------------------- real stores


def test_loader_over_a_prepared_store(tmp_path):
    src = tmp_path / "src"
    for i in range(12):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10 + i, 9), (i * 20, 0, 0)).save(src / f"c{i % 2}" / f"{i:02d}.png")
    prepare(src, tmp_path / "store", size=8, workers=0, progress=False)
    store = PreparedStore(tmp_path / "store")
    for x, y in take(build_loader(store, 4, seed=0, workers=2), 6):
        assert x.shape == (4, 3, 8, 8)
        for image, label in zip(x, y):  # each image arrives with its own label
            i = int(image[0, 0, 0]) // 20
            assert label == i % 2 and (image[0] == i * 20).all()


def test_batch_larger_than_the_data_is_an_error():
    with pytest.raises(HamganError, match="fewer than one global batch of 32"):
        build_loader(Numbered(30), 16, seed=0, world=2)
    x, _ = next(build_loader(Numbered(30), 16, seed=0, world=2, drop_last=False, workers=0))
    assert len(set(ids(x))) == 16  # runs on across epochs instead
