"""The training loop: losses and phases, optimisation, EMA, exact resume, DDP, accumulation, divergence,
damaged checkpoints, dry run. Tiny networks (32 px, width 4) on the procedural shapes."""
import ast
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hamgan.checkpoint import list_snapshots, load_checkpoint
from hamgan.config import load_config
from hamgan.ema import EMA
from hamgan import stats
from hamgan.loss import HingeLoss, Phase, d_hinge, g_hinge
from hamgan.rundir import find_resume
from hamgan.train import TrainingDiverged, build, learning_rates, train, train_step

from ._dist import free_port

TINY = ["model.resolution=32", "model.n_classes=3", "model.G.ch=4", "model.D.ch=4",
        "model.G.context=[{at=16, block='ham', rank=4, steps=2}]",
        "model.D.context=[{at=16, block='ham', rank=4, steps=2}]",
        "data.shapes_classes=3", "data.shapes_size=48", "data.workers=0",
        "train.batch_size=4", "train.steps=2", "train.log_every=1", "train.sample_every=0",
        "train.snapshot_every=0", "train.eval_every=0", "train.ema_start=1", "train.ema_decay=0.9"]


def tiny(*overrides):
    return load_config(None, TINY + list(overrides))


def assert_same_state(a, b, exact=True, what=""):
    """Nested dicts/lists of tensors and numbers are equal (bit for bit, or to float tolerance)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_same_state(a[k], b[k], exact, f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, exact, f"{what}[{i}]")
    elif isinstance(a, torch.Tensor):
        if exact:
            assert torch.equal(a, b), what
        else:
            # float reduction-order noise scales with the tensor's magnitude, not each element's
            scale = b.abs().max().item() if b.is_floating_point() and b.numel() else 0.0
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0), msg=what)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), what


TRAINED = ("G", "D", "G_ema", "opt_G", "opt_D")


def last_snapshot(run_dir):
    return load_checkpoint(list_snapshots(run_dir / "checkpoints")[-1])

# Comparing runs whose gradients agree only to float reduction order needs an optimizer that does
# not amplify that noise: Adam divides each gradient by its own magnitude, so the (theoretically
# zero) gradients of conv biases before batch norm turn into full-size random steps. A large eps
# makes Adam's update ~ lr * grad there; the larger lr keeps the steps clearly visible.
LINEAR_ADAM = ["train.eps_g=1.0", "train.eps_d=1.0", "train.lr_g=0.05", "train.lr_d=0.05"]
# resume, processes and accumulation rounds are tested with augmentation on: it must follow them too
AUGMENT = "train.augment='color,translation,cutout'"


def assert_moved(state, cfg, at_least=1e-3):
    """The weights really changed from their initial values (so equality is no accident)."""
    from hamgan.models import build_discriminator, build_generator
    from hamgan.rng import seed_everything
    seed_everything(cfg.train.seed)
    init = {"G": build_generator(cfg.model).state_dict(), "D": build_discriminator(cfg.model).state_dict()}
    for net in ("G", "D"):
        moved = max((state[net][k] - v).abs().max().item() for k, v in init[net].items() if v.is_floating_point())
        assert moved > at_least, net


# --------------------------------------------------------------------------- losses and EMA


def test_hinge_values_on_hand_made_scores():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
    loss_real, loss_fake = d_hinge(real, fake)
    assert loss_real.item() == pytest.approx((0 + 0.5 + 2.0) / 3)   # relu(1 - x)
    assert loss_fake.item() == pytest.approx((0 + 1.0 + 2.5) / 3)   # relu(1 + x)
    assert g_hinge(fake).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)


def test_ema_follows_its_formula_and_copies_before_start():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9, start=2)
    history = []
    for step in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))                                     # moves BN running statistics
        history.append([p.detach().clone() for p in model.parameters()])
        ema.update(model, step)
    expect = history[1]                                              # steps 0, 1 < start: copies
    for step in (2, 3):
        expect = [0.9 * e + 0.1 * p for e, p in zip(expect, history[step])]
    for e, s in zip(expect, ema.shadow.parameters()):
        torch.testing.assert_close(s, e)
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)   # buffers carried over
    assert not ema.shadow.training and not any(p.requires_grad for p in ema.shadow.parameters())


# --------------------------------------------------------------------------- the loop optimises


def test_discriminator_steps_reduce_its_loss_on_a_fixed_batch():
    training, runner, _ = build(tiny(), torch.device("cpu"))
    images = torch.stack([runner.loader.dataset[i][0] for i in range(4)])
    runner.loader = itertools.repeat((images, torch.tensor([0, 1, 2, 0])))
    d_phase = runner.loss.phases[0]
    losses = []
    for _ in range(8):   # all at step 0: the same latents, bases and real batch every time
        collector = stats.Collector()
        with collector.step(0):
            runner.run(d_phase, 0)
        means, _ = collector.summary()
        losses.append(means["loss/D_real"] + means["loss/D_fake"])
    assert training.step == 0 and losses[-1] < 0.8 * losses[0], losses


# --------------------------------------------------------------------------- resume


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "hamgan", *args], cwd=cwd, env=env, capture_output=True, text=True)
    return r


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path):
    common = ["train", "--out", str(tmp_path), "--no-progress", *TINY, "train.steps=6", "train.accum=2", AUGMENT]
    straight = run_cli(*common, "--name", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    first = run_cli(*common, "--name", "split", "train.steps=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli("train", "--out", str(tmp_path), "--name", "split", "--resume", "auto", "--no-progress",
                     "train.steps=6", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout + second.stderr
    a = last_snapshot(tmp_path / "straight")
    b = last_snapshot(tmp_path / "split")
    assert a["step"] == b["step"] == 6
    for key in TRAINED + ("scaler_G", "scaler_D", "data"):
        assert_same_state(a[key], b[key], exact=True, what=key)


def test_a_resumed_run_takes_adam_settings_from_its_config_and_keeps_adam_state(tmp_path):
    # Loading an optimiser's state restores the learning rate it was saved with; the override
    # the user resumed with must win (lowering the rate late in a run is the usual reason to resume).
    train(tiny("train.steps=2"), out=tmp_path, name="run", progress=False)
    point = find_resume(tmp_path, "run", "auto")
    new = tiny("train.steps=4", "train.lr_g=3e-5", "train.betas_d=[0.5, 0.99]")
    training, _, notes = build(new, torch.device("cpu"), resume=point)
    assert [g["lr"] for g in training.opt["G"].param_groups] == [3e-5]
    assert [g["betas"] for g in training.opt["D"].param_groups] == [(0.5, 0.99)]
    assert [g["lr"] for g in training.opt["D"].param_groups] == [new.train.lr_d]   # unchanged: the checkpoint's
    assert any("train.lr_g = 3e-05 from step 2 on" in n and "used 0.0001" in n for n in notes), notes
    assert any(n.startswith("note: train.betas_d") for n in notes) and not any("lr_d" in n for n in notes), notes
    saved = point.state["opt_G"]["state"]
    for i, s in training.opt["G"].state_dict()["state"].items():   # the moments are the checkpoint's
        assert torch.equal(s["exp_avg"], saved[i]["exp_avg"]) and torch.equal(s["exp_avg_sq"], saved[i]["exp_avg_sq"])
    _, _, same = build(tiny("train.steps=4"), torch.device("cpu"), resume=point)
    assert not any("train." in n for n in same), same


def test_learning_rates_fall_linearly_over_the_last_fraction_and_the_optimisers_take_them():
    t = tiny("train.steps=10", "train.lr_decay=0.4", "train.lr_g=1e-3", "train.lr_d=2e-3").train
    assert [learning_rates(t, s)["G"] for s in range(10)] == pytest.approx([1e-3] * 7 + [7.5e-4, 5e-4, 2.5e-4])
    assert learning_rates(t, 9)["D"] == pytest.approx(5e-4)
    assert learning_rates(tiny("train.steps=10").train, 9) == {"G": 1e-4, "D": 4e-4}   # 0: constant
    assert learning_rates(tiny("train.steps=3", "train.lr_decay=0.1").train, 2)["G"] == 1e-4   # under a step: none
    training, runner, _ = build(tiny("train.steps=4", "train.lr_decay=0.75"), torch.device("cpu"))
    for _ in range(4):
        train_step(training, runner)
    assert training.opt["G"].param_groups[0]["lr"] == pytest.approx(1e-4 / 3)   # the last step: 1/3 of the rate
    assert training.opt["D"].param_groups[0]["lr"] == pytest.approx(4e-4 / 3)


# --------------------------------------------------------------------------- the split of the global batch


def _ddp_worker(rank, world, port, out, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(tiny(*overrides), out=out, name="ddp", progress=False, device="cpu")


def assert_same_training(run_a, run_b, cfg):
    """Two runs ended with the same networks and optimizer states (to float reduction order),
    which moved away from their initial values."""
    a, b = last_snapshot(run_a), last_snapshot(run_b)
    for key in TRAINED:
        assert_same_state(a[key], b[key], exact=False, what=key)
    assert_moved(b, cfg)


def test_ddp_on_two_processes_equals_one_process_with_the_whole_batch(tmp_path):
    # The runs agree to float reduction order, which moves D's inputs by ~1e-6: a ReLU unit of D
    # that close to 0 switches between the runs and changes G's gradient at a few pixels by O(1).
    # How many units lie that close depends on the weights (with seed 0 and the official "at
    # most 1" spectral norm, one does); with seed 1 none does.
    overrides = ["train.batch_size=6", "train.steps=2", "train.seed=1", AUGMENT, *LINEAR_ADAM]
    mp.start_processes(_ddp_worker, args=(2, free_port(), str(tmp_path), overrides), nprocs=2,
                       start_method="spawn")
    train(tiny(*overrides), out=tmp_path, name="single", progress=False, device="cpu")
    assert_same_training(tmp_path / "ddp", tmp_path / "single", tiny(*overrides))


def test_accumulation_equals_one_big_batch(tmp_path, monkeypatch):
    """2 rounds x 3 images == 1 x 6, given fixed batch-norm statistics: under accumulation G's BN
    statistics are those of each micro-batch (as in BigGAN-PyTorch); everything else (latents,
    bases, data, loss scaling, gradient sums) must match exactly."""
    import torch.nn.functional as F
    from hamgan import layers

    def fixed_stats(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)

    monkeypatch.setattr(layers.BatchNorm2d, "normalise", fixed_stats)
    # seed 1: as in the DDP test, no ReLU unit of D lies within reduction-order noise of 0 on
    # the trajectory of PyTorch's plain Adam (fused Adam's rounding takes another one, where one does)
    common = ("train.batch_size=6", "train.seed=1", AUGMENT, "train.fast=false", *LINEAR_ADAM)
    train(tiny("train.accum=2", *common), out=tmp_path, name="accum", progress=False)
    train(tiny(*common), out=tmp_path, name="whole", progress=False)
    assert_same_training(tmp_path / "accum", tmp_path / "whole", tiny(*common))


def test_augmentation_shows_d_every_image_augmented_in_both_phases():
    """With train.augment, D's input in each phase is its input without augmentation passed
    through DiffAugment, real and fake as separate global batches seeded from (seed, step,
    phase, repeat); in the G phase the gradient reaches G through it."""
    from hamgan.augment import DiffAugment
    from hamgan.rng import derive_seed
    from hamgan.train import build, train_step

    def one_step(*overrides):
        training, runner, _ = build(tiny("train.batch_size=4", *overrides), torch.device("cpu"))
        seen = []
        training.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
        train_step(training, runner)
        return seen, [p.grad.clone() for p in training.G.parameters()]

    plain, g_plain = one_step()
    augmented, g_augmented = one_step(AUGMENT)
    policy = DiffAugment("color,translation,cutout")
    for x, got, phase in zip(plain, augmented, ("D", "G")):
        seed = derive_seed(0, 0, phase, 0, "augment")
        shares = x.split(4)
        assert len(shares) == (2 if phase == "D" else 1)
        want = torch.cat([policy(share, derive_seed(seed, i), (0, 4)) for i, share in enumerate(shares)])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert sum(g.abs().sum() for g in g_augmented) > 0
    assert any(not torch.allclose(a, b) for a, b in zip(g_plain, g_augmented))


# --------------------------------------------------------------------------- failures


class NaNAtStep4(HingeLoss):
    """The hinge loss, except that the G loss of the 4th step is NaN (as after an fp16 overflow)."""

    g_updates = 0

    def accumulate(self, phase, batch, G, D):
        loss = super().accumulate(phase, batch, G, D)
        if phase.name == "G":
            self.g_updates += 1
            if self.g_updates == 4:
                loss = loss * math.nan
                stats.report("loss/G", loss)
        return loss


def test_nan_stops_the_run_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    cfg = tiny("train.steps=6", "train.snapshot_every=2", "train.log_every=1")
    with pytest.raises(TrainingDiverged, match=r"loss/G became non-finite at step 4") as err:
        train(cfg, out=tmp_path, name="nan", progress=False, loss=NaNAtStep4())
    snaps = list_snapshots(tmp_path / "nan" / "checkpoints")
    assert [p.name for p in snaps] == ["ckpt-000000002.pt"]
    assert str(snaps[-1]) in str(err.value)
    assert all(torch.isfinite(v).all() for v in load_checkpoint(snaps[-1])["G"].values()
               if v.is_floating_point())


class HingeR1(HingeLoss):
    """A regulariser written outside the package: the hinge loss plus R1 (Mescheder et al. 2018),
    gamma/2 E|grad_x D(x)|^2 on real images, as its own D phase every 2nd step (lazy
    regularisation, scaled by the interval)."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma
        self.phases.append(Phase("D_r1", "D", interval=2, real=True))

    def accumulate(self, phase, batch, G, D):
        if phase.name != "D_r1":
            return super().accumulate(phase, batch, G, D)
        real = batch.real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(D(real, batch.real_y).sum(), real, create_graph=True)
        penalty = grad.square().sum((1, 2, 3)).mean()
        stats.report("loss/R1", penalty)
        return penalty * (self.gamma / 2 * phase.interval)


