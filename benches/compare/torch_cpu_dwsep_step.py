"""PyTorch's CPU training step of the dwsep model (`gradscope train --model dwsep`): a 3×3
stem of 32 channels, then three blocks of a 3×3 depthwise convolution and a 1×1 pointwise
one (64 channels at stride 1, 128 at stride 2, 128 at stride 2), each followed by
BatchNorm and ReLU, global average pooling and a linear layer to 10 classes; Adam, batch
128 on 1×28×28 inputs, eager float32 in PyTorch's default layout (NCHW). Each step is
timed alone; the median of S steps after 3 warm-ups, in samples/s.

    python3 benches/compare/torch_cpu_dwsep_step.py [--threads N] [--steps S]
"""

import argparse
import os
import statistics
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--steps", type=int, default=15)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def conv_bn(c_in, c_out, k, stride, groups):
    return [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


layers = conv_bn(1, 32, 3, 1, 1)
c = 32
for out, stride in [(64, 1), (128, 2), (128, 2)]:
    layers += conv_bn(c, c, 3, stride, c) + conv_bn(c, out, 1, 1, 1)
    c = out
layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
model = nn.Sequential(*layers)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))


def step():
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


for _ in range(3):
    step()
times = []
for _ in range(args.steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
median = statistics.median(times)
print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads: dwsep step "
    f"{128 / median:.0f} samples/s ({1e3 * median:.1f} ms)"
)
