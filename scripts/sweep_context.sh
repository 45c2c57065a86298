#!/usr/bin/env bash
# The paper's ablation at home: the demo's networks on the shapes (32 px) with an NMF Hamburger
# (K = 6 one-step gradient, as the paper; K = 6 full BPTT; K = 2 one-step), SAGAN self-attention,
# or no context block, in G and D alike; 3 seeds each, 1,000 steps, evaluated alike (500 samples
# against 500 real images, conditional accuracies) with in-training evaluations every 250 steps
# for the curves. About 2 hours on 2 quiet CPU cores (7-10 minutes a run, with its
# evaluations); `--seeds 1` about 45 minutes. Writes runs/sweep_context/sweep.{md,json,png};
# running it again continues. Extra arguments go to `hamgan sweep` (e.g. --seeds 1, train.steps=400).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
hamgan sweep --config configs/demo.toml --out runs/sweep_context --seeds 3 --num 500 --ref-num 500 \
  --point "NMF K=6 one-step:" \
  --point "NMF K=6 BPTT: model.G.context.0.grad=bptt model.D.context.0.grad=bptt" \
  --point "NMF K=2 one-step: model.G.context.0.steps=2 model.D.context.0.steps=2" \
  --point "self-attention: model.G.context.0.block=attn model.D.context.0.block=attn" \
  --point "no context: model.G.context=[] model.D.context=[]" \
  train.steps=1000 train.eval_every=250 eval.num_samples=100 eval.extras=true "$@"
