"""PyTorch's CPU training step of the LeNet-5 that `gradscope bench --op "step lenet5"` times:
a 5×5 convolution of 6 channels (padding 2) on 1×28×28 inputs, ReLU, 2×2 max pooling, a 5×5
convolution of 16 channels, ReLU, 2×2 max pooling, dense layers of 120 and 84 with ReLU and
a dense read-out to 10 classes; softmax cross-entropy, momentum SGD (lr 0.1, momentum 0.9),
batch 128, eager float32. Each step is timed alone; the median of S steps after 3 warm-ups,
in samples/s, the bench's "step lenet5" row (which also takes full statistics every step).

Two memory formats are measured, as in torch_cpu_resnet_step.py: NCHW (as ours) and
channels_last; the faster is PyTorch's figure.

    python3 benches/compare/torch_cpu_lenet_step.py [--threads N] [--steps S] [--batch B]
"""

import argparse
import os

import torch
import torch.nn as nn

from torch_cpu_step_timing import report

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--steps", type=int, default=31)
parser.add_argument("--batch", type=int, default=128)
args = parser.parse_args()
torch.set_num_threads(args.threads)


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


report(
    "lenet5",
    lenet5,
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    args.batch,
    args.steps,
)
