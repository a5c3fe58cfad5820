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

import torch
import torch.nn as nn

from torch_cpu_step_timing import report

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


report(
    "dwsep",
    lambda: nn.Sequential(*conv_bn(1, 32, 3, 1, 1), *blocks()),
    lambda params: torch.optim.Adam(params, lr=1e-3),
    128,
    args.steps,
)