def test_an_extra_phase_from_outside_the_package_trains_and_resumes_exactly(tmp_path):
    """R1 every 2nd step: reported on the steps it runs, takes its own real batches, changes D,
    and the run still resumes bit for bit."""
    cfg = tiny("train.steps=4", "train.snapshot_every=2")
    train(cfg, out=tmp_path, name="r1", progress=False, loss=HingeR1(gamma=10.0))
    rows = [json.loads(line) for line in (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss/R1" in r] == [1, 3]                  # steps 0 and 2, 0-based
    assert all(r["loss/R1"] > 0 for r in rows if "loss/R1" in r)
    r1 = last_snapshot(tmp_path / "r1")
    assert r1["data"]["batches_consumed"] == 4 + 2                                 # D every step, R1 twice
    train(cfg, out=tmp_path, name="plain", progress=False)
    plain = last_snapshot(tmp_path / "plain")
    assert not torch.equal(r1["D"]["linear.bias"], plain["D"]["linear.bias"])

    (tmp_path / "r1" / "checkpoints" / "ckpt-000000004.pt").unlink()               # back to step 2
    train(cfg, out=tmp_path, name="r1", resume="auto", progress=False, loss=HingeR1(gamma=10.0))
    for key in TRAINED + ("data",):
        assert_same_state(last_snapshot(tmp_path / "r1")[key], r1[key], exact=True, what=key)


def test_truncated_checkpoint_is_skipped_by_resume_auto(tmp_path, capsys):
    train(tiny("train.steps=4", "train.snapshot_every=2"), out=tmp_path, name="run", progress=False)
    snaps = list_snapshots(tmp_path / "run" / "checkpoints")
    assert [p.name for p in snaps] == ["ckpt-000000002.pt", "ckpt-000000004.pt"]
    snaps[-1].write_bytes(snaps[-1].read_bytes()[:5000])              # killed mid-copy
    train(tiny("train.steps=5", "train.snapshot_every=2"), out=tmp_path, name="run", resume="auto",
          progress=False)
    out = capsys.readouterr()
    assert "ckpt-000000004.pt is damaged" in out.out + out.err
    assert "resumed from" in out.out + out.err and "ckpt-000000002.pt" in out.out + out.err
    assert last_snapshot(tmp_path / "run")["step"] == 5


def test_resuming_with_a_different_network_is_refused(tmp_path):
    from hamgan.checkpoint import CheckpointError
    train(tiny(), out=tmp_path, name="run", progress=False)
    with pytest.raises(CheckpointError, match=r"model.G.ch: checkpoint 4, now 8"):
        train(tiny("model.G.ch=8", "train.steps=3"), out=tmp_path, name="run", resume="auto", progress=False)


def test_run_directory_holds_config_logs_samples_and_checkpoints(tmp_path):
    overrides = ("train.sample_every=1", "train.snapshot_every=1", "train.keep_last=1",
                 "model.D.context=[{at=16, block='attn'}]")
    run = train(tiny(*overrides), out=tmp_path, progress=False)
    assert run.name == "00000-hamgan"
    assert load_config(run / "config.toml") == tiny(*overrides)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    # every scalar by name, each context block's reported by the block itself
    assert {"loss/G", "loss/D_real", "loss/D_fake", "D/real_score", "D/fake_score", "sigma/G.context.1.0",
            "recon_error/G.context.1.0.ham", "gamma/D.context.0.0", "grad_norm/G", "lr/D"} <= set(rows[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "grid-000000000.png", "grid-000000001.png", "grid-000000002.png"]
    assert [p.name for p in list_snapshots(run / "checkpoints")] == ["ckpt-000000002.pt"]   # keep_last = 1
    assert any((run / "tensorboard").iterdir()) and (run / "log.txt").read_text()
    assert train(tiny(), out=tmp_path, progress=False).name == "00001-hamgan"


def test_dry_run_of_the_hamgan_baby_preset_at_batch_2():
    root = Path(__file__).resolve().parents[1]
    r = run_cli("train", "--config", str(root / "configs" / "hamgan_baby.toml"), "--dry-run",
                "train.batch_size=2", "model.n_classes=10", "data.shapes_classes=10", "data.shapes_size=8",
                "data.source=shapes", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "seconds_per_step:" in r.stdout and "G_parameters:" in r.stdout
    report = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert report["settings"] == "fp32, NCHW, fused Adam"                    # the CPU's fast settings
    flop = ast.literal_eval(report["GFLOP_per_image"])                     # counted (tests/test_flops.py)
    assert set(flop) == {"D", "G", "EMA", "step"} and 140 < flop["step"] < 150
    assert float(report["achieved_TFLOP_per_second"]) > 0


# --------------------------------------------------------------------------- evaluation in training


def test_without_inception_weights_the_run_continues_and_says_why_once(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")
    monkeypatch.delenv("HAMGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    run = train(tiny("train.steps=3", "train.eval_every=1", "eval.num_samples=4", "eval.batch_size=4"), out=tmp_path,
                progress=False)
    log = (run / "log.txt").read_text()
    assert log.count("FID/IS skipped") == 1 and "no network" in log
    assert last_snapshot(run)["step"] == 3


def test_fid_in_training_is_logged_and_the_best_checkpoint_kept(tmp_path, monkeypatch):
    """Seeded random Inception weights stand in for the real ones (same code path); the
    conditional accuracies are logged next to FID, with classifiers trained by a short recipe
    on first use and cached next to the statistics."""
    from hamgan.data import ShapesDataset
    from hamgan.metrics import classifier
    from hamgan.metrics.evaluate import evaluate_images
    from hamgan.metrics.inception import write_random_weights

    monkeypatch.setattr(classifier, "STEPS", 3)

    weights = write_random_weights(tmp_path / "inception.pth")
    stats, _ = evaluate_images(ShapesDataset(32, n_classes=3, size=8), batch_size=8, inception=str(weights),
                               keep_features=0, progress=False)
    stats.save(tmp_path / "ref.npz")
    run = train(tiny("train.steps=4", "train.eval_every=1", "train.keep_last=1", "eval.num_samples=4",
                     "eval.batch_size=4", f"eval.stats='{tmp_path / 'ref.npz'}'",
                     f"eval.inception_weights='{weights}'"), out=tmp_path, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fids = {r["step"]: r["eval/fid"] for r in rows if "eval/fid" in r}
    assert sorted(fids) == [1, 2, 3, 4] and all(v > 0 for v in fids.values())
    best = min(fids, key=fids.get)
    kept = [p.name for p in list_snapshots(run / "checkpoints")]
    assert f"ckpt-{best:09d}.pt" in kept and "ckpt-000000004.pt" in kept and len(kept) <= 2
    assert last_snapshot(run)["best_step"] == best
    for key in ("eval/acc_class", "eval/acc_shape"):
        assert sorted(r["step"] for r in rows if key in r) == [1, 2, 3, 4]
    assert len(list(tmp_path.glob("classifiers-3c-32px-*.pt"))) == 1
    # every evaluation row says which protocol it followed: the cheap in-training one
    protocols = [r["eval/protocol"] for r in rows if "eval/fid" in r]
    assert len(protocols) == 4 and all(p == protocols[0] for p in protocols)
    p = protocols[0]
    assert (p["name"], p["generator"], p["num_samples"], p["resize_to_299"], p["quantized"], p["is_splits"]) == \
        ("training", "G_ema", 4, "pytorch_fid", True, 10)
    assert p["reference"]["count"] == 8 and p["reference"]["file"] == str((tmp_path / "ref.npz").resolve())
    # reference statistics of another protocol are refused, naming the differing fields
    stats.provenance.update(protocol="paper", resize="tf1-bilinear-299")
    stats.save(tmp_path / "paper.npz")
    run = train(tiny("train.steps=1", "train.eval_every=1", "eval.num_samples=4", "eval.batch_size=4",
                     f"eval.stats='{tmp_path / 'paper.npz'}'", f"eval.inception_weights='{weights}'"),
                out=tmp_path, progress=False)
    log = (run / "log.txt").read_text()
    assert "FID/IS skipped" in log and "protocol: statistics 'paper', this evaluation 'pytorch_fid'" in log
    assert "resize_to_299: statistics 'tf1_bilinear', this evaluation 'pytorch_fid'" in log
