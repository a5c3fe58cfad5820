"""Golden values for gradscope's 2-D convolution (tests/kernel_conv2d.rs).

An independent framework's convolution: jax.lax.conv_general_dilated with
dimension_numbers ("NCHW", "OIHW", "NCHW") (PyTorch's layouts), window_strides = stride,
padding = [(pad_h, pad_h), (pad_w, pad_w)], rhs_dilation = dilation and
feature_group_count = groups, in float64. The bias is added per output channel.

For each configuration the script records the inputs x, w, b and an output cotangent dy
(seeded, rounded to float32 so gradscope's f32 GPU inputs equal these float64 values),
the output y = conv(x, w) + b, and the gradients of L = Σ dy ⊙ y with respect to x, w
and b (jax.grad), i.e. exactly what backward_input, backward_weight and backward_bias
compute given dy.

Run: python3 tests/golden/make_conv_golden.py > tests/golden/conv_golden.json
"""
import json

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

# name, n, c_in, h, w, c_out, (kh, kw), stride, pad, dilation, groups
CONFIGS = [
    ("plain_strided_padded", 2, 3, 7, 6, 4, (3, 3), (2, 1), (1, 2), (1, 1), 1),
    ("grouped_dilated", 1, 4, 9, 8, 6, (3, 2), (1, 2), (2, 1), (2, 1), 2),
    ("depthwise_x2_dilated_strided", 2, 3, 7, 7, 6, (3, 3), (2, 2), (1, 1), (2, 2), 3),
    ("pointwise_stride3", 3, 2, 5, 4, 5, (1, 1), (3, 3), (0, 0), (1, 1), 1),
]

rng = np.random.default_rng(20261126)


def f32(a):
    return a.astype(np.float32).astype(np.float64)


cases = []
for name, n, c_in, h, w, c_out, (kh, kw), stride, pad, dil, groups in CONFIGS:
    x = f32(rng.normal(0.0, 1.0, (n, c_in, h, w)))
    wt = f32(rng.normal(0.0, 0.5, (c_out, c_in // groups, kh, kw)))
    b = f32(rng.normal(0.0, 0.5, (c_out,)))

    def conv(x, wt, b):
        y = jax.lax.conv_general_dilated(
            x,
            wt,
            window_strides=stride,
            padding=[(pad[0], pad[0]), (pad[1], pad[1])],
            rhs_dilation=dil,
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            feature_group_count=groups,
            precision=jax.lax.Precision.HIGHEST,
        )
        return y + b[None, :, None, None]

    y = conv(x, wt, b)
    dy = f32(rng.normal(0.0, 1.0, y.shape))
    dx, dw, db = jax.grad(lambda x, wt, b: jnp.sum(conv(x, wt, b) * dy), argnums=(0, 1, 2))(
        x, wt, b
    )
    cases.append(
        {
            "name": name,
            "n": n,
            "c_in": c_in,
            "h": h,
            "w": w,
            "c_out": c_out,
            "kh": kh,
            "kw": kw,
            "stride": list(stride),
            "pad": list(pad),
            "dilation": list(dil),
            "groups": groups,
            "y_shape": list(y.shape),
            "x": np.asarray(x).ravel().tolist(),
            "weight": np.asarray(wt).ravel().tolist(),
            "bias": np.asarray(b).ravel().tolist(),
            "dy": np.asarray(dy).ravel().tolist(),
            "y": np.asarray(y).ravel().tolist(),
            "dx": np.asarray(dx).ravel().tolist(),
            "dweight": np.asarray(dw).ravel().tolist(),
            "dbias": np.asarray(db).ravel().tolist(),
        }
    )

print(json.dumps({"generator": "jax " + jax.__version__ + ", float64", "cases": cases}))
