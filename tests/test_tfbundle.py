"""Reading TensorFlow checkpoints without TensorFlow (hamgan.tfbundle, hamgan.crc32c).

The fixture in tests/fixtures/tf_hamgan_tiny was written by TensorFlow's own saver
(scripts/make_tf_fixture.py), which also recorded, from TensorFlow's checkpoint reader, every
variable's name, dtype, shape and SHA-256: the oracle here. The CRC-32C is checked against the
published iSCSI test vectors and a bit-at-a-time reference written below."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.crc32c import crc32c
from hamgan.tfbundle import BundleError, TensorBundle, checkpoint_prefix

FIXTURE = Path(__file__).parent / "fixtures" / "tf_hamgan_tiny"
PREFIX = FIXTURE / "model.ckpt-1234"
DATA = FIXTURE / "model.ckpt-1234.data-00000-of-00001"


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_values():
    # RFC 3720 (iSCSI), appendix B.4, and the customary check value
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 70001])
def test_crc32c_matches_bitwise_reference(n):
    """Lengths around the chunk sizes (64 and up, powers of two), odd lengths, the < 4 path."""
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    assert crc32c(data) == crc32c(data.tobytes()) == crc32c_bitwise(data.tobytes())


def manifest() -> dict:
    return json.loads((FIXTURE / "variables.json").read_text())


def test_reader_agrees_with_tensorflow_on_every_variable():
    bundle = TensorBundle(PREFIX)
    expected = manifest()
    assert sorted(bundle.entries) == sorted(expected)
    assert len(expected) > 200           # G, D, Adam slots, powers, global step
    for name, want in expected.items():
        value = bundle.read(name)
        assert bundle.entries[name].dtype_name == want["dtype"], name
        assert list(value.shape) == want["shape"], name
        assert hashlib.sha256(value.tobytes()).hexdigest() == want["sha256"], name
    assert bundle.read("global_step").item() == 1234
    assert bundle.read("global_step").dtype == np.int64


def test_prefix_from_index_data_or_folder():
    for path in (PREFIX, FIXTURE / "model.ckpt-1234.index", DATA, FIXTURE):
        assert checkpoint_prefix(path) == PREFIX
        assert TensorBundle(path).prefix == PREFIX


def copy_fixture(tmp_path: Path) -> Path:
    for f in (PREFIX.with_name("model.ckpt-1234.index"), DATA):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / PREFIX.name


@pytest.mark.parametrize("keep", [0, 10, 47, 0.5, -1])
def test_truncated_index_is_refused(tmp_path, keep):
    prefix = copy_fixture(tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    data = index.read_bytes()
    index.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(BundleError, match="not a TensorFlow checkpoint index, or is damaged or incomplete"):
        TensorBundle(prefix)


def test_damaged_index_block_is_refused(tmp_path):
    prefix = copy_fixture(tmp_path)
    index = prefix.with_name(prefix.name + ".index")
    data = bytearray(index.read_bytes())
    data[100] ^= 0x01                                  # inside the first data block
    index.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        TensorBundle(prefix)


def test_foreign_files_are_refused(tmp_path):
    index = tmp_path / "model.ckpt-1.index"
    torch.save({"G": torch.zeros(3)}, index)           # e.g. a PyTorch checkpoint renamed
    with pytest.raises(BundleError, match="not a TensorFlow checkpoint index"):
        TensorBundle(tmp_path / "model.ckpt-1")
    index.write_text("model_checkpoint_path: \"model.ckpt-1\"\n" * 10)
    with pytest.raises(BundleError, match="not a TensorFlow checkpoint index"):
        TensorBundle(index)
    with pytest.raises(BundleError, match=r"model.ckpt-2.index does not exist"):
        TensorBundle(tmp_path / "model.ckpt-2")


def test_truncated_or_missing_data_is_refused(tmp_path):
    prefix = copy_fixture(tmp_path)
    data = prefix.with_name(DATA.name)
    whole = data.read_bytes()
    last = max(manifest(), key=lambda n: TensorBundle(PREFIX).entries[n].offset)
    data.write_bytes(whole[:-10])
    with pytest.raises(BundleError, match=rf"is truncated: {len(whole) - 10:,} bytes, but tensor '{last}' ends"):
        TensorBundle(prefix)
    data.unlink()
    with pytest.raises(BundleError, match=r"data file .*data-00000-of-00001 is missing"):
        TensorBundle(prefix)


def test_damaged_tensor_fails_its_checksum(tmp_path):
    prefix = copy_fixture(tmp_path)
    bundle = TensorBundle(prefix)
    name = "Generator/generator/g_block1/snconv1/snconv1/kernel"
    entry = bundle.entries[name]
    data = prefix.with_name(DATA.name)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=f"tensor '{name}' fails its CRC-32C check"):
        bundle.read(name)
    bundle.read("Generator/generator/g_block1/snconv1/snconv1/bias")   # the others still read
