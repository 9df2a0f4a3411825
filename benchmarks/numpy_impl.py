"""From-scratch numpy references, written as the course's students write them.

Forward and backward by hand, a Python loop over minibatches and (for the recurrences)
over time steps, SGD with momentum (v ← μ v + g; w ← w − η v). They exist to be timed by
:mod:`benchmarks.epochs` (``python -m benchmarks``) and to cross-check the JAX
implementations on one batch.

Parameter dicts use short names (the model equations are in docs/autoencoder.md,
docs/language_model.md and docs/recurrent.md):

* AE (tied): ``W`` [256, H], ``b1`` [H], ``b2`` [256].
* LM: ``R`` [V, D], ``W1`` [3D, P], ``b1`` [P], ``W2`` [P, V], ``b2`` [V].
* RNN: ``Wx`` [3, H], ``Wh`` [H, H], ``b`` [H]; LSTM: the same with 4H gate columns in the
  order i, f, g, o; GRU: ``Wx`` [3, 3H], ``Wh`` [H, 3H], ``b`` [3H] with columns z, r, ĥ.
  Head: ``W3`` [H, M], ``b3`` [M], ``W4`` [M, C], ``b4`` [C].
"""
from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax_cross_entropy(z, y):
    """Mean cross-entropy of integer labels y under softmax(z), and dloss/dz = (p − onehot) / N."""
    n = z.shape[0]
    z = z - z.max(axis=1, keepdims=True)
    pr = np.exp(z)
    pr /= pr.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(pr[np.arange(n), y]))
    pr[np.arange(n), y] -= 1.0
    return loss, pr / n


# ----------------------------------------------------------------------------- autoencoder
def ae_loss_and_grad(p, x, lam, beta, rho):
    n = x.shape[0]
    W, b1, b2 = p["W"], p["b1"], p["b2"]
    h = sigmoid(x @ W + b1)
    o = sigmoid(h @ W.T + b2)
    rho_hat = h.mean(axis=0)
    kl = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    loss = 0.5 / n * np.sum((x - o) ** 2) + lam * np.sum(W * W) + beta * kl
    d_o = (o - x) * o * (1 - o) / n
    s = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    d_h = (d_o @ W + s / n) * h * (1 - h)
    gW = x.T @ d_h + (h.T @ d_o).T + 2 * lam * W
    return loss, {"W": gW, "b1": d_h.sum(0), "b2": d_o.sum(0)}


# ----------------------------------------------------------------------------- language model
def lm_loss_and_grad(p, x, y):
    n = x.shape[0]
    R, W1, b1, W2, b2 = p["R"], p["W1"], p["b1"], p["W2"], p["b2"]
    d = R.shape[1]
    e = R[x].reshape(n, 3 * d)
    h = sigmoid(e @ W1 + b1)
    z = h @ W2 + b2
    loss, dz = softmax_cross_entropy(z, y)
    dh = dz @ W2.T * h * (1 - h)
    de = (dh @ W1.T).reshape(n, 3, d)
    dR = np.zeros_like(R)
    np.add.at(dR, x, de)
    return loss, {"R": dR, "W1": e.T @ dh, "b1": dh.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


# ----------------------------------------------------------------------------- recurrences
def _head_forward(p, hT, y):
    n = hT.shape[0]
    a_pre = hT @ p["W3"] + p["b3"]
    a = np.maximum(a_pre, 0)
    z = a @ p["W4"] + p["b4"]
    loss, dz = softmax_cross_entropy(z, y)
    g = {"W4": a.T @ dz, "b4": dz.sum(0)}
    da = dz @ p["W4"].T * (a_pre > 0)
    g["W3"], g["b3"] = hT.T @ da, da.sum(0)
    return loss, g, da @ p["W3"].T


def rnn_loss_and_grad(p, x, y):
    n, t_len, _ = x.shape
    H = p["Wh"].shape[0]
    hs = np.zeros((t_len + 1, n, H), x.dtype)
    for t in range(t_len):
        hs[t + 1] = np.tanh(x[:, t] @ p["Wx"] + hs[t] @ p["Wh"] + p["b"])
    loss, g, dh = _head_forward(p, hs[-1], y)
    dWx, dWh, db = np.zeros_like(p["Wx"]), np.zeros_like(p["Wh"]), np.zeros_like(p["b"])
    for t in reversed(range(t_len)):
        da = dh * (1 - hs[t + 1] ** 2)
        dWx += x[:, t].T @ da
        dWh += hs[t].T @ da
        db += da.sum(0)
        dh = da @ p["Wh"].T
    g.update(Wx=dWx, Wh=dWh, b=db)
    return loss, g


def lstm_loss_and_grad(p, x, y):
    n, t_len, _ = x.shape
    H = p["Wh"].shape[0]
    hs = np.zeros((t_len + 1, n, H), x.dtype)
    cs = np.zeros((t_len + 1, n, H), x.dtype)
    gates = np.zeros((t_len, n, 4 * H), x.dtype)
    for t in range(t_len):
        a = x[:, t] @ p["Wx"] + hs[t] @ p["Wh"] + p["b"]
        i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 3 * H:])
        gg = np.tanh(a[:, 2 * H:3 * H])
        gates[t] = np.concatenate([i, f, gg, o], axis=1)
        cs[t + 1] = f * cs[t] + i * gg
        hs[t + 1] = o * np.tanh(cs[t + 1])
    loss, g, dh = _head_forward(p, hs[-1], y)
    dWx, dWh, db = np.zeros_like(p["Wx"]), np.zeros_like(p["Wh"]), np.zeros_like(p["b"])
    dc = np.zeros((n, H), x.dtype)
    for t in reversed(range(t_len)):
        i, f, gg, o = np.split(gates[t], 4, axis=1)
        tc = np.tanh(cs[t + 1])
        dc = dc + dh * o * (1 - tc ** 2)
        da = np.concatenate([dc * gg * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - gg ** 2),
                             dh * tc * o * (1 - o)], axis=1)
        dWx += x[:, t].T @ da
        dWh += hs[t].T @ da
        db += da.sum(0)
        dh = da @ p["Wh"].T
        dc = dc * f
    g.update(Wx=dWx, Wh=dWh, b=db)
    return loss, g


