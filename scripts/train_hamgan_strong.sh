#!/usr/bin/env bash
# HamGAN-strong on ImageNet 128 (REFERENCE §3): the same networks, batch 1024, 1M steps.
# Same usage and resuming as train_hamgan_baby.sh; if 128 images per GPU do not fit, add
# train.accum=2: the same global batch in two rounds (batch-norm statistics then come from
# 512 images per round instead of 1024).
exec env CONFIG=configs/hamgan_strong.toml bash "$(dirname "${BASH_SOURCE[0]}")/train_hamgan_baby.sh" "$@"
