"""PyTorch's CPU kernels for the rows of `gradscope bench --cpu-only` that have no other
comparison script: LayerNorm forward and backward (rows of 1024 features), dropout at
p = 0.5, and the bias gradient (a column sum). Each is the ATen operator alone, float32,
median of R timed calls after 3 warm-ups, in milliseconds.

    python3 benches/compare/torch_cpu_kernels.py [--threads N] [--repeats R]
        [--rows ROWS] [--elements N]

Defaults are the bench's: `--op layernorm --sizes 4096`, `--op dropout --sizes 1048576`,
`--op bias_backward --sizes 1048576` ([4096, 256]).
"""

import argparse
import os
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--repeats", type=int, default=31)
parser.add_argument("--rows", type=int, default=4096)
parser.add_argument("--elements", type=int, default=1 << 20)
args = parser.parse_args()
torch.set_num_threads(args.threads)


def median_ms(f):
    for _ in range(3):
        f()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


torch.manual_seed(0)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
D = 1024
x = torch.randn(args.rows, D)
gamma, beta = torch.rand(D) + 0.5, torch.rand(D) - 0.5
dy = torch.randn(args.rows, D)
with torch.no_grad():
    forward = median_ms(lambda: torch.nn.functional.layer_norm(x, (D,), gamma, beta))
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, [D], gamma, beta, 1e-5)
    backward = median_ms(
        lambda: torch.ops.aten.native_layer_norm_backward(
            dy, x, [D], mean, rstd, gamma, beta, [True, True, True]
        )
    )
    print(f"layernorm_forward  rows={args.rows} d={D}: {forward:.3f} ms")
    print(f"layernorm_backward rows={args.rows} d={D}: {backward:.3f} ms")

    v = torch.randn(args.elements)
    drop = median_ms(lambda: torch.nn.functional.dropout(v, 0.5, True))
    print(f"dropout p=0.5 {args.elements} elements: {drop:.3f} ms")

    g = torch.randn(args.elements // 256, 256)
    bias = median_ms(lambda: g.sum(0))
    print(f"bias_backward [{args.elements // 256}, 256]: {bias:.3f} ms")
