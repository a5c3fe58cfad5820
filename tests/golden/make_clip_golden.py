"""Golden values for gradscope's gradient clipping (tests/kernel_clip.rs).

An independent framework's global-norm clipping: jax.example_libraries.optimizers.clip_grads
(norm = sqrt(sum of vdot(g, g)) over the pytree; g * max_norm / norm where norm >= max_norm),
in float64. PyTorch's clip_grad_norm_ scales by max_norm / (norm + 1e-6) instead, which
differs by a relative 1e-6 / norm (below 1e-6 here): both are written out for reference.
Value clipping is jnp.clip (torch.nn.utils.clip_grad_value_ is clamp to [-v, v]).

The gradients are fixed, seeded, of the shapes of a small MLP (7x5, 7, 3x7, 3), scaled so
that one case clips (norm above max_norm) and one does not.

Run: python3 tests/golden/make_clip_golden.py > tests/golden/clip_golden.json
"""
import json

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax.example_libraries.optimizers import clip_grads

rng = np.random.default_rng(20261126)
shapes = [(7, 5), (7,), (3, 7), (3,)]
# Exactly representable in f32, so gradscope's f32 inputs equal these float64 ones.
grads = [rng.normal(0.0, 1.0, s).astype(np.float32).astype(np.float64) for s in shapes]
grads[0] *= 4.0  # a dominant tensor, so the nrm2 rescaling between records is exercised

cases = []
for max_norm in [1.0, 100.0]:
    tree = [jnp.asarray(g) for g in grads]
    clipped = clip_grads(tree, max_norm)
    norm = float(jnp.sqrt(sum(jnp.vdot(g, g) for g in tree)))
    torch_scale = min(1.0, max_norm / (norm + 1e-6))
    cases.append(
        {
            "max_norm": max_norm,
            "norm": norm,
            "jax_clipped": [np.asarray(c).ravel().tolist() for c in clipped],
            "torch_scale": torch_scale,
            "norm_after": float(jnp.sqrt(sum(jnp.vdot(c, c) for c in clipped))),
        }
    )

value = 0.5
print(
    json.dumps(
        {
            "shapes": [list(s) for s in shapes],
            "grads": [g.ravel().tolist() for g in grads],
            "norm_cases": cases,
            "clip_value": value,
            "value_clipped": [np.asarray(jnp.clip(g, -value, value)).ravel().tolist() for g in grads],
        },
        indent=1,
    )
)
