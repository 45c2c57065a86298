"""Official HamGAN TensorFlow checkpoints -> hamgan (`hamgan import-tf`, hamgan.tf_import).

The oracle is TensorFlow itself: tests/fixtures/tf_hamgan_tiny holds a checkpoint written by TF's
saver with the official variable names and layouts (scripts/make_tf_fixture.py: the official
G and D rebuilt with TF-GAN's spectral norm and TPU batch norm, 32 px, tiny widths, a Hamburger
in each) and what TensorFlow computed with it on fixed inputs: G in inference mode and D, the
NMF bases fixed. The imported networks must compute the same to float32 tolerance, which they
can only do with every variable in its place (HWIO kernels, the NHWC reshape after G's linear,
the u vectors, the per-class BN tables, moving averages, breads, sigma) and TF-GAN's semantics
(eps 1e-3, W / max(1, sigma) vs W / sigma). The fixture is checked to exercise those: with
exact SN everywhere or eps 1e-5 the outputs are far off.

Bad checkpoints are made here by re-writing the fixture's tensors under other names with a
minimal bundle writer (`write_bundle`), which needs no TensorFlow either."""
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hamgan.checkpoint import load_checkpoint, load_generator, load_state
from hamgan.cli import main
from hamgan.config import load_config
from hamgan.crc32c import crc32c, masked
from hamgan.export import export
from hamgan.ham import NMF
from hamgan.layers import SpectralNorm
from hamgan.models import build_discriminator, build_generator
from hamgan.tf_import import TFImportError, import_tf
from hamgan.tfbundle import TensorBundle

FIXTURE = Path(__file__).parent / "fixtures" / "tf_hamgan_tiny"
PREFIX = FIXTURE / "model.ckpt-1234"
CONFIG = FIXTURE / "hamgan.toml"
REF = dict(np.load(FIXTURE / "reference.npz"))
G_TOL, D_TOL = 5e-5, 2e-4        # outputs: images in [-1, 1], scores ~20; measured errors ~5e-6


def imported_networks(*overrides):
    """G (eval) and D of the fixture's config, with the checkpoint's values (in memory)."""
    cfg = load_config(CONFIG, list(overrides))
    result = import_tf(PREFIX, cfg.model)
    G, D = build_generator(cfg.model), build_discriminator(cfg.model)
    load_state(G, result.G, "G")
    load_state(D, result.D, "D")
    return G.eval(), D.eval()


def fixed_bases(net, bases: np.ndarray) -> None:
    """Start the network's (one) NMF from the bases TF was given (instead of fresh random ones)."""
    (ham,) = [m for m in net.modules() if isinstance(m, NMF)]
    ham.initial_bases = lambda x, mode="sample": torch.from_numpy(bases).clone()    # NMF updates its bases in place


def outputs(G, D):
    fixed_bases(G, REF["g_bases"])
    fixed_bases(D, REF["d_bases"])
    y = torch.from_numpy(REF["y"])
    with torch.no_grad():
        images = G(torch.from_numpy(REF["z"]), y)
        scores = D(torch.from_numpy(REF["x"]).permute(0, 3, 1, 2), y)
    return images, scores


def tf_outputs():
    return torch.from_numpy(REF["g_images"]).permute(0, 3, 1, 2), torch.from_numpy(REF["d_scores"]).reshape(-1)


def test_import_reproduces_tensorflow(tmp_path, capsys):
    out = tmp_path / "imported.pt"
    assert main(["import-tf", "--ckpt", str(PREFIX), "--config", str(CONFIG), "--out", str(out)]) == 0
    G, cfg, payload = load_generator(out)                    # as `hamgan sample` / `hamgan eval` load it
    D = build_discriminator(cfg.model)
    load_state(D, payload["D"], "D")
    images, scores = outputs(G, D.eval())
    tf_images, tf_scores = tf_outputs()
    torch.testing.assert_close(images, tf_images, rtol=0, atol=G_TOL)
    torch.testing.assert_close(scores, tf_scores, rtol=0, atol=D_TOL)
    assert (images.abs() < 0.99).float().mean() > 0.9        # tanh mostly unsaturated: differences show

    assert payload["step"] == 1234 and payload.get("G_ema") is None
    assert not {"opt_G", "opt_D"} & set(payload)
    prov = payload["provenance"]
    assert prov["source"] == "tensorflow" and prov["checkpoint"] == str(PREFIX.resolve())
    assert prov["global_step"] == 1234 and prov["unused_variables"] == {"Adam slots": 138, "Adam powers": 4,
                                                                        "global step": 1}
    assert prov["notes"] == ["model.G.context[0].rank = 4; the official networks: 32",
                             "model.D.context[0].rank = 3; the official networks: 16"]
    assert "113 variables mapped" in capsys.readouterr().out


def spectral_norms(net):
    """(kind, largest singular value) of every spectrally normalised weight of `net`."""
    found = []
    for m in net.modules():
        for p in getattr(getattr(m, "parametrizations", None), "weight", []):
            if isinstance(p, SpectralNorm):
                w = m.parametrizations.weight.original
                found.append((p.kind, torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), 2).item()))
    return found


