"""PyTorch's CPU convolution passes on the resnet-20 shapes that `cargo bench --bench conv`
times: for each distinct convolution of resnet-20 on 3×32×32 inputs, the forward, the
input gradient and the weight gradient, each timed alone (aten.convolution_backward with
one output of its mask), float32, no bias, in NCHW and in channels_last (oneDNN's
preferred layout on the CPU). Median of R timed calls after 3 warm-ups, milliseconds and
GFLOP/s with the bench's count (2·n·c_out·oh·ow·c_in/groups·kh·kw for every pass).

    python3 benches/compare/torch_cpu_conv_passes.py [--threads N] [--batch B] [--repeats R]
        [--side N] [--depthwise]

`--side N` takes N×N inputs (default 32; 28 is the bundled data's side), as the bench's
`--side`. `--depthwise` times the depthwise convolutions of the dwsep model instead (one
filter per channel: 32 channels at stride 1, 64 and 128 at stride 2, as depthwise_shapes in
src/bench/conv2d.rs, which takes them on 28×28).
"""

import argparse
import os
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--repeats", type=int, default=9)
parser.add_argument("--side", type=int, default=32)
# The inputs' channels, which the stem reads (3, CIFAR's; 1, the bundled data's), as the
# conv bench's --in-channels.
parser.add_argument("--in-channels", type=int, default=3)
parser.add_argument("--depthwise", action="store_true")
args = parser.parse_args()
torch.set_num_threads(args.threads)

# (name, c_in, c_out, kernel, stride, input side, groups), as resnet20_shapes_on and
# depthwise_shapes in src/bench/conv2d.rs.
S1 = args.side
S2 = (S1 + 1) // 2
S3 = (S2 + 1) // 2
SHAPES = [
    (f"stem {args.in_channels}→16 3×3", args.in_channels, 16, 3, 1, S1, 1),
    ("16→16 3×3", 16, 16, 3, 1, S1, 1),
    ("16→32 3×3 s2", 16, 32, 3, 2, S1, 1),
    ("16→32 1×1 s2", 16, 32, 1, 2, S1, 1),
    ("32→32 3×3", 32, 32, 3, 1, S2, 1),
    ("32→64 3×3 s2", 32, 64, 3, 2, S2, 1),
    ("32→64 1×1 s2", 32, 64, 1, 2, S2, 1),
    ("64→64 3×3", 64, 64, 3, 1, S3, 1),
]
if args.depthwise:
    SHAPES = [
        ("depthwise 32 3×3", 32, 32, 3, 1, S1, 32),
        ("depthwise 64 3×3 s2", 64, 64, 3, 2, S1, 64),
        ("depthwise 128 3×3 s2", 128, 128, 3, 2, S2, 128),
    ]


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
print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
    f"{S1}×{S1} inputs"
)
print(f"{'shape':<20} {'pass':<16} {'NCHW ms':>9} {'GFLOP/s':>8} {'NHWC ms':>9} {'GFLOP/s':>8}")
for name, c_in, c_out, k, stride, side, groups in SHAPES:
    pad = k // 2
    out_side = (side + 2 * pad - k) // stride + 1
    flops = 2 * args.batch * c_out * out_side * out_side * (c_in // groups) * k * k
    row = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(args.batch, c_in, side, side).to(memory_format=fmt)
        w = torch.randn(c_out, c_in // groups, k, k).to(memory_format=fmt)
        dy = torch.randn(args.batch, c_out, out_side, out_side).to(memory_format=fmt)

        def forward():
            torch.nn.functional.conv2d(x, w, stride=stride, padding=pad, groups=groups)

        def backward(mask):
            torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride, stride], [pad, pad], [1, 1], False, [0, 0], groups, mask
            )

        with torch.no_grad():
            row[("forward", fmt)] = median_ms(forward)
            row[("input grad", fmt)] = median_ms(lambda: backward([True, False, False]))
            row[("weight grad", fmt)] = median_ms(lambda: backward([False, True, False]))
    for part in ("forward", "input grad", "weight grad"):
        a = row[(part, torch.contiguous_format)]
        b = row[(part, torch.channels_last)]
        print(
            f"{name:<20} {part:<16} {a:9.3f} {flops / a / 1e6:8.1f} {b:9.3f} {flops / b / 1e6:8.1f}"
        )
