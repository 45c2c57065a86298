"""Reading TensorFlow checkpoints (the "tensor bundle" of `tf.train.Saver` / `tf.train.Checkpoint`)
with NumPy alone: no TensorFlow, no protobuf package.

A checkpoint ``PREFIX`` is ``PREFIX.index`` plus data shards ``PREFIX.data-00000-of-0000N``:

- The index is a LevelDB-format table (SSTable): data blocks of sorted key/value entries
  (keys prefix-compressed against the previous key, restart points every few entries), an
  index block pointing at the data blocks, and a 48-byte footer ending in a magic number.
  Each block is followed by a 5-byte trailer: compression type and masked CRC-32C.
- Key "" holds a BundleHeaderProto {1: num_shards, 2: endianness, 3: version}; every other key
  is a tensor name whose value is a BundleEntryProto {1: dtype, 2: shape (TensorShapeProto
  {2: dim {1: size}}), 3: shard_id, 4: offset, 5: size, 6: crc32c (fixed32, masked),
  7: slices}.
- A tensor's bytes are `size` raw bytes at `offset` of its shard, row-major, little-endian
  (big-endian bundles, written on big-endian machines, are refused).

The protobuf messages are decoded here by hand (varints and length-delimited fields): the three
small messages do not justify a dependency plus the TensorFlow .proto files it would need.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .crc32c import crc32c, masked
from .errors import HamganError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER = 5

# TensorFlow DataType enum -> NumPy dtype, for the types a GAN checkpoint holds (others are listed,
# not read: strings, bfloat16, quantised and resource types)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_, 19: np.float16}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               9: "int64", 10: "bool", 14: "bfloat16", 19: "float16"}


class BundleError(HamganError):
    """A file that is not a TensorFlow checkpoint, or a damaged / incomplete one."""


@dataclass(frozen=True)
class Entry:
    """Where one tensor lies: dtype (TensorFlow enum), shape, shard, byte range and checksum."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int          # masked, as stored
    sliced: bool         # a partitioned variable (not supported)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"DataType {self.dtype}")


# --------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, value) of each field of a protobuf message; length-delimited values are bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _signed(v: int) -> int:
    """int32/int64 fields are varints of the two's complement."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(buf):
        if number == 2:  # dim
            dims.append(next((_signed(v) for n, v in _fields(value) if n == 1), 0))
        elif number == 3 and value:
            raise ValueError("shape of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> Entry:
    f = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0, "crc32c": 0, "sliced": False}
    for number, value in _fields(buf):
        if number == 1:
            f["dtype"] = value
        elif number == 2:
            f["shape"] = _shape(value)
        elif number == 3:
            f["shard"] = _signed(value)
        elif number == 4:
            f["offset"] = _signed(value)
        elif number == 5:
            f["size"] = _signed(value)
        elif number == 6:
            f["crc32c"] = value
        elif number == 7:
            f["sliced"] = True
    return Entry(name, **f)


# --------------------------------------------------------------------------- LevelDB table


def _block(data: bytes, offset: int, size: int) -> bytes:
    """The contents of the block at (offset, size), checked against its trailer."""
    end = offset + size + BLOCK_TRAILER
    if offset < 0 or end > len(data):
        raise ValueError(f"block at {offset} (+{size}) runs past the end of the file ({len(data)} bytes)")
    contents, kind = data[offset:offset + size], data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if masked(crc32c(data[offset:offset + size + 1])) != stored:
        raise ValueError(f"block at {offset}: checksum mismatch")
    if kind != 0:
        raise ValueError(f"block at {offset} is compressed (type {kind}); only uncompressed tables are supported")
    return contents


def _block_entries(block: bytes):
    """(key, value) pairs of one block, in order."""
    if len(block) < 4:
        raise ValueError("block too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise ValueError("bad restart count")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise ValueError("corrupt block entry")
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        yield key, block[pos:pos + length]
        pos += length


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _table(data: bytes):
    """Every (key, value) of a LevelDB table held in `data`."""
    if len(data) < FOOTER_SIZE:
        raise ValueError(f"{len(data)} bytes: shorter than a table footer")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)
    if magic != TABLE_MAGIC:
        raise ValueError("no table magic number at the end")
    _, _, pos = _handle(footer)          # metaindex: unused
    offset, size, _ = _handle(footer, pos)
    for _, handle in _block_entries(_block(data, offset, size)):
        block_offset, block_size, _ = _handle(handle)
        yield from _block_entries(_block(data, block_offset, block_size))


# --------------------------------------------------------------------------- the bundle


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """PREFIX from PREFIX, PREFIX.index, PREFIX.data-*-of-*, or a folder holding one checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.index"))
        if len(found) != 1:
            what = f"{len(found)} checkpoints ({', '.join(p.stem for p in found)})" if found else "no .index file"
            raise BundleError(f"{path} holds {what}: pass the checkpoint prefix, e.g. {path}/model.ckpt-NNNN")
        return found[0].with_suffix("")
    name = path.name
    if name.endswith(".index"):
        return path.with_name(name[:-len(".index")])
    if ".data-" in name:
        return path.with_name(name[:name.index(".data-")])
    return path


