"""Portable model folders (`hamgan export`, hamgan.export), `hamgan.from_pretrained`, the torch.hub
entry points (hubconf.py), and `hamgan sample` / `hamgan eval` reading a folder: the same bytes as
from the checkpoint, the recorded evaluations in the model card, refusals of bad input.

A tiny checkpoint (32 px, 3 classes) is made without training: G from the initialiser, G_ema
= G plus noise and its Hamburger scale set to 1 (so G and G_ema give different images, and the
Hamburger's NMF shows in them)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import hamgan
from hamgan.checkpoint import LEGACY_MODEL, CheckpointError, save_checkpoint
from hamgan.cli import main
from hamgan.config import load_config, to_dict
from hamgan.errors import HamganError
from hamgan.export import export, load_export
from hamgan.metrics.inception import ENV_VAR, WEIGHTS_FILE, write_random_weights
from hamgan.models import build_discriminator, build_generator

from .test_train import TINY

REPO = Path(__file__).resolve().parents[1]
MODEL_OVERRIDES = [o for o in TINY if o.startswith("model.")]
NAMES = ["red circle", "green square", "blue triangle"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """run/checkpoints/ckpt-000000007.pt with G, G_ema, D, class names; and an in-training
    evaluation of step 7 in run/metrics.jsonl."""
    torch.manual_seed(0)
    cfg = load_config(None, TINY)
    G, G_ema, D = build_generator(cfg.model), build_generator(cfg.model), build_discriminator(cfg.model)
    with torch.no_grad():
        for p in G_ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
        G_ema.context[1][0].sigma.fill_(1.0)
    run = tmp_path_factory.mktemp("run")
    path = save_checkpoint({"config": to_dict(cfg), "step": 7, "G": G.state_dict(), "D": D.state_dict(),
                            "G_ema": G_ema.state_dict(), "class_names": NAMES, "best_fid": 55.5, "best_step": 7},
                           run / "checkpoints" / "ckpt-000000007.pt")
    rows = [{"step": 6, "eval/fid": 60.0}, {"step": 7, "loss/G": 1.0},
            {"step": 7, "eval/fid": 55.5, "eval/is_mean": 2.5}]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n{\"step\": 7, \"eval/fi")
    return path


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    return export(ckpt, tmp_path_factory.mktemp("exp") / "model", weights="both", sheet_rows=2)


def sample_bytes(source, out: Path, *extra) -> bytes:
    assert main(["sample", "--ckpt", str(source), "--out", str(out), "--mode", "grid", "--num", "6", "--seed", "3",
                 "--device", "cpu", *extra]) == 0
    return (out / "grid.png").read_bytes()


@pytest.mark.parametrize("which", [[], ["--no-ema"]])
def test_sample_from_folder_gives_the_checkpoints_bytes(ckpt, exported, tmp_path, which):
    a = sample_bytes(ckpt, tmp_path / "a", *which)
    b = sample_bytes(exported, tmp_path / "b", *which)
    assert a == b
    other = sample_bytes(ckpt, tmp_path / "c", *(["--no-ema"] if not which else []))
    assert a != other                     # G and G_ema differ: the test sees which one was exported


def test_folder_holds_the_checkpoint(ckpt, exported):
    payload, loaded = torch.load(ckpt, weights_only=True), load_export(exported)
    assert loaded["config"] == payload["config"] and loaded["step"] == 7 and loaded["class_names"] == NAMES
    for net in ("G_ema", "G"):
        assert loaded[net].keys() == payload[net].keys()
        for k, v in payload[net].items():
            assert torch.equal(loaded[net][k], v) and loaded[net][k].dtype == v.dtype, (net, k)
    meta = json.loads((exported / "config.json").read_text())
    assert meta["weights"] == ["G_ema", "G"] and meta["provenance"]["checkpoint"] == str(ckpt.resolve())
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "class_sheet.png", "class_sheet.txt",
                                                          "config.json", "model.safetensors"]
    assert "row 1: class 1 (green square)" in (exported / "class_sheet.txt").read_text()   # classes 0 and 1 of 3


def test_from_pretrained_reads_folder_safetensors_and_checkpoint(ckpt, exported):
    z, y = torch.randn(2, 128, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2])

    def images(source, ema=True):
        G = hamgan.from_pretrained(source, ema=ema)
        assert not G.training
        torch.manual_seed(5)                       # the NMF bases
        with torch.no_grad():
            return G(z, y)

    ref = images(ckpt)
    assert torch.equal(images(exported), ref) and torch.equal(images(exported / "model.safetensors"), ref)
    assert torch.equal(images(exported, ema=False), images(ckpt, ema=False))
    assert not torch.equal(images(exported, ema=False), ref)


def test_exporting_one_generator(ckpt, tmp_path):
    out = export(ckpt, tmp_path / "g", weights="G", sheet_rows=0)
    loaded = load_export(out)
    assert loaded["G_ema"] is None and loaded["G"] is not None and not (out / "class_sheet.png").exists()
    assert json.loads((out / "config.json").read_text())["weights"] == ["G"]
    assert "class_sheet" not in (out / "README.md").read_text()
    assert not hamgan.from_pretrained(out, ema=True).training           # G stands in for the missing G_ema
    ema_only = export(ckpt, tmp_path / "e", sheet_rows=0)
    with pytest.raises(CheckpointError, match=r"holds no G weights, only G_ema: use it"):
        hamgan.from_pretrained(ema_only, ema=False)


def test_model_card_records_evaluations_with_their_protocol(ckpt, tmp_path):
    result, older = tmp_path / "paper.json", tmp_path / "older.json"
    protocol = {"name": "paper", "generator": "G", "num_samples": 50176, "quantized": False}
    result.write_text(json.dumps({"ckpt": str(ckpt), "step": 7, "fid": 14.77, "is_mean": 58.7, "is_std": None,
                                  "num_samples": 50176, "protocol": protocol}))
    older.write_text(json.dumps({"ckpt": str(ckpt), "step": 7, "fid": 20.0, "num_samples": 50000, "ema": True,
                                 "protocol": "studiogan"}))        # `hamgan eval --out` before protocol objects
    out = export(ckpt, tmp_path / "m", results=[result, older], sheet_rows=0)
    card = (out / "README.md").read_text()
    assert "| metrics.jsonl (during training) | 7 | - | - | 55.50 | 2.50 |" in card   # step 6 and the cut line ignored
    assert "| paper.json | 7 | G | 50176 | 14.77 | 58.70 |" in card
    assert "| older.json | 7 | G_ema | 50000 | 20.00 | - |" in card
    assert json.dumps(protocol, indent=1, sort_keys=True) in card
    assert "Protocol of metrics.jsonl (during training):\nnot recorded" in card
    assert "Protocol of older.json:\nnamed `studiogan` only" in card
    assert "- steps: 7 of 2 (batch 4" in card and "best in-training FID: 55.50 at step 7" in card
    evaluations = json.loads((out / "config.json").read_text())["evaluations"]
    assert [e["fid"] for e in evaluations] == [55.5, 14.77, 20.0] and evaluations[1]["protocol"] == protocol


def test_bad_exports_are_refused_and_leave_nothing(ckpt, tmp_path, capsys, monkeypatch):
    wrong = tmp_path / "other.json"
    wrong.write_text(json.dumps({"ckpt": "x.pt", "step": 9, "fid": 3.0}))
    for args, message in [(["--results", str(wrong)], "evaluates step 9 (x.pt), but .* is step 7"),
                          (["--weights", "G_ema", "--results", str(ckpt)], "cannot read it as JSON")]:
        assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "x"), *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "hamgan export: error: --results" in err
    full = tmp_path / "full"
    (full / "keep.txt").parent.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(HamganError, match="exists and is not empty"):
        export(ckpt, full)
    no_ema = tmp_path / "no_ema.pt"
    payload = torch.load(ckpt, weights_only=True)
    save_checkpoint({**payload, "G_ema": None}, no_ema)
    with pytest.raises(HamganError, match="holds only G"):
        export(no_ema, tmp_path / "y", weights="G_ema")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("hamgan.model_card.model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export(ckpt, tmp_path / "z", sheet_rows=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "no_ema.pt", "other.json"]


def test_old_checkpoint_exports_with_its_semantics(tmp_path):
    """A checkpoint written before format 2 (torch BN, exact SN; see test_checkpoint.py) keeps them."""
    old = Path(__file__).resolve().parent / "data" / "checkpoint_v1.pt"
    out = export(old, tmp_path / "old", sheet_rows=0)
    meta = json.loads((out / "config.json").read_text())
    assert meta["checkpoint_version"] == 2 and meta["config"]["model"]["sn"] == "exact"
    # a folder whose config predates keys added by a newer checkpoint format gets their legacy values
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    for key in LEGACY_MODEL[2]:
        del meta["config"]["model"][key]
    (legacy / "config.json").write_text(json.dumps({**meta, "checkpoint_version": 1}))
    z, y = torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2])
    outputs = []
    for source in (old, out, legacy):
        torch.manual_seed(2)
        with torch.no_grad():
            outputs.append(hamgan.from_pretrained(source)(z, y))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_damaged_or_foreign_folders_are_refused(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])        # a partial download
    with pytest.raises(CheckpointError, match="model.safetensors is damaged or incomplete"):
        hamgan.from_pretrained(copy)
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="not an exported hamgan model: config.json missing"):
        hamgan.from_pretrained(copy)
    with pytest.raises(CheckpointError, match="not an exported hamgan model: config.json and model.safetensors"):
        hamgan.from_pretrained(tmp_path / "copy" / "..")


def test_eval_reads_a_folder_and_its_result_goes_into_a_model_card(ckpt, exported, tmp_path, monkeypatch):
    """(That the folder's generator is the checkpoint's is shown by the sample bytes above.)"""
    monkeypatch.setenv(ENV_VAR, str(write_random_weights(tmp_path / WEIGHTS_FILE, seed=2)))
    out = tmp_path / "result.json"
    assert main(["eval", "--ckpt", str(exported), "--num", "4", "--batch", "4", "--device", "cpu",
                 "--no-extras", "--no-progress", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_samples"] == 4 and result["step"] == 7 and result["ema"] and result["is_mean"] is not None
    card = (export(ckpt, tmp_path / "m", results=[out], sheet_rows=0) / "README.md").read_text()
    assert f"| result.json | 7 | G_ema | 4 | - | {result['is_mean']:.2f} |" in card


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))      # torch.hub's folder is $TORCH_HOME/hub
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub"


def test_torch_hub_load_offline(ckpt, exported, hub_dir, monkeypatch):
    z, y = torch.randn(2, 128, generator=torch.Generator().manual_seed(1)), torch.tensor([1, 2])

    def images(G):
        torch.manual_seed(5)
        with torch.no_grad():
            return G(z, y)

    ref = images(hamgan.from_pretrained(ckpt))
    for weights in (exported, exported / "model.safetensors", ckpt, (exported / "model.safetensors").as_uri()):
        G = torch.hub.load(str(REPO), "hamgan_baby", source="local", weights=str(weights), overrides=MODEL_OVERRIDES)
        assert torch.equal(images(G), ref), weights
    assert (hub_dir / "checkpoints" / "model.safetensors").is_file()       # the URL's file, cached

    G = torch.hub.load(str(REPO), "hamgan_baby", source="local", overrides=MODEL_OVERRIDES)   # no weights
    assert not torch.equal(images(G), ref) and not G.training
    with pytest.raises(CheckpointError, match=r"holds a different network than the preset: model.G.ch: weights 4, "
                                              r"preset 8"):
        torch.hub.load(str(REPO), "sagan", source="local", weights=str(exported),
                       overrides=MODEL_OVERRIDES + ["model.G.ch=8"])
    small = ["model.resolution=32", "model.n_classes=3", "model.G.ch=4", "model.D.ch=4", "model.G.context.0.rank=4",
             "model.D.context.0.at=16", "model.D.context.0.rank=4"]   # blocks that fit the small networks
    kinds = {name: {type(m).__name__ for m in torch.hub.load(str(REPO), name, source="local",
                                                             overrides=small).modules()}
             for name in ("hamgan_strong", "sagan")}
    assert "Hamburger" in kinds["hamgan_strong"] and "SelfAttention" in kinds["sagan"]
