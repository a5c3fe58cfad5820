"""gradscope against PyTorch on the same card: the markdown tables of BENCHMARKS.md's GPU
section, from `gradscope bench --json` and `torch_gpu.py --json` outputs of one machine.

    python3 benches/compare/side_by_side.py BENCH.json TORCH.json [PROFILE.json]

Kernels are matched by operation and shape: matmuls by layout and size, convolutions by
pass, channels, kernel size and stride (unique among resnet-20's convolutions), training
steps by model and timing (the bench's resnet-20 step is 3x32x32 with momentum SGD, its dwsep
step 1x28x28 with momentum SGD, its MLP step Adam, as torch_gpu.py's; each step waited for, or runs of steps back to back). A kernel that only one side measured is listed with a dash. With a
`gradscope train --profile` JSON, the share of each kind of op in a step follows.
Standard library only, so it runs wherever the two JSON files are.
"""
import json
import re
import sys


def conv_key(op, shape, arrow, times):
    """(op, c_in, c_out, k, stride) of a convolution shape string of either side."""
    m = re.search(r"(\d+)\s*" + arrow + r"\s*(\d+) (\d+)" + times + r"\d+(?: s(\d+))?", shape)
    if not m:
        return None
    return (op, int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 1))


def gradscope_key(r):
    name, shape = r["name"], r["shape"]
    if name.startswith("matmul_"):
        return (name, int(shape.split("×")[0]))
    if name.startswith("conv2d_") and "→" in shape:
        return conv_key(name, shape, "→", "×")
    # "step NAME" waits for every step, "step NAME pipelined" times runs of steps back to
    # back; torch_gpu.py's train_step and train_step_pipelined rows are their counterparts.
    kind = "step pipelined" if name.endswith(" pipelined") else "step"
    if name.startswith("step resnet20"):
        return (kind, "resnet20 3x32x32 sgd-momentum")
    if name.startswith("step mlp"):
        return (kind, "mlp 784-256-256-10 adam")
    if name.startswith("step dwsep"):
        return (kind, "dwsep 1x28x28 sgd-momentum")
    return None


def torch_key(r):
    op, size = r["op"], r["size"]
    if op.startswith("matmul_"):
        return (op, int(size.split("x")[0]))
    if op.startswith("conv2d_"):
        return conv_key(op, size, "->", "x")
    if op == "train_step":
        return ("step", size.rsplit(" b", 1)[0])
    if op == "train_step_pipelined":
        return ("step pipelined", size.rsplit(" b", 1)[0])
    return None


def fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    bench = json.load(open(argv[1]))
    torch = json.load(open(argv[2]))
    theirs = {}
    for r in torch["rows"]:
        k = torch_key(r)
        if k is not None:
            theirs[k] = r

    adapter = bench["machine"].get("adapter") or {}
    print(
        f"gradscope: {adapter.get('name', '?')} ({adapter.get('backend', '?')}, driver "
        f"{adapter.get('driver_info', '?')}); PyTorch {torch.get('torch')}, CUDA "
        f"{torch.get('cuda')}, cuDNN {torch.get('cudnn')}, TF32 {torch.get('tf32')}, on "
        f"{torch.get('device')}\n"
    )
    print("| kernel | shape | gradscope GPU ms | GFLOP/s | PyTorch ms | GFLOP/s | gradscope / PyTorch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    steps = []
    for r in bench["results"]:
        k = gradscope_key(r)
        if k is None or r.get("gpu") is None:
            continue
        t = theirs.get(k)
        ours_ms = r["gpu"]["median_s"] * 1e3
        if k[0].startswith("step"):
            steps.append((r, t))
            continue
        ratio = t["ms"] / ours_ms if t else None
        print(
            f"| {r['name']} | {r['shape']} | {ours_ms:.3f} | {r['gpu']['throughput']:.0f} | "
            f"{fmt(t and t['ms'])} | {fmt(t and t['gflops'], 0)} | {fmt(ratio, 2)} |"
        )
    if steps:
        print("\n| step | gradscope GPU samples/s | PyTorch eager fp32 samples/s | ratio |")
        print("|---|---:|---:|---:|")
        for r, t in steps:
            ours = r["gpu"]["throughput"]
            ref = t["samples_per_s"] if t else None
            ratio = ours / ref if ref else None
            print(f"| {r['name']}, {r['shape']} | {ours:.0f} | {fmt(ref, 0)} | {fmt(ratio, 2)} |")

    if len(argv) == 4:
        prof = json.load(open(argv[3]))
        print(
            f"\n{prof['executor']}: ops {prof['op_seconds'] * 1e3:.2f} ms a step, "
            f"{prof.get('dispatches_per_step', '?')} dispatches, host encoding "
            f"{prof['host_encode_seconds'] * 1e3:.2f} ms"
        )
        for k in prof["by_kind"]:
            print(f"- {k['name']}: {k['seconds'] * 1e3:.3f} ms ({100 * k['fraction']:.1f} %)")


if __name__ == "__main__":
    main(sys.argv)
