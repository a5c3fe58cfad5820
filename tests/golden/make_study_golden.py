"""Per-layer gradient norms at initialization, computed by PyTorch on gradscope's weights.

tests/golden/study_init.safetensors (written by tests/study_golden.rs with
GRADSCOPE_WRITE_STUDY_GOLDEN=1) holds, for each activation/init pair, the weights gradscope
drew for an MLP of 784 -> 8 x 16 -> 10 (PyTorch's names: layers.i.weight [out, in],
layers.i.bias), and one batch of the bundled Fashion-MNIST data as gradscope standardized it
(inputs [8, 784], labels as float32). The metadata maps each activation to its init.

For each pair this script builds the same network from torch.nn.Linear layers in float64,
computes the mean cross-entropy on the batch, back-propagates, and writes to
study_golden.json every layer's weight-gradient norm ||dL/dW|| and the norm of the gradient
with respect to the layer's output after its activation (the logits for the last layer).

The safetensors file is parsed by hand (8-byte header length, JSON header, raw data) so that
only torch and numpy are needed.

Run: pip install torch==2.5.1 numpy; python3 tests/golden/make_study_golden.py
"""
import json
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "selu": torch.nn.functional.selu,
    "gelu": lambda x: torch.nn.functional.gelu(x, approximate="none"),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"])
    return tensors, meta


def main():
    tensors, meta = read_safetensors(os.path.join(HERE, "study_init.safetensors"))
    depth = int(meta["depth"])
    x = torch.tensor(tensors["inputs"], dtype=torch.float64)
    y = torch.tensor(tensors["labels"]).long()
    out = {}
    for act, fn in ACTIVATIONS.items():
        layers = []
        for i in range(depth + 1):
            w = tensors[f"{act}.layers.{i}.weight"]
            lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
            with torch.no_grad():
                lin.weight.copy_(torch.tensor(w, dtype=torch.float64))
                lin.bias.copy_(torch.tensor(tensors[f"{act}.layers.{i}.bias"], dtype=torch.float64))
            layers.append(lin)
        h = x
        outputs = []
        for i, lin in enumerate(layers):
            h = lin(h)
            if i < depth:
                h = fn(h)
            h.retain_grad()
            outputs.append(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        loss.backward()
        out[act] = {
            "init": meta[act],
            "loss": loss.item(),
            "grad_norms": [lin.weight.grad.norm().item() for lin in layers],
            "output_grad_norms": [o.grad.norm().item() for o in outputs],
        }
        ratio = out[act]["grad_norms"][0] / out[act]["grad_norms"][-1]
        print(f"{act:8s} {meta[act]:14s} loss {loss.item():.4f}  first/last ||dW|| {ratio:.3e}")
    with open(os.path.join(HERE, "study_golden.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
