"""What a fast GPU step is built on, kept true on the CPU: G's and D's forwards compile into one
graph each, as the trainer calls them (training mode, Hamburgers included, statistics being
collected), and are compiled once, not once per step; hamgan's code reads no tensor value back
to the host inside a training step (only at log and snapshot intervals)."""
import contextlib
import math
import sys
from pathlib import Path

import pytest
import torch

import hamgan
from hamgan import stats
from hamgan.config import load_config
from hamgan.ham import Rows
from hamgan.models import build_discriminator, build_generator

TINY_MODEL = ["model.resolution=32", "model.n_classes=3", "model.G.ch=4", "model.D.ch=4",
              "model.G.context=[{at=16, block='ham', rank=4, steps=2}]",
              "model.D.context=[{at=16, block='ham', rank=4, steps=2}]"]


def networks_and_inputs(net: str):
    """(module, args, kwargs) of a forward as a training phase makes it: this process's rows of
    the global batch (rows 4..7 of 12); D sees real and fake images concatenated."""
    cfg = load_config(None, TINY_MODEL).model
    torch.manual_seed(0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z, y, rows = torch.randn(4, cfg.z_dim), torch.tensor([0, 1, 2, 0]), Rows(4, 4, 12)
    if net == "G":
        return G, (z, y), {"bases": (rows,)}
    fake = G(z, y).detach()
    return D, (torch.cat([torch.rand_like(fake) * 2 - 1, fake]), torch.cat([y, y])), {"bases": (rows, rows)}


@pytest.mark.parametrize("net", ["G", "D"])
def test_compiled_forwards_have_no_graph_breaks(net):
    module, args, kwargs = networks_and_inputs(net)
    assert module.training
    torch._dynamo.reset()
    with stats.Collector().step(1):                 # the Hamburgers report their statistics
        explanation = torch._dynamo.explain(module)(*args, **kwargs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_forward_is_compiled_once_across_steps():
    module, args, kwargs = networks_and_inputs("G")
    compiled = []

    def backend(graph, example_inputs):
        compiled.append(graph)
        return graph.forward

    torch._dynamo.reset()
    forward = torch.compile(module, backend=backend)
    collector = stats.Collector()
    for step in range(3):                           # each step collects into a fresh record
        with collector.step(step):
            forward(*args, **kwargs)
    assert len(compiled) == 1
    means, _ = collector.summary()
    assert "sigma/G.context.1.0" in means           # what the compiled graph reported arrived


# --------------------------------------------------------------------------- host reads


HAMGAN = str(Path(hamgan.__file__).resolve().parent)
# what reads a tensor's value back to the host (on CUDA: waits for the GPU)
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__")


@contextlib.contextmanager
def host_reads_by_hamgan(where=lambda: ""):
    """Inside, every read of a tensor value called directly from hamgan's code is recorded as
    'WHERE file:line method' (WHERE: what `where()` says then), in the list yielded; reads
    made inside torch are not hamgan's."""
    reads, originals = [], {name: getattr(torch.Tensor, name) for name in READS}

    def recording(name, original):
        def read(tensor, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(HAMGAN):
                reads.append(f"{where()}{Path(caller.f_code.co_filename).name}:{caller.f_lineno} {name}")
            return original(tensor, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, recording(name, original))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize("extra", [[], ["train.amp=bf16", "train.accum=2", "train.d_steps=2",
                                         "train.augment='color,translation,cutout'"]],
                         ids=["fp32", "bf16-accum-dsteps-augment"])
def test_training_steps_read_no_tensor_values_to_the_host(extra, monkeypatch):
    """N and 2N steps, each run logging and checkpointing once (at its end): hamgan's code makes
    the same reads in both, and none inside a training step."""
    from hamgan import train as train_module

    from .test_train import tiny

    inside, step = [], train_module.train_step

    def marked_step(*args):
        inside.append("in a step: ")
        try:
            return step(*args)
        finally:
            inside.pop()

    monkeypatch.setattr(train_module, "train_step", marked_step)
    reads = {}
    for steps in (2, 4):
        cfg = tiny(f"train.steps={steps}", f"train.log_every={steps}", *extra)
        with host_reads_by_hamgan(where=lambda: "".join(inside)) as reads[steps]:
            train_module.training_loop(cfg, None, torch.device("cpu"), progress=False)
    assert reads[2], "no reads at all: the recording is broken"
    assert not [r for r in reads[4] if r.startswith("in a step")], reads[4]
    assert sorted(reads[2]) == sorted(reads[4]), reads


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_steps_do_not_wait_for_the_gpu(amp):
    """After two warm-up steps (cuDNN autotuning), whole training steps with the fast settings
    (fused Adam, prefetch, pinned latents), accumulation and DiffAugment make no call that waits
    for the GPU, inside torch included: torch's sync debug mode raises on any."""
    from hamgan.train import build, train_step

    from .test_train import tiny

    device = torch.device("cuda")
    training, runner, _ = build(tiny(f"train.amp={amp}", "train.accum=2", "train.augment='color,translation,cutout'"),
                                device)
    collector = stats.Collector(device)
    for step in range(2):
        with collector.step(step):
            train_step(training, runner)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(2, 4):
            with collector.step(step):
                train_step(training, runner)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    means, _ = collector.summary()
    assert all(map(math.isfinite, means.values()))
