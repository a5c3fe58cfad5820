#!/usr/bin/env bash
# The GPU figures that BENCHMARKS.md tracks, taken in one run on a machine with a real GPU:
# every kernel family and training step against the CPU twin (`gradscope bench`), every
# matmul and convolution tile variant, where a resnet-20 step's time goes (`--profile`, full
# statistics and gradient records only), the resnet-20 step with full statistics, gradient
# norms and none (the `train_step` bench: what statistics cost), Burn's Vulkan backend on the
# same steps (the closest peer, where .bin/rust_peers was carried), and PyTorch on the same
# card (torch_gpu.py). On an
# H200 it is meant to end within eight minutes. Every stage has its own time limit, so a
# stage that hangs costs only its own figures, and the whole run a deadline (DEADLINE
# seconds, default 540: the device tool stops a command at 600, and a task's device time is
# 15 minutes, the machine's start included): a stage gets at most what is left of it, and one
# that would get under 15 seconds is skipped and said so. The stages run in the order of what
# the targets need: kernels, then PyTorch's side of every ratio, then the steps and where
# their time goes, then the tile variants and Burn.
#
# Prepare on the build machine (release binaries, stripped to fit a small upload):
#
#   cargo build --release --example matmul_variants --bench train_step
#   mkdir -p .bin && strip -o .bin/gradscope target/release/gradscope &&
#     strip -o .bin/matmul_variants target/release/examples/matmul_variants &&
#     strip -o .bin/train_step $(ls -t target/release/deps/train_step-* | grep -v '\.d$' | head -1)
#
# and, for Burn's figures (optional; the binary is large, so it travels compressed):
#
#   (cd benches/compare/rust_peers && cargo build --release --features gpu) &&
#     strip -o .bin/rust_peers benches/compare/rust_peers/target/release/rust_peers &&
#     xz -9 -f .bin/rust_peers
#
# then run from the repository root on the GPU machine:
#
#   bash benches/compare/gpu_check.sh
#
# Through the device tool that is one `run` with `carry` [".bin", ".gl"] (the loader's
# packages, as the tool's notes say) and `timeout_s` 600: the deadline ends the script
# before the tool's limit, and every stage's results are under $OUT as soon as it ends.
#
# Results go to $RESULTS (default ./gpu_check): machine.txt (GPU, driver, adapters), bench.json
# and bench.txt, variants.txt, profile.txt and profile.json (full statistics every step),
# grad_records.txt (statistics every 10^6 steps: gradient records only), profile_group16.txt
# (the statistics grouped 16 tensors a dispatch), stats_cost.json
# (resnet-20 steps with full statistics, gradient norms, none), burn_gpu_*.json, torch.json and
# torch.txt, autotune.json (the variants the autotune chose), side_by_side.md (the tables of
# BENCHMARKS.md's GPU section, by side_by_side.py). QUICK=1 runs every stage at
# toy sizes, to check the script itself on a software adapter. Where $OUT is set (the device
# tool's folder, which brings back at most eight files), the whole of $RESULTS goes there as
# gpu_check.tar.gz, with side_by_side.md, stages.txt and profile.txt beside it to read first,
# again after every stage, so that a run stopped before its end still brings back what its
# finished stages measured.
#
# Vulkan loader: a machine without one gets it from Debian packages unpacked from .gl/ (see
# the device tool's notes); the NVIDIA ICD is used where the image keeps it apart.
set -uo pipefail
cd "$(dirname "$0")/../.."

RESULTS=${RESULTS:-gpu_check}
mkdir -p "$RESULTS"
BIN=${GRADSCOPE_BIN_DIR:-.bin}

if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# The autotune times its candidates on hardware adapters; keep what it chose with the results.
export GRADSCOPE_AUTOTUNE_CACHE="$PWD/$RESULTS/autotune.json"

if [ "${QUICK:-0}" = 1 ]; then
  BENCH_SIZES=(--op matmul,stats,step --sizes 8)
  VARIANT_ARGS=(--sizes 64 --no-conv --runs 1)
  STEPS=3
  BATCH=8
  TORCH_ARGS=(--sizes 256 --repeats 2 --warmup 1)
else
  BENCH_SIZES=()
  VARIANT_ARGS=(--sizes 1024,4096)
  STEPS=40
  BATCH=128
  TORCH_ARGS=()
fi

DEADLINE=${DEADLINE:-540}

