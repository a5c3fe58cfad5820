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
import statistics
import time

import torch
import torch.nn as nn

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


def measure(memory_format):
    torch.manual_seed(0)
    model = lenet5().to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (args.batch,))

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
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {name}: lenet5 step "
        f"{args.batch / median:.0f} samples/s ({1e3 * median:.2f} ms)"
    )
