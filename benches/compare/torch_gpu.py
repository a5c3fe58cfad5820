"""PyTorch reference figures on a CUDA GPU, for side-by-side reading with `gradscope bench`.

Measures, on the same card and with TF32 disabled everywhere (fp32 arithmetic, as gradscope's
WGSL kernels do):
  * torch.matmul at n x n x n in the three layouts gradscope uses (NN, NT = A @ B.T, TN = A.T @ B);
  * convolution forward, backward-input and backward-weight on the resnet-20 shapes at batch 128
    (cuDNN through torch.nn.functional.conv2d and torch.nn.grad);
  * whole training steps in eager fp32: resnet-20 (He et al.'s CIFAR ResNet, BatchNorm, SGD with
    momentum) on 3x32x32 and on 1x28x28 inputs, the depthwise-separable dwsep network on
    1x28x28 with momentum SGD (`gradscope bench`'s "step dwsep"), and an MLP 784-256-256-10
    with Adam, batch 128.
Times are CUDA-event medians over `--repeats` runs after warm-up.

    python3 benches/compare/torch_gpu.py [--sizes 1024,2048,4096] [--repeats 20] [--json out.json]
"""
import argparse
import json
import statistics

import torch
import torch.nn as nn
import torch.nn.functional as F


def cuda_time_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_matmul(sizes, warmup, repeats):
    rows = []
    for n in sizes:
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        for layout, fn in (
            ("nn", lambda: torch.matmul(a, b)),
            ("nt", lambda: torch.matmul(a, b.t())),
            ("tn", lambda: torch.matmul(a.t(), b)),
        ):
            ms = cuda_time_ms(fn, warmup, repeats)
            rows.append({"op": f"matmul_{layout}", "size": f"{n}x{n}x{n}", "ms": ms,
                         "gflops": 2 * n**3 / ms / 1e6})
    return rows


# (name, in_channels, out_channels, input H = W, kernel, stride, padding)
RESNET20_CONVS = [
    ("stem 3->16 3x3 32x32", 3, 16, 32, 3, 1, 1),
    ("16->16 3x3 32x32", 16, 16, 32, 3, 1, 1),
    ("16->32 3x3 s2 32x32", 16, 32, 32, 3, 2, 1),
    ("16->32 1x1 s2 proj", 16, 32, 32, 1, 2, 0),
    ("32->32 3x3 16x16", 32, 32, 16, 3, 1, 1),
    ("32->64 3x3 s2 16x16", 32, 64, 16, 3, 2, 1),
    ("32->64 1x1 s2 proj", 32, 64, 16, 1, 2, 0),
    ("64->64 3x3 8x8", 64, 64, 8, 3, 1, 1),
]


def bench_conv(batch, warmup, repeats):
    rows = []
    for name, cin, cout, hw, k, s, p in RESNET20_CONVS:
        x = torch.randn(batch, cin, hw, hw, device="cuda")
        w = torch.randn(cout, cin, k, k, device="cuda")
        y = F.conv2d(x, w, stride=s, padding=p)
        gy = torch.randn_like(y)
        ho = y.shape[2]
        flops = 2 * batch * cout * ho * ho * cin * k * k
        for pas, fn in (
            ("forward", lambda: F.conv2d(x, w, stride=s, padding=p)),
            ("backward_input", lambda: torch.nn.grad.conv2d_input(x.shape, w, gy, stride=s, padding=p)),
            ("backward_weight", lambda: torch.nn.grad.conv2d_weight(x, w.shape, gy, stride=s, padding=p)),
        ):
            ms = cuda_time_ms(fn, warmup, repeats)
            rows.append({"op": f"conv2d_{pas}", "size": f"{name} b{batch}", "ms": ms,
                         "gflops": flops / ms / 1e6})
    return rows


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def resnet(n_blocks, in_channels, classes=10):
    layers = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, cout in enumerate((16, 32, 64)):
        for b in range(n_blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            layers.append(Block(cin, cout, stride))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def dwsep(in_channels, classes=10):
    """`gradscope train --model dwsep`: a 3x3 stem of 32 channels, then three blocks of a 3x3
    depthwise convolution and a 1x1 pointwise one (64 channels at stride 1, 128 at stride 2,
    128 at stride 2), each followed by BatchNorm and ReLU; global average pooling and a dense
    layer (torch_cpu_dwsep_step.py's network)."""

    def conv_bn(cin, cout, k, stride, groups):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU()]

    layers = conv_bn(in_channels, 32, 3, 1, 1)
    c = 32
    for out, stride in ((64, 1), (128, 2), (128, 2)):
        layers += conv_bn(c, c, 3, stride, c) + conv_bn(c, out, 1, 1, 1)
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*layers)


# Steps per timed run of the pipelined step measurement (gradscope's PIPELINED_STEPS).
PIPELINED_STEPS = 8


def bench_step(model, shape, batch, optimizer, warmup, repeats):
    model = model.cuda()
    opt = optimizer(model.parameters())
    x = torch.randn(batch, *shape, device="cuda")
    t = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        opt.step()

    ms = cuda_time_ms(step, warmup, repeats)

    def run():
        for _ in range(PIPELINED_STEPS):
            step()

    # PIPELINED_STEPS steps back to back, no synchronization between them (as a training
    # loop runs), timed as one: the counterpart of gradscope bench's "pipelined" rows.
    run_ms = cuda_time_ms(run, 1, max(1, repeats // PIPELINED_STEPS))
    return ms, batch / ms * 1e3, run_ms / PIPELINED_STEPS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1024,2048,4096")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)

    props = torch.cuda.get_device_properties(0)
    out = {
        "device": torch.cuda.get_device_name(0),
        "multiprocessors": props.multi_processor_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32": False,
        "rows": [],
    }
    sizes = [int(s) for s in args.sizes.split(",")]
    out["rows"] += bench_matmul(sizes, args.warmup, args.repeats)
    out["rows"] += bench_conv(args.batch, args.warmup, args.repeats)
    for name, model, shape, opt in (
        ("resnet20 3x32x32 sgd-momentum", resnet(3, 3), (3, 32, 32),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        ("resnet20 1x28x28 sgd-momentum", resnet(3, 1), (1, 28, 28),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        ("resnet20 1x28x28 adam", resnet(3, 1), (1, 28, 28), lambda p: torch.optim.Adam(p, lr=1e-3)),
        ("dwsep 1x28x28 sgd-momentum", dwsep(1), (1, 28, 28),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        ("mlp 784-256-256-10 adam",
         nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                       nn.Linear(256, 10)), (784,), lambda p: torch.optim.Adam(p, lr=1e-3)),
    ):
        ms, sps, piped_ms = bench_step(model, shape, args.batch, opt, args.warmup, args.repeats)
        out["rows"].append({"op": "train_step", "size": f"{name} b{args.batch}", "ms": ms,
                            "samples_per_s": sps})
        out["rows"].append({"op": "train_step_pipelined", "size": f"{name} b{args.batch}",
                            "ms": piped_ms, "samples_per_s": args.batch / piped_ms * 1e3})

    print(f"# {out['device']} ({out['multiprocessors']} SMs), torch {out['torch']}, CUDA {out['cuda']}, "
          f"cuDNN {out['cudnn']}, TF32 off")
    for r in out["rows"]:
        rate = f"{r['gflops']:10.1f} GFLOP/s" if "gflops" in r else f"{r['samples_per_s']:10.0f} samples/s"
        print(f"{r['op']:<22} {r['size']:<36} {r['ms']:9.4f} ms {rate}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
