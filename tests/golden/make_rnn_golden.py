"""Golden values for gradscope's recurrent layers, from PyTorch's nn.RNN / nn.LSTM / nn.GRU
(batch_first=True) in float64 with the same weights.

For each case: the parameters (PyTorch's state-dict names), inputs and labels, the logits,
the loss, every parameter gradient, and the norm of the gradient with respect to every
hidden state h_t of every layer. nn.RNN & co. do not expose dL/dh_t (the recurrent path runs
inside the module), so those norms come from an unrolled copy of each cell written with
torch ops, whose loss is checked against the module's before anything is written.

Truncated BPTT (`truncate = k`) is the module run on chunks of k steps with the state
detached between chunks: no gradient crosses a multiple of k.

Run: python3 tests/golden/make_rnn_golden.py  (torch 2.5.1; writes rnn_golden.json here).
"""

import json
import os

import torch

torch.set_default_dtype(torch.float64)

CASES = [
    dict(name="rnn_tanh_2layer", cell="rnn_tanh", features=3, steps=7, hidden=5, layers=2,
         batch=3, classes=4, readout="last", loss_fn="xent", truncate=0),
    dict(name="rnn_relu_1layer", cell="rnn_relu", features=3, steps=4, hidden=5, layers=1,
         batch=2, classes=3, readout="last", loss_fn="xent", truncate=0),
    dict(name="lstm_2layer", cell="lstm", features=3, steps=7, hidden=5, layers=2,
         batch=3, classes=4, readout="last", loss_fn="xent", truncate=0),
    dict(name="gru_2layer", cell="gru", features=3, steps=7, hidden=5, layers=2,
         batch=3, classes=4, readout="last", loss_fn="xent", truncate=0),
    dict(name="lstm_every_step", cell="lstm", features=2, steps=5, hidden=6, layers=1,
         batch=2, classes=3, readout="every", loss_fn="xent", truncate=0),
    dict(name="gru_embedding_mse", cell="gru", tokens=(6, 4), steps=6, hidden=5, layers=2,
         batch=3, classes=2, readout="last", loss_fn="mse", truncate=0),
    dict(name="rnn_tanh_every_step_embedding", cell="rnn_tanh", tokens=(5, 3), steps=4,
         hidden=3, layers=1, batch=2, classes=5, readout="every", loss_fn="xent", truncate=0),
    dict(name="lstm_truncated", cell="lstm", features=3, steps=7, hidden=5, layers=2,
         batch=2, classes=4, readout="last", loss_fn="xent", truncate=3),
    dict(name="gru_truncated", cell="gru", features=2, steps=5, hidden=3, layers=1,
         batch=2, classes=3, readout="every", loss_fn="xent", truncate=2),
    dict(name="rnn_relu_truncated", cell="rnn_relu", features=2, steps=6, hidden=4, layers=2,
         batch=2, classes=3, readout="last", loss_fn="xent", truncate=4),
]

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def module(c, width):
    kw = dict(input_size=width, hidden_size=c["hidden"], num_layers=c["layers"],
              batch_first=True)
    if c["cell"] == "lstm":
        return torch.nn.LSTM(**kw)
    if c["cell"] == "gru":
        return torch.nn.GRU(**kw)
    return torch.nn.RNN(nonlinearity=c["cell"][4:], **kw)


def run_module(c, rnn, x):
    """The module over chunks of `truncate` steps (the whole sequence when 0)."""
    k = c["truncate"] or c["steps"]
    outs, state = [], None
    for s in range(0, c["steps"], k):
        out, state = rnn(x[:, s:s + k], state)
        outs.append(out)
        state = tuple(v.detach() for v in state) if isinstance(state, tuple) else state.detach()
    return torch.cat(outs, dim=1)


