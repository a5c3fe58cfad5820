"""PyTorch's CPU training step of the MLP that `cargo bench --bench train_step` times:
784-256-256-10, ReLU, softmax cross-entropy, Adam (lr 1e-4), batch 128, one fixed batch,
float32, eager mode. Same protocol as the Rust bench: 3 warm-up steps, then the median of
R runs of S steps, in samples/s.

    python3 benches/compare/torch_cpu_mlp_step.py [--threads N] [--steps S] [--repeats R]
                                                  [--per-step N] [--activation NAME]

--activation relu (default), gelu (exact, approximate='none'), tanh, sigmoid, elu, selu or
softplus: the hidden layers' activation, for `gradscope train --model mlp --activation NAME`.

--per-step N times each of N steps apart and prints the minimum, tenth percentile and
median, as `train_step --per-step` does.

torch.set_num_threads(N) (intra-op threads; default every core, as rayon's pool).
"""

import argparse
import os
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--per-step", type=int, default=0)
ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "elu": torch.nn.ELU,
    "selu": torch.nn.SELU,
    "softplus": torch.nn.Softplus,
}
parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

BATCH = 128
model = torch.nn.Sequential(
    torch.nn.Linear(784, 256),
    ACTIVATIONS[args.activation](),
    torch.nn.Linear(256, 256),
    ACTIVATIONS[args.activation](),
    torch.nn.Linear(256, 10),
)
for layer in model:
    if isinstance(layer, torch.nn.Linear):
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        torch.nn.init.zeros_(layer.bias)
# foreach=False is the per-parameter loop; the default (foreach on CPU too in 2.5) is
# measured as well, and the faster of the two reported as PyTorch's step.
inputs = torch.tensor(
    [((i * 7919) % 255) / 255.0 - 0.5 for i in range(BATCH * 784)], dtype=torch.float32
).reshape(BATCH, 784)
labels = torch.tensor([i % 10 for i in range(BATCH)])
loss_fn = torch.nn.CrossEntropyLoss()


def measure(opt):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    if args.per_step > 0:
        times = []
        for _ in range(args.per_step):
            t0 = time.perf_counter()
            step().item()
            times.append(time.perf_counter() - t0)
        times.sort()
        return [1e3 * times[int((len(times) - 1) * q)] for q in (0.0, 0.1, 0.5)]
    rates = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        loss.item()
        rates.append(args.steps * BATCH / (time.perf_counter() - t0))
    return statistics.median(rates)


print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
      f"(MKLDNN {torch.backends.mkldnn.is_available()}); MLP 784-256-256-10, {args.activation}, "
      f"batch {BATCH}, "
      f"Adam; median of {args.repeats} runs of {args.steps} steps")
for foreach in (False, True):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=foreach)
    rate = measure(opt)
    if args.per_step > 0:
        lo, p10, med = rate
        print(f"torch eager, Adam foreach={foreach}, {args.per_step} steps apart: min "
              f"{lo:.3f} p10 {p10:.3f} median {med:.3f} ms/step "
              f"({1e3 * BATCH / med:.0f} samples/s at the median)")
        continue
    print(f"torch eager, Adam foreach={foreach}: {rate:10.0f} samples/s "
          f"({1e3 * BATCH / rate:.3f} ms/step)")
