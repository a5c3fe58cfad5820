"""PyTorch's CPU training step of the recurrent network that `cargo bench --bench recurrent`
times: one LSTM (or GRU, or tanh RNN) layer of hidden 256 over sequences of length 100 with
28 features per step, batch 64, a linear read-out of the last step to 10 classes, softmax
cross-entropy, Adam, float32, eager mode. A fixed seeded batch; 1 warm-up step, then the
median of R runs of S steps, in samples/s (the Rust bench's protocol).

    python3 benches/compare/torch_cpu_recurrent_step.py [--threads N] [--cell lstm|gru|rnn]
        [--hidden H] [--len T] [--batch B] [--steps S] [--repeats R]

The Rust bench also takes full statistics on its first step and gradient norms on every
step; this script takes neither (PyTorch has no such pass), so it measures less work.
"""

import argparse
import os
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
parser.add_argument("--hidden", type=int, default=256)
parser.add_argument("--len", type=int, default=100)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

FEATURES, CLASSES = 28, 10
cells = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
rnn = cells[args.cell](FEATURES, args.hidden, batch_first=True)
readout = torch.nn.Linear(args.hidden, CLASSES)
params = list(rnn.parameters()) + list(readout.parameters())
opt = torch.optim.Adam(params, lr=1e-3)
x = torch.rand(args.batch, args.len, FEATURES)
labels = torch.arange(args.batch) % CLASSES
loss_fn = torch.nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=True)
    out, _ = rnn(x)
    loss = loss_fn(readout(out[:, -1, :]), labels)
    loss.backward()
    opt.step()
    return loss


step()
rates = []
for _ in range(args.repeats):
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()
    rates.append(args.steps * args.batch / (time.perf_counter() - t0))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.cell} hidden "
      f"{args.hidden}, length {args.len}, batch {args.batch}, Adam: "
      f"{statistics.median(rates):.1f} samples/s (median of {args.repeats} runs of "
      f"{args.steps} steps)")
