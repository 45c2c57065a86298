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


def test_demo_shows_the_newest_snapshot_whose_worst_class_is_about_the_best(tmp_path, monkeypatch, capsys):
    """Scores made up per step (the real evaluation still measures the chosen one): step 1 has
    the best worst class (0.90, by shape); step 2 is within the margin of it (0.86, by colour)
    and newer; step 3, the newest, has lost a class (0.70)."""
    import hamgan.metrics.checkpoint_eval as checkpoint_eval
    from hamgan.cli.demo import CHOICE_MARGIN, CHOICE_SEED
    from hamgan.metrics.classifier import Classifiers, ImageClassifier, cache_key, cache_path, training_data
    from hamgan.config import load_config

    assert 0.90 - CHOICE_MARGIN <= 0.86 and 0.90 - CHOICE_MARGIN > 0.70
    overrides = [*TINY, "train.snapshot_every=1"]
    key = cache_key(training_data(load_config("configs/demo.toml", overrides)), 0)
    Classifiers(key, {"class": ImageClassifier("colour", 3, 32, [0, 1, 2])},
                {"class": (0.9, [0.9, 0.9, 0.9])}).save(cache_path(tmp_path / "stats", key))
    made_up = {1: ([0.5, 0.5, 0.5], [0.9, 1.0, 1.0]), 2: ([0.43, 0.5, 0.5], [1.0, 1.0, 1.0]),
               3: ([0.5, 0.5, 0.5], [1.0, 1.0, 0.7])}   # colour: ceiling 0.5, so 0.43 is 0.86 of it
    real_evaluate, scored = checkpoint_eval.evaluate_checkpoint, []

    def evaluate(ckpt, **kw):
        if kw.get("seed") != CHOICE_SEED:
            return real_evaluate(ckpt, **kw)
        step = int(str(ckpt)[-12:-3])
        scored.append(step)
        colour, shape = made_up[step]
        return {"step": step, "acc_class": sum(colour) / 3, "acc_class_per_class": colour,
                "acc_class_ceiling_per_class": [0.5] * 3, "acc_shape": sum(shape) / 3,
                "acc_shape_per_class": shape, "acc_shape_ceiling_per_class": [1.0] * 3}

    monkeypatch.setattr(checkpoint_eval, "evaluate_checkpoint", evaluate)
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu", "--num", "4", *overrides]) == 0
    out = capsys.readouterr().out
    assert scored == [1, 2, 3]
    assert "Demo done: step 2 of" in out and "class accuracy" in out
