#!/usr/bin/env bash
# gradscope's CPU executor against Burn (Flex backend) and Candle (CPU device), and JAX as the
# established non-Rust reference, on the same training steps, alternated so that a noisy
# machine's drift falls on every framework alike.
#
#     bash benches/compare/rust_peers/side_by_side.sh [THREADS] [ROUNDS] [PYTHON]
#
# THREADS (default 1) pins every process to the first THREADS cores (taskset) and sets
# RAYON_NUM_THREADS (gradscope, Burn and Candle all run on rayon) and XLA's pool alike.
# ROUNDS (default 2) alternations of every framework on each model. PYTHON (default
# python3) must have jax and optax (pip install jax==0.10.2 optax==0.2.8); without them
# the JAX rows are skipped with a note. Writes one JSON per run under
# benches/compare/results/rust_peers/ (named by framework, model, threads, round and day)
# and prints each framework's result line.
set -euo pipefail
cd "$(dirname "$0")/../../.."
threads=${1:-1}
rounds=${2:-2}
python=${3:-python3}
cores="0-$((threads - 1))"
out=benches/compare/results/rust_peers
day=$(date -u +%F)
mkdir -p "$out"

cargo build --release --bench train_step -q
gradscope_bench=$(ls -t target/release/deps/train_step-* | grep -v '\.d$' | head -1)
(cd benches/compare/rust_peers && cargo build --release -q)
peers=benches/compare/rust_peers/target/release/rust_peers
have_jax=1
"$python" -c 'import jax, optax' 2>/dev/null || {
  have_jax=0
  echo "note: $python has no jax/optax; the JAX rows are skipped"
}

export RAYON_NUM_THREADS=$threads
grep -m1 'model name' /proc/cpuinfo
echo "threads: $threads (taskset -c $cores), rounds: $rounds, $day"
for round in $(seq 1 "$rounds"); do
  for model in mlp resnet20; do
    echo "== round $round, $model"
    taskset -c "$cores" "$gradscope_bench" --model "$model" --device cpu --json \
      > "$out/gradscope_${model}_t${threads}_r${round}_${day}.json"
    "$python" - "$out/gradscope_${model}_t${threads}_r${round}_${day}.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"gradscope {r['model']}, batch {r['batch']}: full statistics "
          f"{r['samples_per_s_full_stats']:.0f}, gradient norms {r['samples_per_s_grad_norms']:.0f}, "
          f"no statistics {r['samples_per_s_no_stats']:.0f} samples/s")
PY
    for framework in burn candle; do
      taskset -c "$cores" "$peers" --framework "$framework" --model "$model" \
        --json "$out/${framework}_${model}_t${threads}_r${round}_${day}.json" | tail -1
    done
    if [ "$have_jax" = 1 ]; then
      script=benches/compare/jax_cpu_mlp_step.py
      [ "$model" = resnet20 ] && script=benches/compare/jax_cpu_resnet_step.py
      (cd benches/compare && taskset -c "$cores" "$python" "$(basename "$script")" --threads "$threads") | tail -1
    fi
  done
done
