"""JAX's CPU training step of the MLP that `cargo bench --bench train_step` times:
784-256-256-10, ReLU, softmax cross-entropy, Adam (lr 1e-4, optax), batch 128, one fixed
batch, float32, the whole step (forward, backward, update) compiled once with jax.jit.
Same protocol as the Rust bench and torch_cpu_mlp_step.py: 3 warm-up steps, then the
median of R runs of S steps, in samples/s.

    python3 benches/compare/jax_cpu_mlp_step.py [--threads N] [--steps S] [--repeats R]
                                                [--per-step N]

--per-step N times each of N steps apart (each waited for) and prints the minimum, tenth
percentile and median, as `train_step --per-step` does.

--threads sets XLA's CPU thread pool (intra-op parallelism) before JAX starts; default
every core, as rayon's pool.
"""

import argparse
import os
import statistics
import time

from xla_cpu import use_threads

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--per-step", type=int, default=0)
args = parser.parse_args()
# XLA reads its thread counts at start-up: set them before importing jax.
use_threads(args.threads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

BATCH = 128
SIZES = [784, 256, 256, 10]

key = jax.random.PRNGKey(0)
params = []
for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
    key, sub = jax.random.split(key)
    # He (Kaiming) normal, as the Rust bench and the PyTorch script initialize.
    w = jax.random.normal(sub, (fan_out, fan_in), jnp.float32) * jnp.sqrt(2.0 / fan_in)
    params.append((w, jnp.zeros((fan_out,), jnp.float32)))

inputs = jnp.array(
    [((i * 7919) % 255) / 255.0 - 0.5 for i in range(BATCH * 784)], dtype=jnp.float32
).reshape(BATCH, 784)
labels = jnp.array([i % 10 for i in range(BATCH)])


def loss_fn(params, x, y):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w.T + b
        if i + 1 < len(params):
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


opt = optax.adam(1e-4)
state = opt.init(params)


@jax.jit
def step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss


for _ in range(3):
    params, state, loss = step(params, state, inputs, labels)
loss.block_until_ready()
rates = []
for _ in range(args.repeats):
    t0 = time.perf_counter()
    for _ in range(args.steps):
        params, state, loss = step(params, state, inputs, labels)
    loss.block_until_ready()
    rates.append(args.steps * BATCH / (time.perf_counter() - t0))
rate = statistics.median(rates)
print(f"jax {jax.__version__} (jit, CPU, {args.threads} threads requested); MLP "
      f"784-256-256-10, batch {BATCH}, Adam; median of {args.repeats} runs of {args.steps} "
      f"steps")
print(f"jax jit, Adam: {rate:10.0f} samples/s ({1e3 * BATCH / rate:.3f} ms/step)")

if args.per_step > 0:
    times = []
    for _ in range(args.per_step):
        t0 = time.perf_counter()
        params, state, loss = step(params, state, inputs, labels)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    times.sort()
    lo, p10, med = (1e3 * times[int((len(times) - 1) * q)] for q in (0.0, 0.1, 0.5))
    print(f"jax jit, Adam, {args.per_step} steps apart: min {lo:.3f} p10 {p10:.3f} median "
          f"{med:.3f} ms/step ({1e3 * BATCH / med:.0f} samples/s at the median)")
