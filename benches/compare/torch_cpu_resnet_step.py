"""PyTorch's CPU training step of the resnet-20 that `gradscope bench --op step` times as
"step resnet20", the network of jax_cpu_resnet_step.py: a 3×3 stem of 16 channels, three
stages of three basic blocks of 16, 32 and 64 channels (the first block of stages 2 and 3
with stride 2 and a 1×1 convolution + BatchNorm shortcut), BatchNorm in training mode
after every convolution (no convolution bias), ReLU, global average pooling, a dense layer
to 10 classes, softmax cross-entropy, momentum SGD (lr 0.1, momentum 0.9), on 3×32×32 (by default)
inputs, float32, eager mode. Same protocol as the other comparison scripts: 3 warm-up
steps, then the median of R runs of S steps, in samples/s.

Two memory formats are measured, NCHW (as ours) and channels_last (NHWC, which oneDNN's
convolutions prefer on the CPU); the faster is PyTorch's figure.

    python3 benches/compare/torch_cpu_resnet_step.py [--threads N] [--batch B] [--steps S]
                                                     [--repeats R] [--side N]
                                                     [--in-channels C]

`--side N` takes C×N×N inputs (default 32; 28 is the bundled data's side), as the conv
bench's `--side`; `--in-channels C` (default 3; 1 is the bundled data's), as its
`--in-channels`.

torch.set_num_threads(N) (intra-op threads; default every core, as rayon's pool).
"""

import argparse
import os
import statistics
import time

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--side", type=int, default=32)
parser.add_argument("--in-channels", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)


def conv(c_in, c_out, k, stride):
    layer = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return layer


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = conv(c_in, c_out, 3, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = conv(c_out, c_out, 3, 1), nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))

    def forward(self, h):
        y = torch.relu(self.bn1(self.conv1(h)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (h if self.short is None else self.short(h)))


def resnet20():
    layers = [conv(args.in_channels, 16, 3, 1), nn.BatchNorm2d(16), nn.ReLU()]
    c_in = 16
    for stage, c_out in enumerate([16, 32, 64]):
        for b in range(3):
            layers.append(Block(c_in, c_out, 2 if stage > 0 and b == 0 else 1))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def measure(memory_format):
    torch.manual_seed(0)
    model = resnet20().to(memory_format=memory_format).train()
    b = args.batch
    side = args.side
    c = args.in_channels
    x = torch.tensor([((i * 7919) % 255) / 255.0 for i in range(b * c * side * side)],
                     dtype=torch.float32).reshape(b, c, side, side)
    x = x.contiguous(memory_format=memory_format)
    y = torch.tensor([i % 10 for i in range(b)])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()
        rates.append(args.steps * b / (time.perf_counter() - start))
    return statistics.median(rates)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
      f"(MKLDNN {torch.backends.mkldnn.is_available()}); resnet-20 {args.in_channels}x{args.side}x{args.side}, batch {args.batch}, "
      f"momentum SGD; median of {args.repeats} runs of {args.steps} steps")
for name, memory_format in [("NCHW", torch.contiguous_format),
                            ("channels_last", torch.channels_last)]:
    rate = measure(memory_format)
    print(f"torch eager, {name}: {rate:9.1f} samples/s ({1e3 * args.batch / rate:.2f} ms/step)")
