"""Alternates builds of `cargo bench --bench conv` on the CPU passes of one shape, round by
round, so that builds compare on a machine whose speed drifts within minutes:

    python3 benches/compare/alternate_conv_passes.py BENCH [BENCH ...] --shape "16→16"
        [--rounds 8] [--batch 128] [--threads 1] [--side 32]

Each BENCH is a copy of a built `target/release/deps/conv-*` binary. Per build and pass it
prints the median and the minimum over the rounds of the bench's own median (ms). With one
thread every run is pinned to core 0 (`taskset -c 0`).
"""
import argparse
import os
import statistics
import subprocess

parser = argparse.ArgumentParser()
parser.add_argument("benches", nargs="+")
parser.add_argument("--shape", required=True, help="the bench's --shape filter")
parser.add_argument("--rounds", type=int, default=8)
parser.add_argument("--batch", type=int, default=128)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--side", type=int, default=32, help="the bench's --side (28: the bundled data)")
args = parser.parse_args()

env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
times = {bench: {} for bench in args.benches}
for _ in range(args.rounds):
    for bench in args.benches:
        cmd = [bench, "--device", "cpu", "--no-step", "--batch", str(args.batch), "--shape", args.shape]
        if args.side != 32:
            cmd += ["--side", str(args.side)]
        if args.threads == 1:
            cmd = ["taskset", "-c", "0"] + cmd
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        shape = None
        for line in out.splitlines():
            if "forward" not in line and "backward" not in line:
                continue
            if not line.startswith(" "):
                shape = line.split("  ")[0].strip()
            kind = "forward" if "forward" in line else ("input" if "input" in line else "weight")
            # Columns: ... pass, cpu ms, cpu GF/s, gpu ms, gpu GF/s, gpu/cpu.
            times[bench].setdefault((shape, kind), []).append(float(line.split()[-5]))

for bench, passes in times.items():
    print(bench)
    for (shape, kind), ms in passes.items():
        print(f"  {shape:<20} {kind:<8} median {statistics.median(ms):.3f}  min {min(ms):.3f}  ({len(ms)} rounds)")
