"""Weights round trip between PyTorch and gradscope, through safetensors.

What it writes (beside itself, in tests/golden/):
  torch_roundtrip.safetensors  the state_dict of a small PyTorch MLP (12 -> 16 ReLU -> 8 Tanh
                               -> 3), saved with safetensors.torch.save_file: the names,
                               layouts and dtypes a PyTorch user's file has
  torch_roundtrip.json         a batch (inputs, labels), PyTorch's logits and mean
                               cross-entropy on it, and the parameters after 3 steps of
                               torch.optim.SGD(lr=0.1, momentum=0.9) on that batch
tests/torch_roundtrip.rs loads the file with `--init-from`'s checker, compares the loss,
trains the same 3 steps and compares the parameters, and exports them again.

With an argument, it checks the other direction: `python3 tests/golden/torch_roundtrip.py
EXPORTED.safetensors` loads a file written by `gradscope export` (or the Rust test) into
the same PyTorch module with load_state_dict(strict=True) and prints the loss it gives on
the batch next to the one the JSON records for the parameters after training.

Run: pip install torch safetensors numpy; python3 tests/golden/torch_roundtrip.py
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(7)
torch.use_deterministic_algorithms(True)


class Mlp(torch.nn.Module):
    """Linear layers named layers.0, layers.1, layers.2, as gradscope names them."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [torch.nn.Linear(12, 16), torch.nn.Linear(16, 8), torch.nn.Linear(8, 3)]
        )

    def forward(self, x):
        x = torch.relu(self.layers[0](x))
        x = torch.tanh(self.layers[1](x))
        return self.layers[2](x)


def batch():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(6, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=6)
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    model = Mlp()
    x, y = batch()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(HERE, "torch_roundtrip.safetensors"))
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        step_loss = torch.nn.functional.cross_entropy(model(x), y)
        losses.append(step_loss.item())
        step_loss.backward()
        opt.step()
    out = {
        "generator": f"torch {torch.__version__}, tests/golden/torch_roundtrip.py",
        "inputs": x.tolist(),
        "labels": y.tolist(),
        "logits": logits.tolist(),
        "loss": loss.item(),
        "sgd": {"lr": 0.1, "momentum": 0.9, "steps": 3, "losses": losses},
        "params_after": {k: v.tolist() for k, v in model.state_dict().items()},
        "state_dict_keys": list(model.state_dict().keys()),
    }
    with open(os.path.join(HERE, "torch_roundtrip.json"), "w") as f:
        json.dump(out, f)
    print(f"wrote torch_roundtrip.safetensors and .json; loss {loss.item():.6f}")


def check(path):
    with open(os.path.join(HERE, "torch_roundtrip.json")) as f:
        golden = json.load(f)
    model = Mlp()
    state = load_file(path)
    model.load_state_dict(state, strict=True)
    x = torch.tensor(golden["inputs"])
    y = torch.tensor(golden["labels"])
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(x), y).item()
    want = {k: torch.tensor(v) for k, v in golden["params_after"].items()}
    worst = max((state[k] - want[k]).abs().max().item() for k in want)
    print(f"{path}: loaded strictly into PyTorch; loss on the batch {loss:.6f}; "
          f"largest difference from PyTorch's own parameters after 3 steps {worst:.3e}")
    return worst


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(0 if check(sys.argv[1]) < 1e-5 else 1)
    main()
