"""Golden values for a small convolutional network with BatchNorm and a projection
shortcut, trained whole (tests/golden_convnet.rs).

The network, per-sample input [2, 6, 6], batch 4, 3 classes:
  stem            = conv 3x3, 2 -> 4 channels, stride 1, pad 1, with bias
  stem_bn, ReLU
  block.conv1     = conv 3x3, 4 -> 6, stride 2, pad 1, no bias;  block.bn1, ReLU
  block.conv2     = conv 3x3, 6 -> 6, stride 1, pad 1, no bias;  block.bn2
  block.shortcut  = conv 1x1, 4 -> 6, stride 2, no bias, on the stem's output;
                    block.shortcut_bn
  add, ReLU, global average pooling, fc = linear 6 -> 3,
  loss = batch mean of softmax cross-entropy with integer labels.

PyTorch's semantics written out in JAX float64 (torch is not needed): NCHW activations,
weights [out, in, kh, kw] (cross-correlation, as nn.Conv2d), linear weight [out, in].
BatchNorm in training mode normalizes with the batch mean and the BIASED batch variance
over (N, H, W), eps 1e-5, and updates running_mean = 0.9 * running_mean + 0.1 * mean,
running_var = 0.9 * running_var + 0.1 * var * M / (M - 1) (UNBIASED), M = N*H*W, from
torch's initial running_mean = 0, running_var = 1.

Recorded: inputs, labels, the parameters by name, the loss, every gradient (jax.grad
through the forward above, independent of gradscope's closed-form backwards), and after 3
plain SGD steps (lr 0.1, no weight decay, the same batch each step, gradients recomputed
each step) the parameters, the running statistics of every BatchNorm and the 3 losses.

Inputs and parameters are drawn seeded (numpy default_rng) and rounded to float32, so the
f32 values the GPU executor is given equal these exactly.
Run: python3 tests/golden/make_convnet_golden.py > tests/golden/convnet_golden.json
"""
import json

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax import lax

EPS = 1e-5
MOMENTUM = 0.1
LR = 0.1
STEPS = 3
BATCH, C_IN, H, W, CLASSES = 4, 2, 6, 6, 3
rng = np.random.default_rng(20261207)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def normal(std, shape):
    return f32(rng.normal(0.0, std, shape))


# (name, out channels, in channels, kernel, bias).
convs = [
    ("stem", 4, C_IN, 3, True),
    ("block.conv1", 6, 4, 3, False),
    ("block.conv2", 6, 6, 3, False),
    ("block.shortcut", 6, 4, 1, False),
]
bns = [("stem_bn", 4), ("block.bn1", 6), ("block.bn2", 6), ("block.shortcut_bn", 6)]

params = {}
for name, out, cin, k, bias in convs:
    params[f"{name}.weight"] = normal(0.3, (out, cin, k, k))
    if bias:
        params[f"{name}.bias"] = normal(0.1, (out,))
for name, c in bns:
    params[f"{name}.weight"] = f32(1.0 + rng.normal(0.0, 0.1, (c,)))
    params[f"{name}.bias"] = normal(0.1, (c,))
params["fc.weight"] = normal(0.3, (CLASSES, 6))
params["fc.bias"] = normal(0.1, (CLASSES,))

inputs = f32(rng.normal(0.0, 1.0, (BATCH, C_IN, H, W)))
labels = rng.integers(0, CLASSES, BATCH)


def conv(x, w, stride, pad, b=None):
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=(stride, stride),
        padding=[(pad, pad), (pad, pad)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=lax.Precision.HIGHEST,
    )
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def bn(p, name, x, stats):
    mean = jnp.mean(x, axis=(0, 2, 3))
    var = jnp.mean((x - mean[None, :, None, None]) ** 2, axis=(0, 2, 3))
    stats[name] = (mean, var, x.shape[0] * x.shape[2] * x.shape[3])
    xhat = (x - mean[None, :, None, None]) / jnp.sqrt(var[None, :, None, None] + EPS)
    return p[f"{name}.weight"][None, :, None, None] * xhat + p[f"{name}.bias"][None, :, None, None]


def forward(p, x, y):
    stats = {}
    relu = jax.nn.relu
    s = relu(bn(p, "stem_bn", conv(x, p["stem.weight"], 1, 1, p["stem.bias"]), stats))
    a = relu(bn(p, "block.bn1", conv(s, p["block.conv1.weight"], 2, 1), stats))
    a = bn(p, "block.bn2", conv(a, p["block.conv2.weight"], 1, 1), stats)
    sc = bn(p, "block.shortcut_bn", conv(s, p["block.shortcut.weight"], 2, 0), stats)
    h = relu(a + sc)
    g = jnp.mean(h, axis=(2, 3))
    logits = jnp.matmul(g, p["fc.weight"].T, precision=lax.Precision.HIGHEST) + p["fc.bias"]
    logp = jax.nn.log_softmax(logits, axis=1)
    loss = -jnp.mean(logp[jnp.arange(x.shape[0]), y])
    return loss, stats


def loss_only(p, x, y):
    return forward(p, x, y)[0]


def flat(a):
    return np.asarray(a).ravel().tolist()


p0 = {k: jnp.asarray(v) for k, v in params.items()}
x = jnp.asarray(inputs)
y = jnp.asarray(labels)
loss0 = float(loss_only(p0, x, y))
grads0 = jax.grad(loss_only)(p0, x, y)

p = dict(p0)
running = {}
for name, c in bns:
    running[f"{name}.running_mean"] = np.zeros(c)
    running[f"{name}.running_var"] = np.ones(c)
losses = []
for _ in range(STEPS):
    loss, stats = forward(p, x, y)
    losses.append(float(loss))
    for name, (mean, var, m) in stats.items():
        rm, rv = f"{name}.running_mean", f"{name}.running_var"
        running[rm] = (1 - MOMENTUM) * running[rm] + MOMENTUM * np.asarray(mean)
        running[rv] = (1 - MOMENTUM) * running[rv] + MOMENTUM * np.asarray(var) * m / (m - 1)
    g = jax.grad(loss_only)(p, x, y)
    p = {k: p[k] - LR * g[k] for k in p}

out = {
    "input_shape": [C_IN, H, W],
    "batch": BATCH,
    "classes": CLASSES,
    "eps": EPS,
    "momentum": MOMENTUM,
    "inputs": flat(inputs),
    "labels": [int(v) for v in labels],
    "params": {k: flat(v) for k, v in params.items()},
    "loss": loss0,
    "grads": {k: flat(v) for k, v in grads0.items()},
    "sgd": {
        "lr": LR,
        "steps": STEPS,
        "losses": losses,
        "params_after": {k: flat(v) for k, v in p.items()},
        "running_after": {k: flat(v) for k, v in running.items()},
    },
}
print(json.dumps(out, indent=1))