def gru_loss_and_grad(p, x, y):
    n, t_len, _ = x.shape
    H = p["Wh"].shape[0]
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    hs = np.zeros((t_len + 1, n, H), x.dtype)
    cache = []
    for t in range(t_len):
        xa = x[:, t] @ Wx + b
        ha = hs[t] @ Wh[:, :2 * H]
        z = sigmoid(xa[:, :H] + ha[:, :H])
        r = sigmoid(xa[:, H:2 * H] + ha[:, H:])
        hh = np.tanh(xa[:, 2 * H:] + (r * hs[t]) @ Wh[:, 2 * H:])
        hs[t + 1] = z * hs[t] + (1 - z) * hh
        cache.append((z, r, hh))
    loss, g, dh = _head_forward(p, hs[-1], y)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    for t in reversed(range(t_len)):
        z, r, hh = cache[t]
        hp = hs[t]
        dhh = dh * (1 - z) * (1 - hh ** 2)
        dz = dh * (hp - hh) * z * (1 - z)
        drh = dhh @ Wh[:, 2 * H:].T
        dr = drh * hp * r * (1 - r)
        da = np.concatenate([dz, dr, dhh], axis=1)
        dWx += x[:, t].T @ da
        dWh[:, :2 * H] += hp.T @ da[:, :2 * H]
        dWh[:, 2 * H:] += (r * hp).T @ dhh
        db += da.sum(0)
        dh = dh * z + drh * r + da[:, :2 * H] @ Wh[:, :2 * H].T
    g.update(Wx=dWx, Wh=dWh, b=db)
    return loss, g


RECURRENT = {"rnn": rnn_loss_and_grad, "lstm": lstm_loss_and_grad, "gru": gru_loss_and_grad}


# ----------------------------------------------------------------------------- training epoch
def sgd_epoch(loss_and_grad, params, velocity, data, batch_size, lr, momentum, rng, clip_norm=None):
    """One shuffled epoch of minibatch SGD with momentum; updates in place, returns mean loss."""
    n = len(data[0])
    perm = rng.permutation(n)
    total = 0.0
    for start in range(0, n, batch_size):
        idx = perm[start:start + batch_size]
        loss, grads = loss_and_grad(params, *(d[idx] for d in data))
        if clip_norm is not None:
            norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
            if norm > clip_norm:
                grads = {k: g * (clip_norm / norm) for k, g in grads.items()}
        for k, g in grads.items():
            velocity[k] = momentum * velocity[k] + g
            params[k] -= lr * velocity[k]
        total += loss * len(idx)
    return total / n
