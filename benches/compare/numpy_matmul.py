"""float32 matmul throughput of numpy (its BLAS, OpenBLAS in the PyPI wheel) at the sizes
`cargo bench --bench cpu_matmul` measures, so the two tables read side by side.

    python3 benches/compare/numpy_matmul.py [--threads N] [--repeats R] [--json OUT]

The thread count is fixed through OPENBLAS_NUM_THREADS (set before numpy is imported) to
match rayon's pool on the Rust side (by default both use every core). Each size: a warm-up
product, then the median of R timed runs, each of enough products to last about 0.2 s.
"""

import argparse
import json
import os
import statistics
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--repeats", type=int, default=7)
parser.add_argument("--json", help="also write the results to this file")
args = parser.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402  (after the thread variables)

# (name, M, K, N): C(M,N) = A(M,K)·B(K,N). Square sizes, then the products of an MLP
# 784-256-256-10 step at batch 128 (forward x·Wᵀ, input gradient dy·W, weight gradient dyᵀ·x).
SIZES = [
    ("square", 256, 256, 256),
    ("square", 512, 512, 512),
    ("square", 1024, 1024, 1024),
    ("square", 2048, 2048, 2048),
    ("mlp fwd 1", 128, 784, 256),
    ("mlp fwd 2", 128, 256, 256),
    ("mlp dW 1", 256, 128, 784),
    ("mlp dx 2", 128, 256, 256),
]


def operands(name, m, k, n, rng):
    """The operands in the layout the Rust side uses for that product (transposes are views)."""
    if name.startswith("mlp fwd"):
        return rng.standard_normal((m, k), np.float32), rng.standard_normal((n, k), np.float32).T
    if name.startswith("mlp dW"):
        return rng.standard_normal((k, m), np.float32).T, rng.standard_normal((k, n), np.float32)
    return rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)


def measure(m, k, n, a, b):
    c = np.empty((m, n), np.float32)
    np.matmul(a, b, out=c)
    start = time.perf_counter()
    reps = 0
    while time.perf_counter() - start < 0.05:
        np.matmul(a, b, out=c)
        reps += 1
    per_run = max(1, int(reps * 0.2 / max(time.perf_counter() - start, 1e-9)))
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(per_run):
            np.matmul(a, b, out=c)
        rates.append(2.0 * m * k * n * per_run / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # older numpy: no dict mode
        return "unknown BLAS"


rng = np.random.default_rng(0)
rows = []
print(f"numpy {np.__version__} ({blas_name()}), float32, {args.threads} threads, "
      f"median of {args.repeats} runs (GFLOP/s)")
print(f"{'product':<10} {'M':>5} {'K':>5} {'N':>5} {'GFLOP/s':>9}")
for name, m, k, n in SIZES:
    a, b = operands(name, m, k, n, rng)
    g = measure(m, k, n, a, b)
    rows.append({"name": name, "m": m, "k": k, "n": n, "gflops": g})
    print(f"{name:<10} {m:>5} {k:>5} {n:>5} {g:>9.1f}")
    sys.stdout.flush()
if args.json:
    with open(args.json, "w") as f:
        json.dump({"numpy": np.__version__, "blas": blas_name(), "threads": args.threads,
                   "results": rows}, f, indent=2)