# What the finished stages measured, under $OUT where the device tool reads it.
publish() {
  [ -n "${OUT:-}" ] || return 0
  if [ -f "$RESULTS/bench.json" ] && [ -f "$RESULTS/torch.json" ]; then
    python3 benches/compare/side_by_side.py "$RESULTS/bench.json" "$RESULTS/torch.json" \
      "$RESULTS/profile.json" >"$RESULTS/side_by_side.md" 2>&1
  fi
  tar czf "$OUT/gpu_check.tar.gz.part" -C "$RESULTS" . && mv "$OUT/gpu_check.tar.gz.part" "$OUT/gpu_check.tar.gz"
  cp "$RESULTS/side_by_side.md" "$RESULTS/stages.txt" "$RESULTS/profile.txt" "$OUT/" 2>/dev/null
  return 0
}

stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped ($left s left of the $DEADLINE s deadline)" | tee -a "$RESULTS/stages.txt"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$RESULTS/stages.txt"
  publish
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  "$BIN/gradscope" devices 2>&1
} >"$RESULTS/machine.txt"

stage bench 200 "$BIN/gradscope" bench --gpu-only "${BENCH_SIZES[@]}" --json "$RESULTS/bench.json" \
  >"$RESULTS/bench.txt" 2>&1
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  stage torch 120 python3 benches/compare/torch_gpu.py "${TORCH_ARGS[@]}" --json "$RESULTS/torch.json" \
    >"$RESULTS/torch.txt" 2>&1
else
  echo "torch: skipped (no PyTorch with CUDA here)" | tee -a "$RESULTS/stages.txt"
fi

TRAIN=("$BIN/gradscope" train --model resnet20 --batch-size "$BATCH" --max-steps "$STEPS"
  --device gpu --tensorboard false)
rm -rf /tmp/gpu_check_profile /tmp/gpu_check_grad
stage profile 70 "${TRAIN[@]}" --profile --run-dir /tmp/gpu_check_profile >"$RESULTS/profile.txt" 2>&1
cp /tmp/gpu_check_profile/profile.json "$RESULTS/" 2>/dev/null && publish
stage grad_records 40 "${TRAIN[@]}" --stats-every 1000000 --run-dir /tmp/gpu_check_grad \
  >"$RESULTS/grad_records.txt" 2>&1
# The same profile with the statistics grouped 16 tensors a dispatch, as before 2026-12-08
# (the device's width, up to 64, since): what the wider groups save, on this card.
rm -rf /tmp/gpu_check_group16
GRADSCOPE_STATS_GROUP=16 stage profile_group16 50 "${TRAIN[@]}" --profile \
  --run-dir /tmp/gpu_check_group16 >"$RESULTS/profile_group16.txt" 2>&1
if [ -x "$BIN/train_step" ]; then
  stage stats_cost 60 "$BIN/train_step" --model resnet20 --batch "$BATCH" --steps "$((STEPS / 2))" \
    --device gpu --json >"$RESULTS/stats_cost.json" 2>"$RESULTS/stats_cost.err"
else
  echo "stats_cost: skipped (no $BIN/train_step)" | tee -a "$RESULTS/stages.txt"
fi

stage variants 70 "$BIN/matmul_variants" "${VARIANT_ARGS[@]}" >"$RESULTS/variants.txt" 2>&1

if [ -f "$BIN/rust_peers.xz" ] && [ ! -x "$BIN/rust_peers" ]; then
  xz -dkc "$BIN/rust_peers.xz" >/tmp/rust_peers && chmod +x /tmp/rust_peers
fi
PEERS=$BIN/rust_peers
[ -x "$PEERS" ] || PEERS=/tmp/rust_peers
if [ -x "$PEERS" ]; then
  stage burn_gpu_resnet20 90 "$PEERS" --framework burn --model resnet20 --device gpu --batch "$BATCH" \
    --json "$RESULTS/burn_gpu_resnet20.json" >"$RESULTS/burn_gpu.txt" 2>&1
  stage burn_gpu_mlp 60 "$PEERS" --framework burn --model mlp --device gpu \
    --json "$RESULTS/burn_gpu_mlp.json" >>"$RESULTS/burn_gpu.txt" 2>&1
else
  echo "burn_gpu: skipped (no $BIN/rust_peers.xz)" | tee -a "$RESULTS/stages.txt"
fi

# The side-by-side tables for BENCHMARKS.md.
if [ -f "$RESULTS/bench.json" ] && [ -f "$RESULTS/torch.json" ]; then
  python3 benches/compare/side_by_side.py "$RESULTS/bench.json" "$RESULTS/torch.json" "$RESULTS/profile.json" \
    >"$RESULTS/side_by_side.md" 2>&1
fi
echo "all stages done after $SECONDS s" | tee -a "$RESULTS/stages.txt"
publish
