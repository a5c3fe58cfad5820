"""Golden values for gradscope's normalization kernels (tests/kernel_batchnorm.rs,
tests/kernel_layernorm.rs).

PyTorch's semantics written out explicitly in JAX float64 (torch is not needed):
- nn.BatchNorm1d on [N, C] and nn.BatchNorm2d on NCHW, training mode: per channel over
  (N, H, W), mean and biased variance, y = gamma * (x - mean) / sqrt(var + eps) + beta;
  running_mean = (1 - momentum) * running_mean + momentum * mean and
  running_var = (1 - momentum) * running_var + momentum * var * M / (M - 1) (unbiased),
  M = N*H*W, starting from torch's initial running_mean = 0, running_var = 1.
  Evaluation mode: the same formula with the running statistics.
- nn.LayerNorm(d): per row over the last d features, biased variance, elementwise affine.
eps = 1e-5, momentum = 0.1 (torch's defaults).

Gradients are those of L = sum(w * y) for a fixed random w (sum(y) alone would give a zero
dx for batch norm), taken by jax.grad through the forward above: independent of the
closed-form backward gradscope implements.

Inputs are drawn seeded and rounded to float32, so gradscope's f32 inputs equal these.
Run: python3 tests/golden/make_norm_golden.py > tests/golden/norm_golden.json
"""
import json

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

EPS = 1e-5
MOMENTUM = 0.1
rng = np.random.default_rng(20261203)


def draw(shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32).astype(np.float64)


def bn_train(x, gamma, beta):
    # x: [N, C, S]; statistics over axes 0 and 2 (N and the spatial positions).
    mean = jnp.mean(x, axis=(0, 2))
    var = jnp.mean((x - mean[None, :, None]) ** 2, axis=(0, 2))
    inv_std = 1.0 / jnp.sqrt(var + EPS)
    xhat = (x - mean[None, :, None]) * inv_std[None, :, None]
    y = gamma[None, :, None] * xhat + beta[None, :, None]
    return y, mean, var, inv_std


def bn_eval(x, gamma, beta, rm, rv):
    return (
        gamma[None, :, None] * (x - rm[None, :, None]) / jnp.sqrt(rv[None, :, None] + EPS)
        + beta[None, :, None]
    )


def flat(a):
    return np.asarray(a).ravel().tolist()


def bn_case(name, n, c, s):
    xs = [draw((n, c, s)) for _ in range(2)]
    x_eval = draw((n, c, s))
    gamma = draw((c,), 0.5, 1.5)
    beta = draw((c,), -0.5, 0.5)
    w = draw((n, c, s), -1.0, 1.0)
    rm, rv = np.zeros(c), np.ones(c)
    m = n * s
    steps = []
    for x in xs:
        y, mean, var, inv_std = bn_train(jnp.asarray(x), gamma, beta)
        loss = lambda x, g, b: jnp.sum(w * bn_train(x, g, b)[0])
        dx, dgamma, dbeta = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(x), gamma, beta)
        rm = (1 - MOMENTUM) * rm + MOMENTUM * np.asarray(mean)
        rv = (1 - MOMENTUM) * rv + MOMENTUM * np.asarray(var) * m / (m - 1)
        steps.append(
            {
                "x": flat(x),
                "y": flat(y),
                "mean": flat(mean),
                "inv_std": flat(inv_std),
                "dx": flat(dx),
                "dgamma": flat(dgamma),
                "dbeta": flat(dbeta),
                "running_mean": flat(rm),
                "running_var": flat(rv),
            }
        )
    return {
        "name": name,
        "n": n,
        "c": c,
        "s": s,
        "gamma": flat(gamma),
        "beta": flat(beta),
        "w": flat(w),
        "steps": steps,
        "x_eval": flat(x_eval),
        "y_eval": flat(bn_eval(jnp.asarray(x_eval), gamma, beta, rm, rv)),
    }


def ln_forward(x, gamma, beta):
    mean = jnp.mean(x, axis=1)
    var = jnp.mean((x - mean[:, None]) ** 2, axis=1)
    inv_std = 1.0 / jnp.sqrt(var + EPS)
    return gamma[None, :] * ((x - mean[:, None]) * inv_std[:, None]) + beta[None, :], mean, inv_std


def ln_case(name, rows, d):
    x = draw((rows, d))
    gamma = draw((d,), 0.5, 1.5)
    beta = draw((d,), -0.5, 0.5)
    w = draw((rows, d), -1.0, 1.0)
    y, mean, inv_std = ln_forward(jnp.asarray(x), gamma, beta)
    loss = lambda x, g, b: jnp.sum(w * ln_forward(x, g, b)[0])
    dx, dgamma, dbeta = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(x), gamma, beta)
    return {
        "name": name,
        "rows": rows,
        "d": d,
        "x": flat(x),
        "gamma": flat(gamma),
        "beta": flat(beta),
        "w": flat(w),
        "y": flat(y),
        "mean": flat(mean),
        "inv_std": flat(inv_std),
        "dx": flat(dx),
        "dgamma": flat(dgamma),
        "dbeta": flat(dbeta),
    }


out = {
    "eps": EPS,
    "momentum": MOMENTUM,
    "batchnorm": [
        bn_case("batchnorm1d_5x3", 5, 3, 1),
        bn_case("batchnorm2d_3x2x3x2", 3, 2, 6),
        bn_case("batchnorm2d_1x3x5x5", 1, 3, 25),
    ],
    "layernorm": [
        ln_case("layernorm_4x7", 4, 7),
        ln_case("layernorm_3x1", 3, 1),
        ln_case("layernorm_2x300", 2, 300),
    ],
}
print(json.dumps(out, indent=1))