class TensorBundle:
    """The tensors of a TensorFlow checkpoint, by name; values are read on demand.

    ``bundle.entries`` maps every name to its `Entry`; ``bundle.read(name)`` returns a NumPy
    array after checking its size and CRC-32C. Raises BundleError for a file that is not a
    TensorFlow checkpoint index, a damaged one, or missing / truncated data shards.
    """

    def __init__(self, path: str | os.PathLike):
        self.prefix = checkpoint_prefix(path)
        index = self.prefix.with_name(self.prefix.name + ".index")
        if not index.is_file():
            hint = (" (a single-file checkpoint is TensorFlow's old V1 format: re-save it in the V2 format with "
                    "TensorFlow)") if self.prefix.is_file() else ""
            raise BundleError(f"{index} does not exist: pass the checkpoint prefix PATH/model.ckpt-NNNN, its "
                              f".index or .data-* file{hint}")
        data = index.read_bytes()
        try:
            pairs = list(_table(data))
        except (ValueError, struct.error) as e:
            raise BundleError(f"{index} is not a TensorFlow checkpoint index, or is damaged or incomplete "
                              f"({len(data)} bytes: {e})") from None
        if not pairs or pairs[0][0] != b"":
            raise BundleError(f"{index} is a table but not a TensorFlow checkpoint index (no bundle header)")
        try:
            header = dict(_fields(pairs[0][1]))
            self.num_shards = header.get(1, 0)
            if header.get(2, 0) != 0:
                raise BundleError(f"{index} was written on a big-endian machine, which is not supported")
            self.entries: dict[str, Entry] = {}
            for key, value in pairs[1:]:
                name = key.decode("utf-8")
                self.entries[name] = _entry(name, value)
        except (ValueError, UnicodeDecodeError) as e:
            raise BundleError(f"{index}: damaged bundle entry ({e})") from None
        self.index_path = index
        self.shards = [self.prefix.with_name(f"{self.prefix.name}.data-{i:05d}-of-{self.num_shards:05d}")
                       for i in range(self.num_shards)]
        self._check_shards()

    def _check_shards(self) -> None:
        """Every shard exists and is long enough for the tensors it should hold."""
        needed = [0] * self.num_shards
        last = [""] * self.num_shards
        for e in self.entries.values():
            if not 0 <= e.shard < self.num_shards:
                raise BundleError(f"{self.index_path}: tensor '{e.name}' refers to shard {e.shard} of "
                                  f"{self.num_shards}")
            if e.offset + e.size > needed[e.shard]:
                needed[e.shard], last[e.shard] = e.offset + e.size, e.name
        for path, need, name in zip(self.shards, needed, last):
            if not path.is_file():
                raise BundleError(f"data file {path} is missing (the checkpoint has {self.num_shards} shard(s) "
                                  f"beside {self.index_path.name})")
            have = path.stat().st_size
            if have < need:
                raise BundleError(f"data file {path} is truncated: {have:,} bytes, but tensor '{name}' ends at byte "
                                  f"{need:,}; the download or copy is incomplete")

    def read(self, name: str) -> np.ndarray:
        """The tensor `name` as a (writable) NumPy array of its shape."""
        e = self.entries[name]
        if e.sliced:
            raise BundleError(f"{self.index_path}: '{name}' is a partitioned variable, which is not supported")
        if e.dtype not in DTYPES:
            raise BundleError(f"{self.index_path}: '{name}' has dtype {e.dtype_name}, which cannot be read")
        with open(self.shards[e.shard], "rb") as f:
            f.seek(e.offset)
            raw = bytearray(e.size)
            got = f.readinto(raw)
        if got != e.size:
            raise BundleError(f"{self.shards[e.shard]} is truncated inside tensor '{name}'")
        if masked(crc32c(raw)) != e.crc32c:
            raise BundleError(f"{self.shards[e.shard]}: tensor '{name}' fails its CRC-32C check: the file is "
                              "damaged; download it again")
        dtype = np.dtype(DTYPES[e.dtype]).newbyteorder("<")
        count = int(np.prod(e.shape, dtype=np.int64))
        if count * dtype.itemsize != e.size:
            raise BundleError(f"{self.index_path}: tensor '{name}' has {e.size} bytes for shape {e.shape} "
                              f"of {e.dtype_name}")
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(e.shape)
