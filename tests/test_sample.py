"""Sampling from checkpoints (hamgan.sample, `hamgan sample`): every mode's files and geometry,
reproducibility, interpolation endpoints, truncation, the .npz export, class names, damaged files.

One tiny checkpoint (32 px, 3 shape classes) is trained once for the module, then made to show
what the tests look for: after 2 steps the Hamburgers' scales are ~0 and the per-class BN tables
nearly equal, so neither the NMF bases nor the class would change the images and the tests about
them could not fail. The scales are set to 3 (G_ema) and 1 (G, D), the class tables to random
values (G's running BN variances, at TF-GAN's decay 0.999, are still ~1 after 2 steps, which
shrinks the Hamburger's normalised output in eval: hence a scale above 1)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hamgan.checkpoint import CheckpointError, load_checkpoint, load_generator, save_checkpoint
from hamgan.errors import HamganError
from hamgan.ham import NMF, record_factors
from hamgan.images import to_uint8
from hamgan.metrics.evaluate import evaluate_generator
from hamgan.sample import (class_names_of, class_sheet, dump, grid, ham_maps, interpolate, interpolate_latents,
                           parse_classes, render, samples, save_sheet, slerp, truncate, truncation_sheet)
from hamgan.train import train

from .test_train import tiny

RES, N_CLASSES, PAD = 32, 3, 2
NAMES = ["red circle", "green square", "blue triangle"]   # the shapes data set's first 3 classes
REPO = Path(__file__).resolve().parents[1]


def sheet_size(rows, cols, res=RES):
    """(width, height) of a hamgan.images grid PNG."""
    return cols * (res + PAD) + PAD, rows * (res + PAD) + PAD


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    run = train(tiny(), out=root, name="tiny", progress=False)
    payload = load_checkpoint(next((run / "checkpoints").glob("ckpt-*.pt")))
    g = torch.Generator().manual_seed(0)
    for key, sigma in (("G", 1.0), ("G_ema", 3.0), ("D", 1.0)):
        for name, value in payload[key].items():
            if name.endswith(".sigma"):
                payload[key][name] = torch.tensor(sigma)
            elif key != "D" and name.endswith((".gain", ".bias")) and value.shape[:1] == (N_CLASSES,):
                payload[key][name] = value + 0.5 * torch.randn(value.shape, generator=g)
    payload = {k: v for k, v in payload.items() if k not in ("format", "version")}
    return save_checkpoint(payload, root / "tiny.pt")


@pytest.fixture(scope="module")
def G(ckpt):
    return load_generator(ckpt)[0]


def assert_same_image(a_float, b_float):
    """Equal to float tolerance before quantisation (and so, but for rounding ties, after)."""
    torch.testing.assert_close(a_float, b_float, rtol=0, atol=1e-5)
    assert_same_quantised(to_uint8(a_float), to_uint8(b_float))


def assert_same_quantised(a, b):
    """uint8 images equal but for the odd pixel whose float value sat on a rounding boundary and
    moved by float noise (another batch size may take another conv algorithm)."""
    diff = (a.int() - b.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.005, (diff.max(), (diff > 0).float().mean())


# --------------------------------------------------------------------------- checkpoint and classes


def test_checkpoint_carries_config_and_class_names(ckpt, G):
    G2, cfg, payload = load_generator(ckpt)
    assert (G2.resolution, G2.n_classes) == (RES, N_CLASSES) and not G2.training
    assert class_names_of(payload, N_CLASSES) == NAMES
    assert class_names_of({}, 2) == ["0", "1"]


def test_class_names_and_indices_map_to_the_right_classes():
    assert parse_classes("blue triangle,0, Green Square", NAMES) == [2, 0, 1]
    assert parse_classes(["1", 2], NAMES) == [1, 2]
    assert parse_classes("10,2", ["0", "1", "10", "2"]) == [2, 3]        # a name that is a number wins
    with pytest.raises(HamganError, match="'blue triangle'"):            # close match listed
        parse_classes("blue triangel", NAMES)
    with pytest.raises(HamganError, match="out of range"):
        parse_classes("3", NAMES)
    with pytest.raises(HamganError, match="unconditional"):
        parse_classes("0", [])


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_damaged_or_foreign_checkpoint_refused(ckpt, tmp_path, damage):
    bad = tmp_path / "bad.pt"
    data = Path(ckpt).read_bytes()
    bad.write_bytes(data[:len(data) // 2] if damage == "truncated" else os.urandom(4096))
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        load_generator(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)                       # a valid torch file, not ours
    with pytest.raises(CheckpointError, match="not a hamgan checkpoint"):
        load_generator(other)


# --------------------------------------------------------------------------- samples: grid and dump


def test_grid_geometry_and_reproducibility(G, tmp_path):
    sheet = grid(G, 10, nrow=4, seed=3, batch=4)
    assert sheet.images.shape == (10, 3, RES, RES) and sheet.images.dtype == torch.uint8
    assert sheet.y.shape == (10,) and 0 <= sheet.y.min() and sheet.y.max() < N_CLASSES
    path = save_sheet(sheet, tmp_path / "grid.png", header=["test"])
    assert Image.open(path).size == sheet_size(3, 4)
    assert path.with_suffix(".txt").read_text().startswith("test\ngrid: 10 samples")
    again = save_sheet(grid(G, 10, nrow=4, seed=3, batch=4), tmp_path / "again.png")
    assert path.read_bytes() == again.read_bytes()
    assert not torch.equal(grid(G, 10, nrow=4, seed=4, batch=4).images, sheet.images)
    given = grid(G, 5, classes=[2, 0], seed=3, batch=3)
    assert given.y.tolist() == [2, 0, 2, 0, 2]


def test_samples_are_the_images_hamgan_eval_scores(G):
    """Same (seed, batch): the samples equal what evaluate_generator feeds its Inception network."""
    seen = []

    class Recorder(torch.nn.Module):
        has_classifier, num_logits = True, 4

        def provenance(self, image_size):
            return {"backbone": "recorder", "image_size": image_size, "dims": 2}

        def forward(self, images):
            seen.append(images.clone())
            x = images.float().mean((1, 2, 3))[:, None]
            return torch.cat([x, x], 1), torch.cat([x, x, x, x], 1)

    evaluate_generator(G, num_samples=7, batch_size=3, seed=5, inception=Recorder(), progress=False, splits=1)
    ours = torch.cat([im for im, _ in samples(G, 7, seed=5, batch=3)])
    assert torch.equal(torch.cat(seen), ours)


def test_dump_png_and_npz_round_trip(G, tmp_path):
    out = dump(G, tmp_path / "d", 7, class_names=NAMES, seed=1, batch=3, progress=False)
    with np.load(out["npz"]) as f:
        images, labels, names = f["images"], f["labels"], f["class_names"]
    assert images.shape == (7, RES, RES, 3) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert names.tolist() == NAMES and labels.shape == (7,)
    pngs = sorted((tmp_path / "d").glob("*/*.png"))
    assert len(pngs) == 7 and sorted(out["folders"]) == sorted({NAMES[c] for c in labels})
    for png in pngs:                                                     # folder = class, name = index
        i = int(png.stem)
        assert png.parent.name == NAMES[labels[i]]
        assert np.array_equal(np.asarray(Image.open(png)), images[i])
    ref = torch.cat([im for im, _ in samples(G, 7, seed=1, batch=3)]).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(images, ref)
    assert not list((tmp_path / "d").glob(".*tmp*"))                    # temporary files gone

    again = dump(G, tmp_path / "e", 7, class_names=NAMES, seed=1, batch=3, progress=False)
    assert Path(again["npz"]).read_bytes() == Path(out["npz"]).read_bytes()
    assert all((tmp_path / "e" / p.relative_to(tmp_path / "d")).read_bytes() == p.read_bytes() for p in pngs)
    with pytest.raises(HamganError, match="not empty"):
        dump(G, tmp_path / "d", 2, progress=False)


def test_dump_formats_and_given_classes(G, tmp_path):
    out = dump(G, tmp_path / "p", 5, format="png", classes=[1], class_names=NAMES, progress=False)
    assert out["npz"] is None and out["folders"] == ["green square"]
    assert len(list((tmp_path / "p" / "green square").glob("*.png"))) == 5
    out = dump(G, tmp_path / "n", 5, format="npz", classes=[0, 2], progress=False)
    assert out["png_dir"] is None and not list((tmp_path / "n").rglob("*.png"))
    with np.load(out["npz"]) as f:
        assert f["labels"].tolist() == [0, 2, 0, 2, 0] and f["class_names"].tolist() == ["0", "1", "2"]


# --------------------------------------------------------------------------- sheets


def test_sheet_images_depend_on_their_own_z_and_class_only(G):
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(5, G.z_dim, generator=g), torch.tensor([0, 1, 2, 1, 0])
    together = render(G, z, y, seed=2, batch=5)
    alone = torch.cat([render(G, z[i:i + 1], y[i:i + 1], seed=2, batch=1) for i in reversed(range(5))]).flip(0)
    assert_same_image(together, alone)
    # the bases matter (so the equality above is no accident) and come from the seed
    other = render(G, z, y, seed=3, batch=5)
    assert (to_uint8(other).int() - to_uint8(together).int()).abs().max() > 2
    assert torch.equal(render(G, z, y, seed=2, batch=2), render(G, z, y, seed=2, batch=2))


def test_class_sheet_rows_are_classes_with_a_fixed_z_per_column(G, tmp_path):
    sheet = class_sheet(G, [2, 0], 3, seed=1)
    assert sheet.images.shape == (6, 3, RES, RES) and sheet.nrow == 3
    assert sheet.y.tolist() == [2, 2, 2, 0, 0, 0]
    assert torch.equal(sheet.z[:3], sheet.z[3:])
    direct = render(G, sheet.z[4:5], torch.tensor([0]), seed=1, batch=1)
    assert_same_quantised(to_uint8(direct), sheet.images[4:5])
    assert Image.open(save_sheet(sheet, tmp_path / "c.png")).size == sheet_size(2, 3)
    full = class_sheet(G, columns=2, seed=1, truncation=0.5)                 # all classes, truncated z
    assert full.images.shape[0] == N_CLASSES * 2 and full.z.abs().max() <= 0.5
    assert torch.equal(class_sheet(G, [2, 0], 3, seed=1).images, sheet.images)
    assert not torch.equal(class_sheet(G, [2, 0], 3, seed=2).images, sheet.images)


@pytest.mark.parametrize("kind", ["linear", "slerp"])
def test_z_interpolation_endpoints_equal_direct_samples(G, kind):
    steps = 5
    sheet = interpolate(G, "z", num=2, steps=steps, kind=kind, classes=[1, 2], seed=4, batch=3)
    assert sheet.images.shape == (2 * steps, 3, RES, RES) and sheet.nrow == steps
    assert sheet.y.tolist() == [1] * steps + [2] * steps
    for row in range(2):
        for end in (row * steps, row * steps + steps - 1):
            direct = render(G, sheet.z[end:end + 1], sheet.y[end:end + 1], seed=4, batch=1)
            assert_same_quantised(to_uint8(direct), sheet.images[end:end + 1])
    z0, z1 = sheet.z[0], sheet.z[steps - 1]
    assert not torch.equal(z0, z1) and not torch.equal(sheet.images[0], sheet.images[2])


def test_class_interpolation_endpoints_equal_the_labelled_samples(G):
    sheet = interpolate(G, "class", num=1, steps=4, classes=[0, 2], seed=5)
    z = sheet.z[:1]
    assert torch.equal(sheet.z, z.repeat(4, 1))                            # a fixed z along the strip
    first = render(G, z, torch.tensor([0]), seed=5, batch=1)
    last = render(G, z, torch.tensor([2]), seed=5, batch=1)
    assert_same_quantised(to_uint8(first), sheet.images[:1])
    assert_same_quantised(to_uint8(last), sheet.images[3:])
    assert not torch.equal(sheet.images[0], sheet.images[3])
    random_pairs = interpolate(G, "class", num=3, steps=2, seed=5)
    assert random_pairs.images.shape[0] == 6


def test_interpolated_latents_keep_endpoints_and_slerp_keeps_norms():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 128, generator=g), torch.randn(4, 128, generator=g)
    for kind in ("linear", "slerp"):
        path = interpolate_latents(z0, z1, 9, kind)
        assert path.shape == (4, 9, 128)
        assert torch.equal(path[:, 0], z0) and torch.equal(path[:, -1], z1)
    norms = interpolate_latents(z0, z1, 9, "slerp").norm(dim=2)
    low = torch.minimum(z0.norm(dim=1), z1.norm(dim=1))[:, None]
    high = torch.maximum(z0.norm(dim=1), z1.norm(dim=1))[:, None]
    assert (norms >= low - 1e-4).all() and (norms <= high + 1e-4).all()
    assert (interpolate_latents(z0, z1, 9, "linear")[:, 4].norm(dim=1) < 0.85 * low[:, 0]).all()  # the dip slerp avoids
    t = torch.tensor([0.0, 0.3, 1.0])
    torch.testing.assert_close(slerp(z0, z0, t)[:, 1], z0)                # parallel: no NaN
    torch.testing.assert_close(slerp(z0, 2 * z0, t)[:, 1], 1.3 * z0)
    with pytest.raises(HamganError):
        interpolate_latents(z0, z1, 1)


def test_truncation_reduces_the_spread_of_z():
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    stds = []
    for T in (2.0, 1.0, 0.5, 0.25):
        zt = truncate(z, T)
        assert zt.abs().max() <= T
        stds.append(zt.std().item())
    assert stds == sorted(stds, reverse=True)
    assert abs(stds[1] - 0.5379) < 0.01              # sd of N(0, 1) truncated to [-1, 1]
    assert truncate(z, float("inf")).equal(z)
    # the same z at several T: signs kept, magnitudes shrink with T
    assert torch.equal(truncate(z, 0.5).sign(), z.sign())
    assert (truncate(z, 0.5).abs() <= truncate(z, 1.0).abs()).all()
    with pytest.raises(HamganError):
        truncate(z, 0.0)


def test_truncation_sheet(G, tmp_path):
    levels = (float("inf"), 1.0, 0.25)
    sheet = truncation_sheet(G, levels, num=2, classes=[1], seed=6)
    assert sheet.images.shape == (6, 3, RES, RES) and sheet.nrow == 3 and sheet.y.tolist() == [1] * 6
    z = sheet.z.view(2, 3, -1)
    assert z[:, 1].abs().max() <= 1.0 and z[:, 2].abs().max() <= 0.25
    assert z[:, 0].std() > z[:, 1].std() > z[:, 2].std()
    assert torch.equal(z[:, 2], truncate(z[:, 0], 0.25))               # one z per row, seen at each T
    direct = render(G, z[1, 0:1], torch.tensor([1]), seed=6, batch=1)
    assert_same_quantised(to_uint8(direct), sheet.images[3:4])
    assert Image.open(save_sheet(sheet, tmp_path / "t.png")).size == sheet_size(2, 3)


# --------------------------------------------------------------------------- ham maps


def test_recording_factors_changes_nothing_and_reconstructs_the_output():
    ham = NMF(6, 3, steps=4).eval()
    x = torch.rand(2, 6, 10)
    torch.manual_seed(0)
    plain = ham(x)
    with record_factors(ham) as found:
        torch.manual_seed(0)
        recorded = ham(x)
        last = found[""].last
    assert torch.equal(plain, recorded)
    assert last["x"].shape == (2, 6, 10) and last["bases"].shape == (2, 6, 3) and last["coef"].shape == (2, 10, 3)
    torch.testing.assert_close(torch.bmm(last["bases"], last["coef"].transpose(1, 2)), plain)
    assert ham.last is None and not ham.record                            # nothing kept outside
    torch.manual_seed(0)
    shared = ham(torch.cat([x[:1], x[:1]]), bases="shared")
    assert torch.equal(shared[0], shared[1]) and not torch.equal(ham(torch.cat([x[:1], x[:1]]))[0], shared[1])


def test_ham_maps_sheets(G, ckpt, tmp_path):
    from hamgan.checkpoint import load_state
    from hamgan.models import build_discriminator
    _, cfg, payload = load_generator(ckpt)
    D = build_discriminator(cfg.model)
    load_state(D, payload["D"], "D")
    sheets = ham_maps(G, 3, D=D.eval(), class_names=NAMES, seed=2)
    assert sorted(sheets) == ["D_0_16px", "G_0_16px"]
    rank = 4                                                             # tiny config: rank=4
    for name, sheet in sheets.items():
        assert sheet.nrow == 3 + rank and sheet.images.shape == (3 * (3 + rank), 3, RES, RES)
        assert Image.open(save_sheet(sheet, tmp_path / f"{name}.png")).size == sheet_size(3, 3 + rank)
    first = next(samples(G, 3, seed=2, batch=3))[0]                     # rows show the first samples
    assert torch.equal(sheets["G_0_16px"].images[0::3 + rank], first)
    assert torch.equal(ham_maps(G, 3, seed=2)["G_0_16px"].images, sheets["G_0_16px"].images)
    assert all(m.last is None for m in G.modules() if isinstance(m, NMF))


# --------------------------------------------------------------------------- command line


def cli(*args, check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "hamgan", "sample", *map(str, args), "--device", "cpu"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_cli_grid_and_no_ema(ckpt, G, tmp_path):
    args = ["--mode", "grid", "--num", 6, "--nrow", 3, "--seed", 2, "--classes", "blue triangle,0"]
    done = cli("--ckpt", ckpt, "--out", tmp_path / "a", *args)
    assert f"wrote {tmp_path / 'a' / 'grid.png'}" in done.stdout
    assert Image.open(tmp_path / "a" / "grid.png").size == sheet_size(2, 3)
    ema = save_sheet(grid(G, 6, nrow=3, classes=[2, 0], seed=2), tmp_path / "ema.png")    # G_ema by default
    assert (tmp_path / "a" / "grid.png").read_bytes() == ema.read_bytes()
    cli("--ckpt", ckpt, "--out", tmp_path / "b", *args, "--no-ema")
    G_raw = load_generator(ckpt, use_ema=False)[0]
    raw = save_sheet(grid(G_raw, 6, nrow=3, classes=[2, 0], seed=2), tmp_path / "raw.png")
    assert (tmp_path / "b" / "grid.png").read_bytes() == raw.read_bytes() != ema.read_bytes()


def test_cli_dump_and_interpolation(ckpt, G, tmp_path):
    done = cli("--ckpt", ckpt, "--out", tmp_path / "d", "--mode", "dump", "--num", 5, "--batch", 2,
               "--format", "npz", "--no-progress")
    assert "samples.npz" in done.stdout and not list((tmp_path / "d").rglob("*.png"))
    parts = list(samples(G, 5, batch=2))
    with np.load(tmp_path / "d" / "samples.npz") as f:
        assert np.array_equal(f["images"], torch.cat([im for im, _ in parts]).permute(0, 2, 3, 1).numpy())
        assert f["labels"].tolist() == torch.cat([y for _, y in parts]).tolist()
    cli("--ckpt", ckpt, "--out", tmp_path / "i", "--mode", "interpolation", "--num", 2, "--steps", 4,
        "--interp", "linear")
    assert Image.open(tmp_path / "i" / "interp_z_linear.png").size == sheet_size(2, 4)
    assert Image.open(tmp_path / "i" / "interp_class.png").size == sheet_size(2, 4)


def test_cli_errors_exit_2_without_traceback(ckpt, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(Path(ckpt).read_bytes()[:1000])
    done = cli("--ckpt", bad, "--out", tmp_path / "o", "--mode", "grid", check=False)
    assert done.returncode == 2 and "damaged or not a checkpoint" in done.stderr and "Traceback" not in done.stderr
    done = cli("--ckpt", ckpt, "--out", tmp_path / "o", "--mode", "grid", "--classes", "red circel", check=False)
    assert done.returncode == 2 and "'red circle'" in done.stderr and "Traceback" not in done.stderr
