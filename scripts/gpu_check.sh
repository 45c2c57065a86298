#!/usr/bin/env bash
# The GPU check, prepared to run in one go on a lent GPU machine (under 10 minutes on an H200;
# give it timeout_s 600):
#   1. the CUDA tests: bf16 / fp16 / TF32 steps against fp32, no GPU waits inside a training
#      step, the device prefetcher, the CUDA parts of the blocks (tests.txt);
#   2. HamGAN-baby at batch 256: plain PyTorch fp32, fp32 with the fast settings, bf16,
#      bf16 + channels_last, with images/s, TFLOP/s, % of the dense peak, peak memory, and the
#      time by kind of work (convolutions, batch norm, matrix products / NMF, optimisers, copies,
#      GPU idle = launch and host gaps) (train.md);
#   3. bf16 + channels_last + torch.compile in its own process, given the time left before the
#      deadline: compiling G and D for both phases takes minutes, and if it does not fit, the
#      file says so (compile.md);
#   4. if time is left: the context blocks (Hamburger vs attention) and both networks of every
#      preset at batch 64, fp32 and bf16 (context.md, models.md), then what a HamGAN-baby
#      checkpoint and the stop-signal check cost (robustness.md).
# Then copy gpu.txt (device, driver, torch) and the tables into docs/BENCHMARKS.md.
#
# Output: $OUT (the device tool's output folder) if set, else ./gpu_check/; eight files.
# It uses the machine's python3 with its torch (no venv; pytorch-fid is not needed here).
# GPU_CHECK_DRY=1: the same commands on the CPU at a tiny size, to test this script anywhere.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=$SECONDS
DEADLINE=${GPU_CHECK_SECONDS:-570}            # everything done by then (the tool's limit is 600 s)
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -n "${GPU_CHECK_DRY:-}" ]; then
  BENCH=(--device cpu --config configs/demo.toml --batch 4 --steps 1 --warmup 1 model.G.ch=2 model.D.ch=2
        "model.G.multipliers=[]" "model.D.multipliers=[]")
  DEADLINE=${GPU_CHECK_SECONDS:-3600}
else
  BENCH=(--device cuda --config configs/hamgan_baby.toml --batch 256 --steps 4 --warmup 2)
fi
left() { echo $((DEADLINE - (SECONDS - START))); }
stage() { echo "[$((SECONDS - START)) s] $*" | tee -a "$OUT/log.txt"; }

stage "device"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv \
    || echo "nvidia-smi: not available"
  $PY -c "import platform, torch; print('python', platform.python_version(), '| torch', torch.__version__, \
'| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version()); \
print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
} > "$OUT/gpu.txt" 2>&1

stage "CUDA tests"
timeout $(( $(left) / 4 )) $PY -m pytest -q -s -rs -p no:cacheprovider \
  tests/test_mixed_precision.py tests/test_fast.py tests/test_fast_path.py tests/test_ham.py tests/test_layers.py \
  tests/test_models.py -k "cuda or fp16 or bf16" > "$OUT/tests.txt" 2>&1
stage "tests: exit $? ($(tail -n 1 "$OUT/tests.txt"))"

budget=$(( $(left) - 240 ))                    # keep 4 minutes for the compile variant
[ "$budget" -lt 120 ] && budget=$(( $(left) / 2 ))
stage "training variants: ${budget} s for them"
timeout "$budget" $PY scripts/bench_train.py "${BENCH[@]}" --variants plain,fp32,bf16,bf16-cl --categories \
  > "$OUT/train.md" 2>&1
stage "training variants: exit $?"

budget=$(( $(left) - 10 ))
stage "compile variant: ${budget} s left for it"
if [ "$budget" -lt 60 ]; then
  echo "bf16-cl-compile: skipped, only ${budget} s were left before the deadline" > "$OUT/compile.md"
else
  timeout "$budget" $PY scripts/bench_train.py "${BENCH[@]}" --variants bf16-cl-compile --categories \
    > "$OUT/compile.md" 2>&1
  code=$?
  [ $code -eq 124 ] && echo "bf16-cl-compile: stopped after ${budget} s (compiling did not finish in time)" >> "$OUT/compile.md"
  stage "compile variant: exit $code"
fi
for extra in "context scripts/bench_context.py" "models scripts/bench_models.py --precision fp32 bf16"; do
  set -- $extra
  budget=$(( $(left) - 5 ))
  if [ "$budget" -lt 45 ]; then
    echo "skipped: only ${budget} s were left before the deadline" > "$OUT/$1.md"
  else
    stage "$1: ${budget} s left"
    if [ -n "${GPU_CHECK_DRY:-}" ]; then       # the smallest cases
      where=(--device cpu --batch 2 --reps 1); [ "$1" = models ] && where+=(--presets demo) || where+=(--only "D 32x32")
    else
      where=(--device cuda --batch 64)
    fi
    timeout "$budget" $PY "$2" "${where[@]}" "${@:3}" > "$OUT/$1.md" 2>&1
    stage "$1: exit $?"
  fi
done
budget=$(( $(left) - 5 ))
if [ "$budget" -lt 45 ]; then
  echo "skipped: only ${budget} s were left before the deadline" > "$OUT/robustness.md"
else
  stage "robustness (checkpoint write, stop check): ${budget} s left"
  [ -n "${GPU_CHECK_DRY:-}" ] && where=(--device cpu --config configs/demo.toml --steps 5 --rounds 2) || where=(--device cuda)
  timeout "$budget" $PY scripts/bench_robustness.py "${where[@]}" > "$OUT/robustness.md" 2>&1
  stage "robustness: exit $?"
fi
stage "done"
cat "$OUT/gpu.txt"; tail -n 3 "$OUT/tests.txt"; grep -v '^\(ERROR\|USDT\|W[0-9]\)' "$OUT/train.md" "$OUT/compile.md"
