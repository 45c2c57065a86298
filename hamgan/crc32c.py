"""CRC-32C (Castagnoli), the checksum TensorFlow stores for every tensor of a checkpoint and
every block of its index, computed with NumPy at a few hundred MB/s (no compiled extension).

A byte-at-a-time CRC is a sequential loop, hopeless in Python for a gigabyte. Two facts make it
vectorisable:

- the register update ``s' = T[(s ^ b) & 0xFF] ^ (s >> 8)`` is linear over GF(2) in the state
  and the data together, so the register after a chunk started from state s is
  ``shift(s) ^ crc0(chunk)``, where crc0 starts from 0 and shift feeds the chunk's length of
  zero bytes: the chunks can be run side by side as lanes of a NumPy array and chained
  afterwards (a 32 x 32 bit matrix per chunk length, applied through four 256-entry tables);
- zero bytes fed to a zero register leave it zero, so the data can be padded in front to a
  whole number of chunks; the standard initial value 0xFFFFFFFF is the same as XOR-ing the
  first four bytes with 0xFF and starting from 0.

The lanes advance two bytes per step through a 65,536-entry table (the table look-up is what
costs; half as many of them).
"""
from __future__ import annotations

import functools
import math

import numpy as np

_POLY = 0x82F63B78  # Castagnoli, bit-reversed


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()


def _pair_table() -> np.ndarray:
    """The register after two bytes (x & 0xFF, then x >> 8) fed to a register holding x < 2^16."""
    x = np.arange(1 << 16, dtype=np.uint32)
    after_one = _TABLE[x & 0xFF] ^ (x >> 8)
    return _TABLE[after_one & 0xFF] ^ (after_one >> 8)


_PAIR_TABLE = _pair_table()


def _run(chunks: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Feed each row of `chunks` (K, L) uint8 (C-contiguous, L even) to its register in `state`
    (K,) uint32. Byte pairs are read as little-endian uint16 columns in place (strided): no
    transposed copy of the data."""
    pairs = chunks.view("<u2")
    for j in range(pairs.shape[1]):
        state = _PAIR_TABLE[(state ^ pairs[:, j]) & 0xFFFF] ^ (state >> 16)
    return state


@functools.lru_cache(maxsize=None)
def _shift_tables(length: int) -> tuple[list[int], ...]:
    """Four 256-entry tables t with shift(s) = t0[s & 255] ^ t1[s >> 8 & 255] ^ t2[..] ^ t3[s >> 24]:
    the register after `length` zero bytes, from state s."""
    basis = _run(np.zeros((32, length), dtype=np.uint8), np.uint32(1) << np.arange(32, dtype=np.uint32))
    tables = []
    for k in range(4):
        column = [int(c) for c in basis[8 * k:8 * k + 8]]
        table = [0] * 256
        for b in range(1, 256):
            low = b & -b
            table[b] = table[b ^ low] ^ column[low.bit_length() - 1]
        tables.append(table)
    return tuple(tables)


def crc32c(data) -> int:
    """CRC-32C of a bytes-like object or a contiguous NumPy array (as its raw bytes)."""
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    n = len(buf)
    if n < 4:  # too short for the initial-value trick; too short to matter
        s = 0xFFFFFFFF
        for b in buf.tolist():
            s = int(_TABLE[(s ^ b) & 0xFF]) ^ (s >> 8)
        return s ^ 0xFFFFFFFF
    # chunk length ~ sqrt(n) (a power of two, so the shift tables are reused): about as many
    # Python-level steps along the chunks as chunks to chain
    length = 1 << max(6, min(13, math.ceil(math.log2(math.isqrt(n) + 1))))
    count = -(-n // length)
    padded = np.zeros(count * length, dtype=np.uint8)
    start = len(padded) - n
    padded[start:] = buf
    padded[start:start + 4] ^= 0xFF
    parts = _run(padded.reshape(count, length), np.zeros(count, dtype=np.uint32)).tolist()
    t0, t1, t2, t3 = _shift_tables(length)
    s = 0
    for part in parts:
        s = t0[s & 255] ^ t1[s >> 8 & 255] ^ t2[s >> 16 & 255] ^ t3[s >> 24] ^ part
    return s ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    """The form in which LevelDB tables and TensorFlow store a CRC-32C (rotated, offset)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
