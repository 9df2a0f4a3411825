"""PyTorch eager implementations for :mod:`benchmarks.epochs` (optional: needs torch).

Autograd, ``torch.optim.SGD`` with momentum (PyTorch's momentum is v ← μ v + g,
w ← w − η v: the same rule as optax and the numpy references), a Python loop over
minibatches, fused library kernels where PyTorch has them (``nn.RNN``, ``nn.LSTM``,
``nn.GRU``, ``nn.Embedding``; cuDNN's on CUDA). On the CPU unless ``device="cuda"``.
Parameters are loaded from the numpy dicts of :mod:`benchmarks.numpy_impl` so losses and
gradients can be compared on one batch.

``nn.GRU`` computes the *reset-after* candidate ĥ = tanh(x W + b + r ⊙ (h U + b_h)),
not the candidate of docs/recurrent.md (GRU3), whose r ⊙ h goes into the matmul: it is
timed as PyTorch's nearest fused kernel and left out of the gradient comparison (the
benchmark says so).
"""
from __future__ import annotations

import numpy as np


def _t(a):
    import torch

    return torch.tensor(np.asarray(a, np.float32))


class AE:
    def __init__(self, p, lam, beta, rho):
        import torch

        self.params = {k: torch.nn.Parameter(_t(v)) for k, v in p.items()}
        self.lam, self.beta, self.rho = lam, beta, rho
        self.torch = torch

    def loss(self, x):
        torch = self.torch
        W, b1, b2 = self.params["W"], self.params["b1"], self.params["b2"]
        h = torch.sigmoid(x @ W + b1)
        o = torch.sigmoid(h @ W.T + b2)
        rh = h.mean(0)
        rho = self.rho
        kl = torch.sum(rho * torch.log(rho / rh) + (1 - rho) * torch.log((1 - rho) / (1 - rh)))
        return 0.5 / x.shape[0] * torch.sum((x - o) ** 2) + self.lam * torch.sum(W * W) + self.beta * kl


class LM:
    def __init__(self, p):
        import torch

        v, d = p["R"].shape
        self.emb = torch.nn.Embedding(v, d)
        self.hid = torch.nn.Linear(3 * d, p["W1"].shape[1])
        self.out = torch.nn.Linear(p["W2"].shape[0], v)
        with torch.no_grad():
            self.emb.weight.copy_(_t(p["R"]))
            self.hid.weight.copy_(_t(p["W1"].T))
            self.hid.bias.copy_(_t(p["b1"]))
            self.out.weight.copy_(_t(p["W2"].T))
            self.out.bias.copy_(_t(p["b2"]))
        self.params = {"R": self.emb.weight, "W1": self.hid.weight, "b1": self.hid.bias,
                       "W2": self.out.weight, "b2": self.out.bias}
        self.transposed = {"W1", "W2"}
        self.torch = torch

    def loss(self, x, y):
        torch = self.torch
        e = self.emb(x).reshape(x.shape[0], -1)
        z = self.out(torch.sigmoid(self.hid(e)))
        return torch.nn.functional.cross_entropy(z, y)


class Recurrent:
    def __init__(self, cell, p):
        import torch

        H = p["Wh"].shape[0]
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = cls(3, H, batch_first=True)
        self.fc1 = torch.nn.Linear(H, p["W3"].shape[1])
        self.fc2 = torch.nn.Linear(p["W3"].shape[1], p["W4"].shape[1])
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(_t(p["Wx"].T))
            self.rnn.weight_hh_l0.copy_(_t(p["Wh"].T))
            self.rnn.bias_ih_l0.copy_(_t(p["b"]))
            self.rnn.bias_hh_l0.zero_()
            self.fc1.weight.copy_(_t(p["W3"].T))
            self.fc1.bias.copy_(_t(p["b3"]))
            self.fc2.weight.copy_(_t(p["W4"].T))
            self.fc2.bias.copy_(_t(p["b4"]))
        # bias_hh is a second, redundant bias in PyTorch; it is trained too (its gradient equals b's)
        self.params = {"Wx": self.rnn.weight_ih_l0, "Wh": self.rnn.weight_hh_l0, "b": self.rnn.bias_ih_l0,
                       "W3": self.fc1.weight, "b3": self.fc1.bias, "W4": self.fc2.weight, "b4": self.fc2.bias}
        self.extra = [self.rnn.bias_hh_l0]
        self.transposed = {"Wx", "Wh", "W3", "W4"}
        self.comparable = cell != "gru"
        self.torch = torch

    def loss(self, x, y):
        torch = self.torch
        out, _ = self.rnn(x)
        z = self.fc2(torch.relu(self.fc1(out[:, -1])))
        return torch.nn.functional.cross_entropy(z, y)


def build(workload: str, p: dict, hyper: dict, device: str = "cpu"):
    """The workload's model with parameters ``p`` (numpy, the names of :mod:`benchmarks.numpy_impl`), on ``device``."""
    import torch

    if workload == "ae":
        model = AE(p, hyper["lam"], hyper["beta"], hyper["rho"])
    elif workload == "lm":
        model = LM(p)
    else:
        model = Recurrent(workload, p)
    # Module.to keeps each Parameter object (the dicts still point at them) and lets nn.RNN & co.
    # re-pack their weights for cuDNN; the autoencoder's bare Parameters move in place
    for m in [v for v in vars(model).values() if isinstance(v, torch.nn.Module)]:
        m.to(device)
    with torch.no_grad():
        for q in model.params.values():
            q.data = q.data.to(device)
    if str(device).startswith("cuda"):
        # full float32, as the JAX rows: cuDNN's RNNs otherwise use TensorFloat-32 (on an H200
        # the LSTM's gradients then differed from the manual ones by 2e-2 in the worst leaf)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return model


def to_torch(data, device: str = "cpu") -> tuple:
    """numpy arrays as tensors on ``device``: float32 as they are, integer labels as int64."""
    import torch

    return tuple((torch.from_numpy(d) if d.dtype == np.float32 else torch.from_numpy(d.astype(np.int64))).to(device)
                 for d in data)


def loss_and_grad(model, batch) -> tuple[float, dict]:
    """One batch's loss and gradients as numpy, in the numpy references' layout."""
    for q in model.params.values():
        q.grad = None
    loss = model.loss(*batch)
    loss.backward()
    out = {}
    for k, q in model.params.items():
        g = q.grad.detach().cpu().numpy()
        out[k] = g.T if k in getattr(model, "transposed", ()) else g
    return float(loss.detach()), out


def make_epoch(model, lr: float, momentum: float, clip_norm=None):
    import torch

    params = list(model.params.values()) + list(getattr(model, "extra", []))
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)

    def epoch(data, batch_size, seed):
        n = len(data[0])
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(data[0].device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = model.loss(*(d[idx] for d in data))
            loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            total += float(loss.detach()) * len(idx)
        return total / n

    return epoch
