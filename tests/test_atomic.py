"""Atomic writes under a full disk or missing permissions (issue 13): at every kind of write the
previous file stays intact, no temporary file is left, and the error names the path and the
free space; checkpoint rotation never removes the last good checkpoint."""
import errno
import io

import numpy as np
import pytest
import torch

import hamgan.atomic
from hamgan.atomic import WriteError, atomic_write, remove_temporaries, write_text
from hamgan.checkpoint import (CheckpointError, list_snapshots, load_checkpoint, prune_snapshots, save_checkpoint,
                               snapshot_path, verify_checkpoint)
from hamgan.config import load_config, save_config
from hamgan.images import save_grid
from hamgan.metrics.fid import FIDStats


class FullDisk(io.FileIO):
    """A file on a disk that fills up after `room` bytes."""

    room = 0

    def write(self, b):
        if self.tell() + len(memoryview(b).cast("B")) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(b)


def open_on_full_disk(room: int):
    def fake_open(path, mode="rb", **kwargs):
        f = type("Full", (FullDisk,), {"room": room})(path, mode.replace("b", "").replace("t", ""))
        buffered = io.BufferedWriter(f)
        return buffered if "b" in mode else io.TextIOWrapper(buffered, **kwargs)
    return fake_open


# each writer: version -> writes a file at path whose content depends on version
WRITERS = {
    "checkpoint": lambda p, v: save_checkpoint({"step": v, "G": {"w": torch.full((100_000,), float(v))}}, p),
    "png grid": lambda p, v: save_grid(torch.full((4, 3, 16, 16), v, dtype=torch.uint8), p, nrow=2),
    "stats npz": lambda p, v: FIDStats(np.full(64, v, np.float64), np.eye(64) * v, 10, {"v": v}).save(p),
    "config": lambda p, v: save_config(load_config(None, [f"train.steps={v + 1}"]), p),
    "store json": lambda p, v: write_text(p, f'{{"done": {v}}}\n' * 300),
}
NAMES = {"checkpoint": "ckpt.pt", "png grid": "grid.png", "stats npz": "stats.npz", "config": "config.toml",
         "store json": "progress.json"}


@pytest.mark.parametrize("kind", WRITERS)
@pytest.mark.parametrize("room", [0.0, 0.5])
def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(kind, room, tmp_path, monkeypatch):
    """The disk fills up before the first byte, or half-way through the file."""
    path = tmp_path / NAMES[kind]
    WRITERS[kind](path, 1)
    before = path.read_bytes()
    monkeypatch.setattr(hamgan.atomic, "open", open_on_full_disk(int(room * len(before))), raising=False)
    with pytest.raises(WriteError) as e:
        WRITERS[kind](path, 2)
    message = str(e.value)
    assert str(path) in message and "No space left" in message and " free" in message, message
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]           # no temporary file left


@pytest.mark.parametrize("fail", ["open", "fsync", "rename"])
def test_permission_and_late_errors_are_reported_the_same_way(fail, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    WRITERS["checkpoint"](path, 1)
    before = path.read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(errno.ENOSPC if fail == "fsync" else errno.EACCES, "refused")
    target = {"open": "open", "fsync": "os.fsync", "rename": "os.replace"}[fail]
    if fail == "open":
        monkeypatch.setattr(hamgan.atomic, "open", refuse, raising=False)
    else:
        monkeypatch.setattr(target, refuse)
    with pytest.raises(WriteError, match=rf"cannot write {path}: refused \(.* free\)"):
        WRITERS["checkpoint"](path, 2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_failure_of_the_writer_itself_is_not_disguised(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_write(tmp_path / "x.bin") as f:
            f.write(b"partial")
            1 / 0
    assert not any(tmp_path.iterdir())


def test_temporaries_of_killed_writes_are_found_and_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    left = [tmp_path / "checkpoints" / ".ckpt-000000010.pt.tmp4242", tmp_path / ".config.toml.tmp17"]
    keep = [tmp_path / "checkpoints" / "ckpt-000000005.pt", tmp_path / ".hamgan.lock", tmp_path / "notes.tmp"]
    for p in left + keep:
        p.write_bytes(b"x")
    assert remove_temporaries(tmp_path) == sorted(left)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in left)


# --------------------------------------------------------------------------- checkpoints: verification, rotation


def flip_a_byte(path, where=0.6):
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_bit_or_a_truncation_is_detected(tmp_path):
    path = tmp_path / "ckpt.pt"
    WRITERS["checkpoint"](path, 3)
    verify_checkpoint(path)
    assert load_checkpoint(path)["step"] == 3
    flip_a_byte(path)                                           # inside the tensor data
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(path)
    WRITERS["checkpoint"](path, 3)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_rotation_keeps_the_newest_and_never_the_last_good_one_away(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    for step in (10, 20, 30, 40):
        WRITERS["checkpoint"](snapshot_path(ckpt_dir, step), step)
    prune_snapshots(ckpt_dir, keep_last=2, keep={snapshot_path(ckpt_dir, 10)})
    assert [p.name for p in list_snapshots(ckpt_dir)] == ["ckpt-000000010.pt", "ckpt-000000030.pt",
                                                          "ckpt-000000040.pt"]
    WRITERS["checkpoint"](snapshot_path(ckpt_dir, 50), 50)
    flip_a_byte(snapshot_path(ckpt_dir, 50))                     # the newest is damaged: delete nothing
    warnings = []
    prune_snapshots(ckpt_dir, keep_last=1, warn=warnings.append)
    assert len(list_snapshots(ckpt_dir)) == 4 and "kept the older checkpoints" in warnings[0]
    WRITERS["checkpoint"](snapshot_path(ckpt_dir, 60), 60)
    prune_snapshots(ckpt_dir, keep_last=1)
    assert [p.name for p in list_snapshots(ckpt_dir)] == ["ckpt-000000060.pt"]
