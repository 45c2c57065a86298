"""Cross-replica batch norm on 2 CPU processes (gloo) equals single-process BN on the whole batch:
outputs, input gradients, weight gradients and running statistics; for one BN layer and for a
whole (tiny) generator whose every BN is cross-replica."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hamgan.config import load_config
from hamgan.layers import BatchNorm2d
from hamgan.models import build_generator

from ._dist import free_port

WORLD = 2
BATCH = 6          # global batch; 3 per rank


def make_bn():
    torch.manual_seed(0)
    bn = BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5) + 0.5)
        bn.bias.copy_(torch.randn(5))
    return bn


def bn_data(step):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(BATCH, 5, 4, 4, generator=g) * 2 + 1
    return x, torch.randn(BATCH, 5, 4, 4, generator=g)          # input, output weights of the loss


def make_g(cross_replica=True):
    cfg = load_config(None, ["model.resolution=32", "model.G.ch=2", "model.n_classes=5", "model.G.context=[]", "model.D.context=[]",
                             f"model.cross_replica_bn={str(cross_replica).lower()}"])
    torch.manual_seed(0)
    G = build_generator(cfg.model)
    with torch.no_grad():                                        # classes matter, as after training
        for name, p in G.named_parameters():
            if name.endswith(("gain", "bias")) and p.dim() == 2:
                p.add_(0.3 * torch.randn_like(p))
    return G


def g_data():
    g = torch.Generator().manual_seed(7)
    return torch.randn(BATCH, 128, generator=g), torch.randint(0, 5, (BATCH,), generator=g), \
        torch.randn(BATCH, 3, 32, 32, generator=g)


def run_bn(bn, lo, hi):
    """Two training steps on rows lo:hi; returns outputs, input grads, param grads, running stats."""
    outs, xgrads = [], []
    for step in range(2):
        x, w = bn_data(step)
        xs = x[lo:hi].clone().requires_grad_()
        out = bn(xs)
        (out * w[lo:hi]).sum().backward()
        outs.append(out.detach())
        xgrads.append(xs.grad)
    return dict(out=outs, xgrad=xgrads, wgrad=bn.weight.grad, bgrad=bn.bias.grad,
                rm=bn.running_mean.clone(), rv=bn.running_var.clone())


def run_g(G, lo, hi):
    z, y, w = g_data()
    zs = z[lo:hi].clone().requires_grad_()
    out = G(zs, y[lo:hi])
    (out * w[lo:hi]).sum().backward()
    grads = {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}
    return dict(out=out.detach(), zgrad=zs.grad, grads=grads)


def worker(rank, port, path):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        lo, hi = rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD
        result = {"bn": run_bn(make_bn(), lo, hi),
                  "G": run_g(make_g(), lo, hi),
                  "G_local": run_g(make_g(cross_replica=False), lo, hi)}
        for key in ("bn", "G"):                         # gradients of the summed loss: sum over ranks
            r = result[key]
            for g in ([r["wgrad"], r["bgrad"]] if key == "bn" else list(r["grads"].values())):
                dist.all_reduce(g)
        torch.save(result, f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    path = tmp_path_factory.mktemp("xbn")
    mp.spawn(worker, args=(free_port(), str(path)), nprocs=WORLD, join=True)
    return [torch.load(path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_bn_layer_equals_whole_batch(ranks):
    ref = run_bn(make_bn(), 0, BATCH)
    for step in range(2):
        torch.testing.assert_close(torch.cat([r["bn"]["out"][step] for r in ranks]), ref["out"][step])
        torch.testing.assert_close(torch.cat([r["bn"]["xgrad"][step] for r in ranks]), ref["xgrad"][step])
    for key in ("wgrad", "bgrad", "rm", "rv"):
        for r in ranks:
            torch.testing.assert_close(r["bn"][key], ref[key])


@pytest.fixture(scope="module")
def whole_batch_g():
    return run_g(make_g(), 0, BATCH)


def test_generator_equals_whole_batch(ranks, whole_batch_g):
    ref = whole_batch_g
    torch.testing.assert_close(torch.cat([r["G"]["out"] for r in ranks]), ref["out"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["G"]["zgrad"] for r in ranks]), ref["zgrad"], rtol=1e-4, atol=1e-5)
    assert ranks[0]["G"]["grads"].keys() == ref["grads"].keys()
    # float32 noise relative to the largest gradient (biases of convs followed by BN have zero gradient)
    atol = 1e-5 * max(g.abs().max() for g in ref["grads"].values())
    for name, g in ref["grads"].items():
        torch.testing.assert_close(ranks[0]["G"]["grads"][name], g, rtol=1e-4, atol=atol, msg=name)


def test_per_replica_statistics_differ(ranks, whole_batch_g):
    """Without cross-replica BN each rank normalises its own half: not the whole-batch result
    (so the equality above is not an accident of the data)."""
    local = torch.cat([r["G_local"]["out"] for r in ranks])
    assert (local - whole_batch_g["out"]).abs().max() > 1e-3
