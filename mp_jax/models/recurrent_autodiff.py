"""The Q3 classifier's loss written plainly for ``jax.grad``: the oracle the manual BPTT of
:mod:`mp_jax.models.recurrent` is tested against.

One matrix per gate, ``jax.nn`` and ``jnp`` only (and the forward :func:`mp_jax.layers.cross_entropy`), no
backward code shared with the manual path:
the cell is told from its parameters' shapes (W_h is [H, H], [H, 4H] or [H, 3H] for the RNN,
the LSTM and the GRU), the gates written out as in docs/recurrent.md (RNN1-2, LSTM1-4,
GRU1-5, HEAD1-3).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mp_jax import layers

Array = jax.Array


def last_state(cell, x: Array) -> Array:
    """h_T <float>[N, H] of x <float>[N, T, D] from h_0 = 0 (and c_0 = 0)."""
    n_hidden = cell.w_h.shape[0]
    g = cell.w_h.shape[1] // n_hidden  # gate blocks: 1 (RNN), 4 (LSTM), 3 (GRU)
    wx, wh, bs = jnp.split(cell.w_x, g, axis=1), jnp.split(cell.w_h, g, axis=1), jnp.split(cell.b, g)
    sig = jax.nn.sigmoid

    def pre(k, x_t, h):
        return x_t @ wx[k] + h @ wh[k] + bs[k]

    def rnn(h, x_t):
        return jnp.tanh(pre(0, x_t, h)), None

    def lstm(hc, x_t):
        h, c = hc
        c = sig(pre(1, x_t, h)) * c + sig(pre(0, x_t, h)) * jnp.tanh(pre(2, x_t, h))
        return (sig(pre(3, x_t, h)) * jnp.tanh(c), c), None

    def gru(h, x_t):
        z, r = sig(pre(0, x_t, h)), sig(pre(1, x_t, h))
        return z * h + (1.0 - z) * jnp.tanh(x_t @ wx[2] + (r * h) @ wh[2] + bs[2]), None

    h0 = jnp.zeros((x.shape[0], n_hidden), x.dtype)
    step = {1: rnn, 4: lstm, 3: gru}[g]
    state, _ = jax.lax.scan(step, (h0, h0) if g == 4 else h0, jnp.swapaxes(x, 0, 1))
    return state[0] if g == 4 else state


def loss(params, batch) -> Array:
    """Mean cross-entropy of the classifier (``recurrent.ClassifierParams``) on
    ``batch`` = (x <float>[N, T, D], y <int>[N])."""
    x, y = batch
    a = jax.nn.relu(last_state(params.cell, x) @ params.w_mlp + params.b_mlp)
    z = a @ params.w_out + params.b_out
    return layers.cross_entropy(z, y)
