"""Golden values for gradscope's MLP forward/backward and optimizer tests.

What it computes
  For a set of small multilayer perceptrons (PyTorch conventions: Linear layer i has
  weight W_i of shape [out, in] = [d_{i+1}, d_i] and bias b_i of shape [d_{i+1}];
  y = x @ W^T + b; the case's activation follows every Linear except the last, whose
  output is the logits), it records, in float64:
    - the inputs, integer labels and initial parameters,
    - the logits, the loss ("xent": batch mean of softmax cross-entropy with integer
      labels; "mse": mean over all elements of (logits - onehot(labels))^2, i.e. PyTorch
      MSELoss(reduction="mean")),
    - the gradient of the loss w.r.t. every parameter (jax.grad) and its L2 norm,
    - for the cases "tanh_sigmoid_xent" and "relu_mse", 3 steps of each optimizer
      (sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw) on the same batch, with
      the loss before each step and the parameters after the 3 steps.

  Activations (PyTorch definitions): identity; sigmoid; tanh; relu; leaky_relu (negative
  slope 0.01); elu (alpha 1); selu (alpha 1.6732632423543772848170429916717,
  scale 1.0507009873554804934193349852946); gelu (exact: 0.5 x (1 + erf(x / sqrt 2)));
  softplus (beta 1, threshold 20: x if x > 20 else log1p(exp(x))).

  Optimizer update rules are written out by hand, in float64, exactly as the torch.optim
  documentation states them (torch is not needed; the rules were checked against the
  torch.optim docs / source semantics: SGD with dampening 0, Adagrad with lr_decay 0 and
  initial_accumulator_value 0, RMSprop non-centered without momentum, Adam/AdamW without
  amsgrad). With g = grad + wd * p (except adamw, where g = grad):
    sgd:      p -= lr * g
    momentum: buf = mu * buf + g (buf starts at 0);  p -= lr * buf
    nesterov: buf = mu * buf + g;  p -= lr * (g + mu * buf)
    adagrad:  sum += g^2;  p -= lr * g / (sqrt(sum) + eps)            (eps 1e-10)
    rmsprop:  v = alpha * v + (1 - alpha) * g^2;  p -= lr * g / (sqrt(v) + eps)
              (alpha = the "beta2" field = 0.99, eps 1e-8)
    adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  bc1 = 1 - b1^t;
              bc2 = 1 - b2^t;  p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    adamw:    p *= (1 - lr * wd); then the adam step with g = grad.
  Gradients at each step are recomputed with jax.grad at the current parameters.
  Fields of an optimizer entry that a kind does not use are still written: "momentum"
  is used only by momentum/nesterov, "beta1" only by adam/adamw, "beta2" is rmsprop's
  alpha (0.99) or adam's beta2 (0.999) and 0 otherwise, "eps" is 0 for the sgd family.

  Random data: each case uses numpy.random.default_rng(case["seed"]) and draws, in this
  order, for each layer i = 0..L-1: weight normal(0, 0.5, [d_{i+1}, d_i]) then bias
  normal(0, 0.1, [d_{i+1}]); then inputs normal(0, 1, [batch, d_0]); then labels
  integers(0, d_L, batch).

  As a self-check the script asserts that jax.grad agrees with a central finite
  difference on a few entries of every case.

With what
  JAX (version recorded in the JSON's "generator" field) with jax_enable_x64, and numpy.

How to rerun
  pip install jax numpy; python3 tests/golden/make_golden.py
  It writes mlp_golden.json next to this script (floats in full repr precision).

JSON schema
  {"generator": str, "description": str,
   "cases": [{"name", "seed", "sizes": [int], "activations": [str] (one per hidden
     layer), "loss": "xent"|"mse", "batch": int, "inputs": [[float]] (batch x d0),
     "labels": [int], "params": {"layers.{i}.weight": [[float]], "layers.{i}.bias":
     [float]}, "loss_value": float, "logits": [[float]], "grads": {same keys as params},
     "grad_norms": {name: float},
     "optimizers" (only some cases): [{"kind", "lr", "momentum", "beta1", "beta2", "eps",
       "weight_decay", "steps": 3, "losses": [loss before step 1, 2, 3],
       "loss_after": loss after step 3, "params_after": {name: nested list}}]}]}
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def act_fn(name, x):
    if name == "identity":
        return x
    if name == "sigmoid":
        return jax.nn.sigmoid(x)
    if name == "tanh":
        return jnp.tanh(x)
    if name == "relu":
        return jnp.maximum(x, 0.0)
    if name == "leaky_relu":
        return jnp.where(x > 0, x, 0.01 * x)
    if name == "elu":
        return jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0.0)))
    if name == "selu":
        return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))
    if name == "gelu":
        return 0.5 * x * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))
    if name == "softplus":
        return jnp.where(x > 20.0, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20.0))))
    raise ValueError(name)


ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu",
               "gelu", "softplus"]


def pname(i, kind):
    return f"layers.{i}.{kind}"


def forward(params, x, acts):
    n = len(acts) + 1
    h = x
    for i in range(n):
        h = h @ params[pname(i, "weight")].T + params[pname(i, "bias")]
        if i < n - 1:
            h = act_fn(acts[i], h)
    return h


def loss_fn(params, x, labels, acts, loss):
    logits = forward(params, x, acts)
    if loss == "xent":
        lse = jax.scipy.special.logsumexp(logits, axis=1)
        picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        return jnp.mean(lse - picked)
    if loss == "mse":
        onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=logits.dtype)
        return jnp.mean((logits - onehot) ** 2)
    raise ValueError(loss)


def make_data(seed, sizes, batch):
    rng = np.random.default_rng(seed)
    params = {}
    for i in range(len(sizes) - 1):
        params[pname(i, "weight")] = rng.normal(0.0, 0.5, (sizes[i + 1], sizes[i]))
        params[pname(i, "bias")] = rng.normal(0.0, 0.1, (sizes[i + 1],))
    x = rng.normal(0.0, 1.0, (batch, sizes[0]))
    labels = rng.integers(0, sizes[-1], batch)
    return params, x, labels


def to_list(a):
    return np.asarray(a, dtype=np.float64).tolist()


OPTIMIZERS = [
    # kind, lr, beta2, eps, weight_decay
    ("sgd", 0.1, 0.0, 0.0, 0.001),
    ("momentum", 0.1, 0.0, 0.0, 0.001),
    ("nesterov", 0.1, 0.0, 0.0, 0.001),
    ("adagrad", 0.1, 0.0, 1e-10, 0.001),
    ("rmsprop", 0.01, 0.99, 1e-8, 0.001),
    ("adam", 0.01, 0.999, 1e-8, 0.001),
    ("adamw", 0.01, 0.999, 1e-8, 0.01),
]
MU = 0.9
BETA1 = 0.9
STEPS = 3


def run_optimizer(kind, lr, beta2, eps, wd, params0, lossf, gradf):
    p = {k: np.array(v, dtype=np.float64) for k, v in params0.items()}
    state1 = {k: np.zeros_like(v) for k, v in p.items()}  # buf / sum / v / m
    state2 = {k: np.zeros_like(v) for k, v in p.items()}  # adam's v
    losses = []
    for t in range(1, STEPS + 1):
        losses.append(float(lossf(p)))
        grads = {k: np.asarray(v, dtype=np.float64) for k, v in gradf(p).items()}
        for k in p:
            grad = grads[k]
            if kind == "adamw":
                p[k] = p[k] * (1.0 - lr * wd)
                g = grad
            else:
                g = grad + wd * p[k]
            if kind == "sgd":
                p[k] = p[k] - lr * g
            elif kind == "momentum":
                state1[k] = MU * state1[k] + g
                p[k] = p[k] - lr * state1[k]
            elif kind == "nesterov":
                state1[k] = MU * state1[k] + g
                p[k] = p[k] - lr * (g + MU * state1[k])
            elif kind == "adagrad":
                state1[k] = state1[k] + g * g
                p[k] = p[k] - lr * g / (np.sqrt(state1[k]) + eps)
            elif kind == "rmsprop":
                state1[k] = beta2 * state1[k] + (1.0 - beta2) * g * g
                p[k] = p[k] - lr * g / (np.sqrt(state1[k]) + eps)
            elif kind in ("adam", "adamw"):
                state1[k] = BETA1 * state1[k] + (1.0 - BETA1) * g
                state2[k] = beta2 * state2[k] + (1.0 - beta2) * g * g
                bc1 = 1.0 - BETA1 ** t
                bc2 = 1.0 - beta2 ** t
                denom = np.sqrt(state2[k]) / math.sqrt(bc2) + eps
                p[k] = p[k] - (lr / bc1) * state1[k] / denom
            else:
                raise ValueError(kind)
    loss_after = float(lossf(p))
    return losses, loss_after, p


def fd_check(params, lossf, grads, name):
    """Central finite difference on a few entries of every parameter tensor."""
    h = 1e-6
    for k, v in params.items():
        flat_idx = [0, v.size - 1]
        for fi in flat_idx:
            idx = np.unravel_index(fi, v.shape)
            pp = {kk: np.array(vv) for kk, vv in params.items()}
            pm = {kk: np.array(vv) for kk, vv in params.items()}
            pp[k][idx] += h
            pm[k][idx] -= h
            fd = (float(lossf(pp)) - float(lossf(pm))) / (2 * h)
            an = float(np.asarray(grads[k])[idx])
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)) + 1e-8, \
                f"{name} {k}{idx}: jax.grad {an!r} vs finite difference {fd!r}"


def make_case(name, seed, sizes, acts, loss, batch, with_opt):
    assert len(acts) == len(sizes) - 2
    params, x, labels = make_data(seed, sizes, batch)
    xj = jnp.asarray(x)
    lj = jnp.asarray(labels)
    lossf = jax.jit(lambda p: loss_fn(p, xj, lj, acts, loss))
    gradf = jax.jit(jax.grad(lambda p: loss_fn(p, xj, lj, acts, loss)))
    loss_value = float(lossf(params))
    grads = {k: np.asarray(v, dtype=np.float64) for k, v in gradf(params).items()}
    logits = np.asarray(forward(params, xj, acts))
    fd_check(params, lossf, grads, name)
    case = {
        "name": name,
        "seed": seed,
        "sizes": sizes,
        "activations": acts,
        "loss": loss,
        "batch": batch,
        "inputs": to_list(x),
        "labels": [int(v) for v in labels],
        "params": {k: to_list(v) for k, v in params.items()},
        "loss_value": loss_value,
        "logits": to_list(logits),
        "grads": {k: to_list(v) for k, v in grads.items()},
        "grad_norms": {k: float(np.linalg.norm(v.ravel())) for k, v in grads.items()},
    }
    if with_opt:
        opts = []
        for kind, lr, beta2, eps, wd in OPTIMIZERS:
            losses, loss_after, p_after = run_optimizer(
                kind, lr, beta2, eps, wd, params, lossf, gradf)
            assert losses[0] == loss_value
            opts.append({
                "kind": kind,
                "lr": lr,
                "momentum": MU,
                "beta1": BETA1,
                "beta2": beta2,
                "eps": eps,
                "weight_decay": wd,
                "steps": STEPS,
                "losses": losses,
                "loss_after": loss_after,
                "params_after": {k: to_list(v) for k, v in p_after.items()},
            })
        case["optimizers"] = opts
    return case


def main():
    cases = []
    cases.append(make_case("tanh_sigmoid_xent", 1, [6, 5, 4, 3], ["tanh", "sigmoid"],
                           "xent", 4, True))
    for j, a in enumerate(ACTIVATIONS):
        cases.append(make_case(f"{a}_xent", 100 + j, [7, 6, 5, 4], [a, a], "xent", 5,
                               False))
    cases.append(make_case("relu_mse", 2, [5, 8, 3], ["relu"], "mse", 6, True))
    cases.append(make_case("deep_sigmoid", 3, [8, 8, 8, 8, 8, 8, 8, 3], ["sigmoid"] * 6,
                           "xent", 4, False))
    out = {
        "generator": f"jax {jax.__version__} (numpy {np.__version__}), float64 "
                     f"(jax_enable_x64), tests/golden/make_golden.py",
        "description": "MLP forward/backward and torch.optim-style optimizer goldens; "
                       "see the docstring of make_golden.py for conventions and schema",
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlp_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
