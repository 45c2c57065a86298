#!/usr/bin/env bash
# HamGAN-baby on ImageNet 128 (REFERENCE §3): batch 256, 2M steps, one process per GPU.
#
#   DATA=data/imagenet128_train STATS=stats/imagenet128_val.npz bash scripts/train_hamgan_baby.sh
#
# Resumable: run the same command again after any interruption; it continues from the newest
# good checkpoint in $OUT/hamgan_baby. Several nodes: on each, NNODES=N NODE_RANK=i
# MASTER_ADDR=<node 0> bash scripts/train_hamgan_baby.sh. Extra arguments are passed on
# (e.g. train.amp=bf16 train.accum=2).
#
# Stopping and requeueing: SIGTERM, SIGINT or SIGUSR1 (a scheduler's warning, Ctrl-C) make the
# run finish its step, write a checkpoint and stop; this script then exits with 75, and running
# it again (or the scheduler requeueing the job: README, "Clusters") continues the run. A crash
# is resumed here from the newest good checkpoint, for as long as each attempt gets further.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
CONFIG=${CONFIG:-configs/hamgan_baby.toml}
NAME=${NAME:-$(basename "$CONFIG" .toml)}
CHECKPOINTS="${OUT:-runs}/$NAME/checkpoints"
export TORCHELASTIC_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1   # torchrun forwards SIGUSR1 too

newest() { ls "$CHECKPOINTS" 2>/dev/null | grep '^ckpt-' | tail -n 1 || true; }
stopping=0 child=0
stop() { stopping=1; [ "$child" -eq 0 ] || kill -s "$1" "$child" 2>/dev/null || true; }  # (copies count once)
for sig in TERM INT USR1; do trap "stop $sig" "$sig"; done

before=$(newest)
while true; do
  torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="${GPUS:-8}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    -m hamgan train --config "$CONFIG" --data "${DATA:-data/imagenet128_train}" --out "${OUT:-runs}" \
    --name "$NAME" --resume auto eval.stats="${STATS:-stats/imagenet128_val.npz}" "$@" &
  child=$!
  rc=0; wait "$child" || rc=$?
  while kill -0 "$child" 2>/dev/null; do rc=0; wait "$child" || rc=$?; done   # a signal interrupted `wait`
  child=0
  [ "$rc" -eq 0 ] && exit 0
  if [ "$stopping" -eq 1 ]; then
    echo "stopped on request after writing a checkpoint; run this script again to continue" >&2
    exit 75
  fi
  now=$(newest)
  if [ "$now" = "$before" ]; then
    echo "training failed (exit $rc) without getting past ${before:-its start}: not retrying" >&2
    exit "$rc"
  fi
  echo "training failed (exit $rc); resuming from the newest good checkpoint" >&2
  before=$now
done
