"""The timing the PyTorch CPU step scripts share (torch_cpu_dwsep_step.py,
torch_cpu_lenet_step.py): a classifier's training step on random 1×28×28 inputs, each step
timed alone after 3 warm-ups, the median, in both memory formats. Imported from beside them
(`python3 benches/compare/NAME.py` puts this folder on the path)."""

import statistics
import time

import torch
import torch.nn as nn

# (name, memory format): NCHW (as gradscope's tensors) and channels_last, where oneDNN's
# convolutions put the channels across the vector lanes.
FORMATS = [("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)]


def median_step_seconds(model, optimizer, batch, steps, memory_format):
    """The median seconds of `steps` training steps of `model` (made by the caller, moved to
    `memory_format` here) with `optimizer(parameters)`, softmax cross-entropy over 10
    classes, on one fixed random batch."""
    torch.manual_seed(0)
    model = model.to(memory_format=memory_format)
    opt = optimizer(model.parameters())
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(label, make_model, optimizer, batch, steps):
    """Prints `label`'s step rate in each memory format, a fresh model each."""
    for name, memory_format in FORMATS:
        torch.manual_seed(0)
        median = median_step_seconds(make_model(), optimizer, batch, steps, memory_format)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {name}: {label} step "
            f"{batch / median:.0f} samples/s ({1e3 * median:.2f} ms)"
        )