def test_fixture_exercises_the_official_semantics():
    """Otherwise the comparison above could pass with the wrong BN eps or kind of SN."""
    G, D = imported_networks()
    norms = spectral_norms(G) + spectral_norms(D)
    for kind in ("at_most_1", "exact"):
        sigmas = [s for k, s in norms if k == kind]
        assert min(sigmas) < 0.9 and max(sigmas) > 1.1, kind
    tf_images, tf_scores = tf_outputs()
    for overrides, which in ((['model.sn="exact"'], "both"), (["model.bn_eps=1e-5"], "G")):
        images, scores = outputs(*imported_networks(*overrides))
        assert (images - tf_images).abs().max() > 100 * G_TOL, overrides
        if which == "both":
            assert (scores - tf_scores).abs().max() > 100 * D_TOL, overrides


def test_every_variable_is_mapped_or_deliberately_unused(tmp_path, capsys):
    names = json.loads((FIXTURE / "variables.json").read_text())
    out = tmp_path / "x.pt"
    assert main(["import-tf", "--ckpt", str(PREFIX), "--config", str(CONFIG), "--dry-run", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert not out.exists()
    optimiser = {n for n in names if n.endswith(("/Adam", "/Adam_1")) or n.startswith(("beta1_power", "beta2_power"))}
    model = set(names) - optimiser - {"global_step"}
    lines = table.splitlines()
    rows = [line.split()[-1] for line in lines[1:lines.index("")]]
    assert sorted(rows) == sorted(model)                        # each model variable once in the table
    assert "unused (Adam slots): 138" in table and "unused (Adam powers): 4" in table
    assert "unused (global step): 1" in table
    kernel = "Generator/generator/g_snh0/dense/kernel"
    assert any(line.endswith(kernel) and "transpose, units (h, w, c) -> (c, h, w)" in line for line in lines)


def test_imported_checkpoint_samples_exports_but_does_not_resume(tmp_path, capsys):
    out = tmp_path / "imported.pt"
    assert main(["import-tf", "--ckpt", str(FIXTURE), "--config", str(CONFIG), "--out", str(out)]) == 0
    assert main(["sample", "--ckpt", str(out), "--out", str(tmp_path / "s"), "--mode", "class-sheet", "--num", "2",
                 "--device", "cpu"]) == 0
    assert (tmp_path / "s" / "class_sheet.png").is_file()
    assert load_checkpoint(out)["config"]["name"] == "tf_fixture_tiny"
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert "holds network weights only (no opt_G, opt_D, rng, data" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imported.pt", "s"]
    card = (export(out, tmp_path / "exported", sheet_rows=0) / "README.md").read_text()
    assert f"Imported from the TensorFlow checkpoint `{PREFIX.resolve()}` (global step 1234)" in card


# --------------------------------------------------------------------------- bad input


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """A minimal TensorFlow tensor bundle: one data shard, one data block, uncompressed."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data, entries = bytearray(), {}
    dtypes = {np.dtype(np.float32): 1, np.dtype(np.int64): 9}

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number: int, payload: bytes) -> bytes:
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        shape = b"".join(field(2, varint(1 << 3) + varint(d)) for d in tensors[name].shape)
        entries[name.encode()] = (varint(1 << 3) + varint(dtypes[tensors[name].dtype]) + field(2, shape)
                                  + varint(4 << 3) + varint(len(data)) + varint(5 << 3) + varint(len(raw))
                                  + bytes([6 << 3 | 5]) + struct.pack("<I", masked(crc32c(raw))))
        data += raw

    def block(pairs) -> bytes:
        body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in pairs)
        return body + struct.pack("<II", 0, 1)

    index = bytearray()

    def put(contents: bytes) -> bytes:
        handle = varint(len(index)) + varint(len(contents))
        index.extend(contents + b"\0" + struct.pack("<I", masked(crc32c(contents + b"\0"))))
        return handle

    data_handle = put(block([(b"", varint(1 << 3) + varint(1))] + list(entries.items())))
    meta_handle = put(block([]))
    index_handle = put(block([(max(entries) + b"\xff", data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    prefix.with_name(prefix.name + ".index").write_bytes(bytes(index) + footer)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))


def fixture_tensors() -> dict[str, np.ndarray]:
    bundle = TensorBundle(PREFIX)
    return {name: bundle.read(name) for name in bundle.entries}


def refused(args, tmp_path, capsys) -> str:
    """Run `hamgan import-tf`, expect exit 2 with a one-line error and nothing written."""
    out = tmp_path / "out.pt"
    before = sorted(tmp_path.iterdir())
    assert main(["import-tf", *map(str, args), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hamgan import-tf: error: "), err
    assert sorted(tmp_path.iterdir()) == before
    return err


def test_the_bundle_writer_writes_what_the_reader_reads(tmp_path):
    tensors = fixture_tensors()
    write_bundle(tmp_path / "copy", tensors)
    bundle = TensorBundle(tmp_path / "copy")
    assert sorted(bundle.entries) == sorted(tensors)
    assert all(np.array_equal(bundle.read(n), v) for n, v in tensors.items())


def test_another_models_checkpoint_is_refused(tmp_path, capsys):
    """SAGAN (TF-GAN's example): the same networks with self-attention where HamGAN has Hamburgers."""
    renamed = {"/g_ops/sn_lower_bread/": "/g_attention/sn_conv_theta/",
               "/d_ops/sn_lower_bread/": "/d_attention/sn_conv_theta/"}
    tensors = {}
    for name, value in fixture_tensors().items():
        for old, new in renamed.items():
            name = name.replace(old, new)
        tensors[name] = value
    write_bundle(tmp_path / "sagan" / "model.ckpt-5", tensors)
    err = refused(["--ckpt", tmp_path / "sagan" / "model.ckpt-5", "--config", CONFIG], tmp_path, capsys)
    assert "Generator/generator/g_ops/sn_lower_bread/weights: missing from model.ckpt-5" in err
    assert "G Hamburger after up-block 2 lower bread (G.context.1.0.lower_bread.weight)" in err

    write_bundle(tmp_path / "clf" / "model.ckpt-9", {"resnet/conv1/kernel": np.zeros((3, 3, 3, 8), np.float32),
                                                      "global_step": np.array(9)})
    err = refused(["--ckpt", tmp_path / "clf" / "model.ckpt-9", "--config", CONFIG], tmp_path, capsys)
    assert "is not a HamGAN (TF-GAN) checkpoint: no variable under 'Generator/generator/'" in err
    assert "e.g. global_step, resnet/conv1/kernel" in err


def test_unknown_variable_is_refused(tmp_path, capsys):
    tensors = fixture_tensors()
    tensors["Generator/generator/g_block1/cbn_0/renorm_r"] = np.ones(8, np.float32)
    write_bundle(tmp_path / "model.ckpt-1", tensors)
    err = refused(["--ckpt", tmp_path / "model.ckpt-1", "--config", CONFIG], tmp_path, capsys)
    assert "Generator/generator/g_block1/cbn_0/renorm_r: a variable of model.ckpt-1 that the official HamGAN" in err


@pytest.mark.parametrize("override, first", [
    ("model.G.ch=4", "Generator/generator/g_snh0/dense/kernel: shape (16, 128) in model.ckpt-1234, but "),
    ("model.D.multipliers=[1, 2, 4, 8]", "Discriminator/discriminator/d_block4/sn_conv1/sn_conv1/kernel: shape "
                                        "(3, 3, 8, 8) in model.ckpt-1234"),
    ("model.G.context=[{at=16, dim=4, rank=4}]", "Generator/generator/g_ops/sn_lower_bread/weights: shape "
                                                 "(1, 1, 4, 6) in model.ckpt-1234"),
    ("model.n_classes=6", "Generator/generator/g_block1/cbn_0/gamma: shape (5, 1, 1, 8)"),
])
def test_mismatching_preset_names_the_first_variable(tmp_path, capsys, override, first):
    err = refused(["--ckpt", PREFIX, "--config", CONFIG, override], tmp_path, capsys)
    assert first in err and str(CONFIG) in err


@pytest.mark.parametrize("override, message", [
    ("model.G.context=[{at=16, dim=6, rank=4, ham='cd'}]", "the official HamGAN has one NMF Hamburger in G "
                                                           "(Generator/generator/g_ops); this config has ['CD']"),
    ("model.D.context=[]", "model.D.context is empty: the official HamGAN has an NMF Hamburger in D"),
    ("model.conditioning='shared'", "class-conditional with per-class BN tables in G"),
])
def test_structure_without_official_counterpart_is_refused(tmp_path, capsys, override, message):
    assert message in refused(["--ckpt", PREFIX, "--config", CONFIG, override], tmp_path, capsys)


def test_partial_download_is_refused(tmp_path, capsys):
    for f in FIXTURE.glob("model.ckpt-1234.*"):
        shutil.copy(f, tmp_path / f.name)
    data = tmp_path / "model.ckpt-1234.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:50_000])
    err = refused(["--ckpt", tmp_path / "model.ckpt-1234", "--config", CONFIG], tmp_path, capsys)
    assert "is truncated: 50,000 bytes, but tensor '" in err and "the download or copy is incomplete" in err
    index = tmp_path / "model.ckpt-1234.index"
    index.write_bytes(index.read_bytes()[:4000])
    assert "not a TensorFlow checkpoint index" in refused(["--ckpt", tmp_path / "model.ckpt-1234", "--config", CONFIG],
                                                          tmp_path, capsys)


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "out.pt"
    out.write_bytes(b"mine")
    assert main(["import-tf", "--ckpt", str(PREFIX), "--config", str(CONFIG), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"mine"


def test_import_raises_for_python_callers():
    with pytest.raises(TFImportError, match="g_snh0/dense/kernel: shape"):
        import_tf(PREFIX, load_config(CONFIG, ["model.z_dim=8"]).model)