def unrolled(c, p, x):
    """The same stack written step by step; returns (top output [B,T,H], hs[l][t])."""
    H, T = c["hidden"], c["steps"]
    hs = []
    inp = x
    for l in range(c["layers"]):
        w_ih, w_hh = p[f"rnn.weight_ih_l{l}"], p[f"rnn.weight_hh_l{l}"]
        b_ih, b_hh = p[f"rnn.bias_ih_l{l}"], p[f"rnn.bias_hh_l{l}"]
        h = torch.zeros(x.shape[0], H)
        cst = torch.zeros(x.shape[0], H)
        layer = []
        for t in range(T):
            if c["truncate"] and t > 0 and t % c["truncate"] == 0:
                h, cst = h.detach(), cst.detach()
            gi = inp[:, t] @ w_ih.T + b_ih
            gh = h @ w_hh.T + b_hh
            if c["cell"] == "lstm":
                i, f, g, o = (gi + gh).split(H, dim=1)
                cst = torch.sigmoid(f) * cst + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(cst)
            elif c["cell"] == "gru":
                ir, iz, inn = gi.split(H, dim=1)
                hr, hz, hn = gh.split(H, dim=1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                n = torch.tanh(inn + r * hn)
                h = (1 - z) * n + z * h
            elif c["cell"] == "rnn_tanh":
                h = torch.tanh(gi + gh)
            else:
                h = torch.relu(gi + gh)
            h.retain_grad()
            layer.append(h)
        hs.append(layer)
        inp = torch.stack(layer, dim=1)
    return inp, hs


def head(c, p, top, labels):
    if c["readout"] == "last":
        logits = top[:, -1] @ p["fc.weight"].T + p["fc.bias"]
        flat_labels = labels
    else:
        logits = (top @ p["fc.weight"].T + p["fc.bias"]).reshape(-1, c["classes"])
        flat_labels = labels
    if c["loss_fn"] == "xent":
        loss = torch.nn.functional.cross_entropy(logits, flat_labels)
    else:
        target = torch.nn.functional.one_hot(flat_labels, c["classes"]).double()
        loss = torch.nn.functional.mse_loss(logits, target)
    return logits, loss


def make(c, seed):
    g = torch.Generator().manual_seed(seed)
    B, T, H = c["batch"], c["steps"], c["hidden"]
    if "tokens" in c:
        vocab, dim = c["tokens"]
        ids = torch.randint(0, vocab, (B, T), generator=g)
        emb = torch.nn.Embedding(vocab, dim)
        with torch.no_grad():
            emb.weight.copy_(torch.randn(vocab, dim, generator=g))
        width = dim
        inputs = ids.double().flatten().tolist()
    else:
        x = torch.randn(B, T, c["features"], generator=g)
        width = c["features"]
        inputs = x.flatten().tolist()
    rnn = module(c, width)
    fc = torch.nn.Linear(H, c["classes"])
    with torch.no_grad():
        for prm in list(rnn.parameters()) + list(fc.parameters()):
            prm.copy_(torch.rand(prm.shape, generator=g) * 1.2 - 0.6)
    nlab = B * T if c["readout"] == "every" else B
    labels = torch.randint(0, c["classes"], (nlab,), generator=g)

    params = {f"rnn.{k}": v for k, v in rnn.named_parameters()}
    params.update({f"fc.{k}": v for k, v in fc.named_parameters()})
    if "tokens" in c:
        params["embedding.weight"] = emb.weight
        xin = emb(ids)
    else:
        xin = x
    top = run_module(c, rnn, xin)
    logits, loss = head(c, params, top, labels)
    loss.backward()
    grads = {k: v.grad.flatten().tolist() for k, v in params.items()}

    # The unrolled copy, for dL/dh_t; its loss must be the module's.
    p2 = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    xin2 = p2["embedding.weight"][ids] if "tokens" in c else x
    top2, hs = unrolled(c, p2, xin2)
    _, loss2 = head(c, p2, top2, labels)
    loss2.backward()
    assert abs(loss2.item() - loss.item()) < 1e-12, (c["name"], loss.item(), loss2.item())
    for k in params:
        assert torch.allclose(p2[k].grad, params[k].grad, atol=1e-12), (c["name"], k)
    norms = [[h.grad.norm().item() for h in layer] for layer in hs]

    out = dict(c)
    if "tokens" in c:
        out["tokens"] = list(c["tokens"])
    out.update(
        params={k: v.detach().flatten().tolist() for k, v in params.items()},
        inputs=inputs,
        labels=labels.tolist(),
        logits=logits.detach().flatten().tolist(),
        top=top.detach().flatten().tolist(),
        loss=loss.item(),
        grads=grads,
        hidden_grad_norms=norms,
    )
    return out


def main():
    cases = [make(c, 1000 + i) for i, c in enumerate(CASES)]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rnn_golden.json")
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
