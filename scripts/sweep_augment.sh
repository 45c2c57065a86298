#!/usr/bin/env bash
# DiffAugment on small data: the demo preset trained on 1,000 shapes instead of 10,000, without
# augmentation and with each policy; 2 seeds, evaluated alike (500 samples against 500 real
# images). Writes runs/sweep_augment/sweep.{md,json,png}. Extra arguments go to `hamgan sweep`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
hamgan sweep --config configs/demo.toml --out runs/sweep_augment --seeds 2 --num 500 --ref-num 500 \
  --grid "train.augment='','translation','color,translation','color,translation,cutout'" \
  data.shapes_size=1000 "$@"
