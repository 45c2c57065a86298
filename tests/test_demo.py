"""`hamgan demo` end to end at a tiny size: trains, writes the sheets, and prints its measurement
(conditional accuracy always, FID/KID with Inception weights; seeded random weights stand in)."""
from hamgan.cli import main

from .test_sweep import TINY


def test_demo_trains_samples_and_measures(tmp_path, monkeypatch, capsys):
    from hamgan.config import load_config
    from hamgan.metrics.classifier import Classifiers, ImageClassifier, cache_key, cache_path, training_data
    from hamgan.metrics.inception import ENV_VAR, WEIGHTS_FILE, write_random_weights

    monkeypatch.setenv(ENV_VAR, str(write_random_weights(tmp_path / WEIGHTS_FILE, seed=1)))
    key = cache_key(training_data(load_config("configs/demo.toml", TINY)), 0)
    Classifiers(key, {"class": ImageClassifier("colour", 3, 32, [0, 1, 2])},
                {"class": (0.9, [0.9, 0.9, 0.9])}).save(cache_path(tmp_path / "stats", key))
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu", "--num", "4", *TINY]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "demo" / "demo_samples.png").is_file() and (tmp_path / "demo" / "demo_real.png").is_file()
    assert "class accuracy" in out and "ceiling 0.9000" in out
    assert "FID" in out and "4 samples against 4 real images" in out
    assert (tmp_path / "stats" / "shapes-32px-4.npz").is_file()
