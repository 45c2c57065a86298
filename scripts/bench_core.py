"""CPU seconds per training step of a hamgan checkout, old trainer (`Trainer`, before issue 12)
or new (`build` + `train_step`), to compare two versions side by side (issue 12):

    python scripts/bench_core.py ROOT CONFIG BATCH STEPS [key=value ...]
    git worktree add /tmp/before fb7389f
    for r in 1 2 3; do python scripts/bench_core.py /tmp/before configs/demo.toml 32 40
                       python scripts/bench_core.py . configs/demo.toml 32 40; done

ROOT: the checkout to measure (its hamgan and scripts/bench_train.py's random images). One
thread and CPU time (not wall time), which a shared machine's neighbours disturb least; prints
the median and the minimum over STEPS steps after one warm-up step.
"""
import statistics
import sys
import time

root, config, batch, steps, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
sys.path[:0] = [root, root + "/scripts"]
import torch  # noqa: E402

from bench_train import RandomImages  # noqa: E402
from hamgan.config import load_config  # noqa: E402
from hamgan.data import build_loader  # noqa: E402

torch.set_num_threads(1)
cfg = load_config(config, [f"train.batch_size={batch}", "data.workers=0", *extra])
data = RandomImages(max(64, 4 * batch), cfg.model.resolution, max(cfg.model.n_classes, 1))
device = torch.device("cpu")
try:
    from hamgan.train import build, train_step
    training, runner, _ = build(cfg, device, dataset=data)

    def step():
        train_step(training, runner)
except ImportError:           # before issue 12
    from hamgan.train import Trainer
    trainer = Trainer(cfg, None, device, dataset=data, progress=False)
    loader = build_loader(data, trainer.split.per, seed=0, workers=0)

    def step():
        trainer.train_step(loader)
step()
times = []
for _ in range(steps):
    start = time.process_time()
    step()
    times.append(time.process_time() - start)
print(f"{root} {' '.join(extra)}: median CPU s/step {statistics.median(times):.4f}  min {min(times):.4f}")
