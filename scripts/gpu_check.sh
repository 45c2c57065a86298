#!/usr/bin/env bash
# The GPU check, prepared to run once on a lent GPU machine (about 8 minutes on an H100):
# CUDA-only tests, then throughput, bf16 and memory of the context blocks, the networks and a
# HamGAN-baby training step, and what its checkpoint and the stop check cost. Uses the python3
# that holds torch there (no venv needed: pytorch-fid, absent there, is only needed by the
# evaluation benchmark, which it skips).
# Writes the tables to ${OUT:-gpu_check}/; copy them into docs/BENCHMARKS.md with the card.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" >> "$OUT/gpu.txt" 2>&1
$PY -m pytest -q -p no:cacheprovider tests/test_ham.py tests/test_layers.py tests/test_models.py -k "cuda or fp16 or bf16" \
  > "$OUT/tests.txt" 2>&1
$PY scripts/bench_context.py --device cuda --batch 64 --reps 10 > "$OUT/context.md" 2>&1
$PY scripts/bench_models.py --device cuda --batch 64 --precision fp32 bf16 > "$OUT/models.md" 2>&1
$PY scripts/bench_train.py --device cuda --batch 256 --accum 2 --steps 5 --variants fp32,bf16,bf16-cl,bf16-cl-compile \
  > "$OUT/train.md" 2>&1
$PY scripts/bench_robustness.py --device cuda > "$OUT/robustness.md" 2>&1
tail -n 3 "$OUT"/*.txt "$OUT"/*.md
