"""PyTorch's CPU training step of the dwsep model (`gradscope train --model dwsep`): a 3×3
stem of 32 channels, then three blocks of a 3×3 depthwise convolution and a 1×1 pointwise
one (64 channels at stride 1, 128 at stride 2, 128 at stride 2), each followed by
BatchNorm and ReLU, global average pooling and a linear layer to 10 classes; Adam, batch
128 on 1×28×28 inputs, eager float32 in PyTorch's default layout (NCHW). Each step is
timed alone; the median of S steps after 3 warm-ups, in samples/s.

Two memory formats are measured, as in torch_cpu_resnet_step.py: NCHW (as ours) and
channels_last (NHWC, where oneDNN's depthwise kernels put the channels across the vector
lanes); the faster is PyTorch's figure.

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


def conv_bn(c_in, c_out, k, stride, groups):
    return [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def blocks():
    layers = []
    c = 32
    for out, stride in [(64, 1), (128, 2), (128, 2)]:
        layers += conv_bn(c, c, 3, stride, c) + conv_bn(c, out, 1, 1, 1)
        c = out
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]


def measure(memory_format):
    torch.manual_seed(0)
    model = nn.Sequential(*conv_bn(1, 32, 3, 1, 1), *blocks()).to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=memory_format)
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
    return statistics.median(times)


for name, memory_format in [("NCHW", torch.contiguous_format),
                            ("channels_last", torch.channels_last)]:
    median = measure(memory_format)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {name}: dwsep step "
        f"{128 / median:.0f} samples/s ({1e3 * median:.1f} ms)"
    )
