#!/usr/bin/env bash
# HamGAN-baby on ImageNet 128 (REFERENCE §3): batch 256, 2M steps, one process per GPU.
#
#   DATA=data/imagenet128_train STATS=stats/imagenet128_val.npz bash scripts/train_hamgan_baby.sh
#
# Resumable: run the same command again after any interruption; it continues from the newest
# good checkpoint in $OUT/hamgan_baby. Several nodes: on each, NNODES=N NODE_RANK=i
# MASTER_ADDR=<node 0> bash scripts/train_hamgan_baby.sh. Extra arguments are passed on
# (e.g. train.amp=bf16 train.accum=2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
CONFIG=${CONFIG:-configs/hamgan_baby.toml}
NAME=${NAME:-$(basename "$CONFIG" .toml)}
torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="${GPUS:-8}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
  -m hamgan train --config "$CONFIG" --data "${DATA:-data/imagenet128_train}" --out "${OUT:-runs}" \
  --name "$NAME" --resume auto eval.stats="${STATS:-stats/imagenet128_val.npz}" "$@"
