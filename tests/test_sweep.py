"""`hamgan sweep`: points from grids and named points, and a 2-point x 1-seed sweep of a few steps
end to end (runs in child processes, one evaluation protocol, table with both rows, plot)."""
import json

import pytest
from PIL import Image

from hamgan.cli import main
from hamgan.errors import HamganError
from hamgan.sweep import expand, split_values

TINY = ["model.resolution=32", "model.n_classes=3", "model.G.ch=4", "model.D.ch=4",
        "model.G.context=[{at=16, block='ham', rank=4, steps=2}]",
        "model.D.context=[{at=16, block='ham', rank=4, steps=2}]",
        "data.shapes_classes=3", "data.shapes_size=48", "data.workers=0",
        "train.batch_size=4", "train.steps=3", "train.log_every=1", "train.sample_every=0",
        "train.snapshot_every=0", "train.eval_every=0"]


def test_values_split_at_top_level_commas_only():
    assert split_values("ham,attn") == ["ham", "attn"]
    assert split_values("[{at=16, block='ham'}], [] ,'a,b'") == ["[{at=16, block='ham'}]", "[]", "'a,b'"]


def test_points_are_grid_combinations_for_each_named_point():
    points = expand(["train.lr_g=1e-4,2e-4", "model.G.ch=8,16"])
    assert [p.name for p in points] == ["lr_g=1e-4 ch=8", "lr_g=1e-4 ch=16", "lr_g=2e-4 ch=8", "lr_g=2e-4 ch=16"]
    assert points[1].overrides == ["train.lr_g=1e-4", "model.G.ch=16"]
    named = expand(["train.lr_g=1,2"], ["nmf:", "none: model.G.context=[] 'model.D.context=[]'"])
    assert [(p.name, p.overrides) for p in named] == [
        ("nmf lr_g=1", ["train.lr_g=1"]), ("nmf lr_g=2", ["train.lr_g=2"]),
        ("none lr_g=1", ["model.G.context=[]", "model.D.context=[]", "train.lr_g=1"]),
        ("none lr_g=2", ["model.G.context=[]", "model.D.context=[]", "train.lr_g=2"])]
    assert [p.slug for p in expand([], ["no context: a=1"])] == ["no_context"]
    for bad_grid, bad_point, message in ((["train.lr_g"], [], "KEY=V1,V2"), ([], ["nameless"], "NAME: KEY=V"),
                                         ([], ["x: train.steps"], "not KEY=VALUE"), ([], ["a:", "a:"], "same name")):
        with pytest.raises(HamganError, match=message):
            expand(bad_grid, bad_point)


@pytest.fixture
def inception(tmp_path_factory, monkeypatch):
    from hamgan.metrics.inception import ENV_VAR, WEIGHTS_FILE, write_random_weights
    monkeypatch.setenv(ENV_VAR, str(write_random_weights(tmp_path_factory.mktemp("w") / WEIGHTS_FILE, seed=1)))


def test_a_two_point_sweep_writes_a_table_with_both_rows(tmp_path, inception, capsys):
    from hamgan.config import load_config
    from hamgan.metrics.classifier import Classifiers, ImageClassifier, cache_key, cache_path, training_data

    out = tmp_path / "sweep"
    # stand-in classifiers cached for the sweep's data (training them is tested elsewhere)
    key = cache_key(training_data(load_config(None, TINY)), 0)
    Classifiers(key, {"class": ImageClassifier("colour", 3, 32, [0, 1, 2])},
                {"class": (0.9, [0.9, 0.9, 0.9])}).save(cache_path(out, key))
    args = ["sweep", "--grid", "train.lr_g=1e-4,3e-4", "--seeds", "1", "--out", str(out), "--num", "4",
            "--ref-num", "6", "--batch", "4", "--device", "cpu", "--no-progress", *TINY]
    assert main(args) == 0
    table = json.loads((out / "sweep.json").read_text())
    assert [row["point"] for row in table["rows"]] == ["lr_g=1e-4", "lr_g=3e-4"]
    for row in table["rows"]:
        for key in ("fid", "kid_mean", "acc_class", "sec_per_step", "peak_memory_gib"):
            mean, std = row[key]
            assert mean == mean and std == 0.0, key  # one seed: no spread
        assert row["peak_memory_gib"][0] > 0.05  # a training process's RSS, not nothing
    for p in ("lr_g=1e-4", "lr_g=3e-4"):
        result = json.loads((out / "runs" / f"{p}-s0" / "result.json").read_text())
        assert result["step"] == 3 and result["num_samples"] == 4
        assert load_config(out / "runs" / f"{p}-s0" / "config.toml").train.lr_g == float(p.split("=")[1])
    md = (out / "sweep.md").read_text()
    assert "| lr_g=1e-4 | 1 |" in md and "| lr_g=3e-4 | 1 |" in md and "class acc" in md
    with Image.open(out / "sweep.png") as im:
        assert im.format == "PNG" and im.width >= 600
    # again: nothing is retrained or re-evaluated
    stamp = (out / "runs" / "lr_g=1e-4-s0" / "result.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "runs" / "lr_g=1e-4-s0" / "result.json").stat().st_mtime_ns == stamp
    assert "| lr_g=1e-4 |" in capsys.readouterr().out


def test_a_failing_run_stops_the_sweep_with_its_error(tmp_path, inception, capsys):
    """The child process's error comes back to the sweep command (here: data that is not there)."""
    (tmp_path / "none.npz").touch()     # the config check wants it to exist; the run fails before reading it
    assert main(["sweep", "--point", "bad: data.source='/nonexistent/data'", "--out", str(tmp_path), "--stats",
                 str(tmp_path / "none.npz"), "--device", "cpu", "--no-progress", *TINY]) == 2
    assert "/nonexistent/data" in capsys.readouterr().err
