"""JAX's CPU training step of the resnet-20 that `gradscope bench --op step` times as
"step resnet20": CIFAR-style resnet-20 (a 3×3 stem of 16 channels, three stages of three
basic blocks of 16, 32 and 64 channels, the first block of stages 2 and 3 with stride 2 and
a 1×1 convolution + BatchNorm shortcut), BatchNorm in training mode after every
convolution, ReLU, global average pooling, a dense layer to 10 classes, softmax
cross-entropy, momentum SGD (optax, lr 0.1, momentum 0.9), on 3×32×32 inputs, float32, NCHW.
The whole step (forward, backward, update, BatchNorm's running statistics) is compiled once
with jax.jit. Same protocol as the other comparison scripts: warm-up steps, then the median
of R runs of S steps, in samples/s.

    python3 benches/compare/jax_cpu_resnet_step.py [--threads N] [--batch B] [--steps S] [--repeats R]

--threads sets XLA's CPU thread pool before JAX starts; default every core, as rayon's pool.
"""

import argparse
import os
import statistics
import time

from xla_cpu import use_threads

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--repeats", type=int, default=5)
args = parser.parse_args()
# XLA reads its thread counts at start-up: set them before importing jax.
use_threads(args.threads)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

EPS = 1e-5
MOMENTUM = 0.1  # BatchNorm's running-statistics momentum, PyTorch's convention


def conv_params(key, c_in, c_out, k):
    # He (Kaiming) normal over fan-in, as the Rust bench initializes.
    std = (2.0 / (c_in * k * k)) ** 0.5
    return jax.random.normal(key, (c_out, c_in, k, k), jnp.float32) * std


def bn_params(c):
    return {"gamma": jnp.ones((c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)}


def bn_state(c):
    return {"mean": jnp.zeros((c,), jnp.float32), "var": jnp.ones((c,), jnp.float32)}


def init(key):
    keys = iter(jax.random.split(key, 64))
    params = {"stem": conv_params(next(keys), 3, 16, 3), "stem_bn": bn_params(16), "blocks": []}
    state = {"stem_bn": bn_state(16), "blocks": []}
    c_in = 16
    for stage, c_out in enumerate([16, 32, 64]):
        for b in range(3):
            stride = 2 if stage > 0 and b == 0 else 1
            p = {
                "conv1": conv_params(next(keys), c_in, c_out, 3),
                "bn1": bn_params(c_out),
                "conv2": conv_params(next(keys), c_out, c_out, 3),
                "bn2": bn_params(c_out),
            }
            s = {"bn1": bn_state(c_out), "bn2": bn_state(c_out)}
            if stride != 1 or c_in != c_out:
                p["short"] = conv_params(next(keys), c_in, c_out, 1)
                p["short_bn"] = bn_params(c_out)
                s["short_bn"] = bn_state(c_out)
            params["blocks"].append((p, stride))
            state["blocks"].append(s)
            c_in = c_out
    params["fc_w"] = jax.random.normal(next(keys), (10, 64), jnp.float32) * (2.0 / 64) ** 0.5
    params["fc_b"] = jnp.zeros((10,), jnp.float32)
    return params, state


def conv(x, w, stride):
    pad = w.shape[-1] // 2
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(pad, pad), (pad, pad)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )


def batchnorm(x, p, s):
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    m = x.shape[0] * x.shape[2] * x.shape[3]
    new = {
        "mean": (1 - MOMENTUM) * s["mean"] + MOMENTUM * mean,
        "var": (1 - MOMENTUM) * s["var"] + MOMENTUM * var * m / (m - 1),
    }
    xhat = (x - mean[None, :, None, None]) * jax.lax.rsqrt(var + EPS)[None, :, None, None]
    return p["gamma"][None, :, None, None] * xhat + p["beta"][None, :, None, None], new


def forward(params, state, x):
    new_state = {"blocks": []}
    h, new_state["stem_bn"] = batchnorm(conv(x, params["stem"], 1), params["stem_bn"], state["stem_bn"])
    h = jax.nn.relu(h)
    for (p, stride), s in zip(params["blocks"], state["blocks"]):
        ns = {}
        y, ns["bn1"] = batchnorm(conv(h, p["conv1"], stride), p["bn1"], s["bn1"])
        y = jax.nn.relu(y)
        y, ns["bn2"] = batchnorm(conv(y, p["conv2"], 1), p["bn2"], s["bn2"])
        if "short" in p:
            sc, ns["short_bn"] = batchnorm(conv(h, p["short"], stride), p["short_bn"], s["short_bn"])
        else:
            sc = h
        h = jax.nn.relu(y + sc)
        new_state["blocks"].append(ns)
    h = h.mean(axis=(2, 3))
    return h @ params["fc_w"].T + params["fc_b"], new_state


def main():
    params, state = init(jax.random.PRNGKey(0))
    strides = [stride for _, stride in params["blocks"]]
    # The strides are structure, not parameters: keep them out of the differentiated tree.
    params = {**params, "blocks": [p for p, _ in params["blocks"]]}

    def loss_fn(params, state, x, y):
        tree = {**params, "blocks": list(zip(params["blocks"], strides))}
        logits, new_state = forward(tree, state, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state

    opt = optax.sgd(0.1, momentum=0.9)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, state, opt_state, x, y):
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    b = args.batch
    x = jnp.array([((i * 7919) % 255) / 255.0 for i in range(b * 3 * 32 * 32)], jnp.float32)
    x = x.reshape(b, 3, 32, 32)
    y = jnp.array([i % 10 for i in range(b)])

    for _ in range(3):
        params, state, opt_state, loss = step(params, state, opt_state, x, y)
    loss.block_until_ready()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            params, state, opt_state, loss = step(params, state, opt_state, x, y)
        loss.block_until_ready()
        rates.append(args.steps * b / (time.perf_counter() - start))
    rate = statistics.median(rates)
    print(f"jax jit, resnet-20 3x32x32, batch {b}, momentum SGD: {rate:9.1f} samples/s "
          f"({1e3 * b / rate:.2f} ms/step, {args.threads} threads, jax {jax.__version__})")


if __name__ == "__main__":
    main()
