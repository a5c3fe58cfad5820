"""Golden values for gradscope's pooling kernels (tests/kernel_pool2d.rs).

An independent framework's pooling: jax.lax.reduce_window in float64, max with −inf
padding (init −inf) and average as an add-window divided by kh·kw (PyTorch's default
count_include_pad=True; jax.lax.reduce_window pads with the init value, 0 for add).
Gradients are jax.grad of sum(y · g) for a fixed seeded upstream gradient g, i.e. the
vector-Jacobian product dx = Jᵀg that gradscope's backward kernels compute. Inputs are
continuous random values, so max-pool windows have no ties.

Inputs are rounded to f32 first, so gradscope's f32 inputs equal these float64 ones.

Run: python3 tests/golden/make_pool_golden.py > tests/golden/pool_golden.json
"""
import json

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

rng = np.random.default_rng(20261203)

# (n, c, h, w, kh, kw, stride, pad)
configs = [
    (2, 3, 7, 6, 3, 3, (2, 2), (1, 1)),
    (1, 2, 5, 9, 2, 3, (1, 2), (0, 1)),
    (2, 1, 8, 8, 2, 2, (2, 2), (0, 0)),
]


def pool(x, kind, kh, kw, stride, pad):
    window = (1, 1, kh, kw)
    strides = (1, 1) + tuple(stride)
    padding = ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]))
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
    return s / (kh * kw)


cases = []
for n, c, h, w, kh, kw, stride, pad in configs:
    x = rng.normal(0.0, 1.0, (n, c, h, w)).astype(np.float32).astype(np.float64)
    for kind in ["max", "avg"]:
        y = pool(jnp.asarray(x), kind, kh, kw, stride, pad)
        g = rng.normal(0.0, 1.0, y.shape).astype(np.float32).astype(np.float64)
        dx = jax.grad(lambda x_: jnp.sum(pool(x_, kind, kh, kw, stride, pad) * g))(jnp.asarray(x))
        cases.append(
            {
                "kind": kind,
                "n": n, "c": c, "h": h, "w": w, "kh": kh, "kw": kw,
                "stride": list(stride), "pad": list(pad),
                "out_hw": list(y.shape[2:]),
                "x": x.ravel().tolist(),
                "y": np.asarray(y).ravel().tolist(),
                "dy": g.ravel().tolist(),
                "dx": np.asarray(dx).ravel().tolist(),
            }
        )

print(json.dumps({"cases": cases}, indent=1))
