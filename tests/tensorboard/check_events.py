#!/usr/bin/env python3
"""Reads a gradscope run's TensorBoard event file back with TensorBoard's own reader and
compares it with the run's metrics.jsonl: every scalar (loss, accuracy, lr, grad_norm, per
layer grad_norm and update_ratio, eval loss and accuracy) at every step, and every
histogram's bucket counts against the log2 histogram of the same layer, tensor and step.

Usage: python3 tests/tensorboard/check_events.py RUN_DIR   (pip install tensorboard)
Exits 0 when everything matches, 1 with the mismatches otherwise.
"""
import json
import math
import sys
from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator

HIST_KINDS = ["weight_grad", "weight", "weight_update", "output"]


def close(a, b):
    # Scalars travel as float32: compare at float32 precision.
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-6 * max(1.0, abs(b)) or abs(a - b) <= 2e-7 * abs(b)


def main(run_dir):
    run = Path(run_dir)
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    if len(files) != 1:
        print(f"expected one event file in {run / 'tensorboard'}, found {len(files)}")
        return 1
    acc = event_accumulator.EventAccumulator(
        str(files[0]),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0},
    )
    acc.Reload()
    tags = acc.Tags()

    want_scalars = {}  # tag -> {step: value}
    want_hists = {}  # tag -> {step: [counts]}
    for n, line in enumerate((run / "metrics.jsonl").read_text().splitlines(), 1):
        rec = json.loads(line)
        step = rec["step"]
        if rec["kind"] == "step":
            for k in ["loss", "accuracy", "lr", "grad_norm"]:
                want_scalars.setdefault(f"train/{k}", {})[step] = rec[k]
            for layer in rec.get("layers") or []:
                name = layer["name"]
                want_scalars.setdefault(f"grad_norm/{name}", {})[step] = layer["grad_norm"]
                if layer.get("update_ratio") is not None:
                    want_scalars.setdefault(f"update_ratio/{name}", {})[step] = layer["update_ratio"]
                for kind, stats in layer["tensors"]:
                    if kind in HIST_KINDS and sum(stats["hist"]) > 0:
                        want_hists.setdefault(f"log2_abs_{kind}/{name}", {})[step] = stats["hist"]
        elif rec["kind"] == "eval":
            for k in ["loss", "accuracy"]:
                want_scalars.setdefault(f"{rec['split']}/{k}", {})[step] = rec[k]

    errors = []
    n_scalars = n_hists = 0
    for tag, by_step in want_scalars.items():
        if tag not in tags["scalars"]:
            errors.append(f"scalar {tag} missing")
            continue
        got = {e.step: e.value for e in acc.Scalars(tag)}
        if set(got) != set(by_step):
            errors.append(f"scalar {tag}: steps {sorted(got)[:5]}… != {sorted(by_step)[:5]}…")
        for step, want in by_step.items():
            n_scalars += 1
            if step in got and not close(got[step], want):
                errors.append(f"scalar {tag} step {step}: {got[step]} != {want}")
    for tag, by_step in want_hists.items():
        if tag not in tags["histograms"]:
            errors.append(f"histogram {tag} missing")
            continue
        got = {e.step: e.histogram_value for e in acc.Histograms(tag)}
        for step, counts in by_step.items():
            n_hists += 1
            h = got.get(step)
            if h is None:
                errors.append(f"histogram {tag} step {step} missing")
                continue
            if [int(c) for c in h.bucket] != counts or int(h.num) != sum(counts):
                errors.append(f"histogram {tag} step {step}: counts differ")
    extra = set(tags["scalars"]) - set(want_scalars)
    if extra:
        errors.append(f"scalars in the event file but not in metrics.jsonl: {sorted(extra)}")

    for e in errors[:20]:
        print("MISMATCH", e)
    print(
        f"{files[0].name}: {n_scalars} scalar points over {len(want_scalars)} tags, "
        f"{n_hists} histograms over {len(want_hists)} tags compared; "
        f"{len(errors)} mismatches"
    )
    return 1 if errors or n_scalars == 0 or n_hists == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
