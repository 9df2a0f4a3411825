"""A one-hidden-layer MLP classifier (the smoke model that exercises the engine).

x <float>[N, D] → h = tanh(x W1 + b1) <float>[N, H] → z = h W2 + b2 <float>[N, C]
→ softmax cross-entropy with integer labels y <int>[N].

Equation labels refer to docs/layers.md: the backward is (P17), then the layer primitives.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mp_jax import layers


class MLPParams(NamedTuple):
    w_in: jax.Array  # [D, H]
    b_in: jax.Array  # [H]
    w_out: jax.Array  # [H, C]
    b_out: jax.Array  # [C]


def init_params(key: jax.Array, n_in: int, n_hidden: int, n_classes: int, dtype=jnp.float32) -> MLPParams:
    """Xavier-uniform weights, zero biases."""
    k1, k2 = jax.random.split(key)

    def xavier(k, a, b):
        lim = (6.0 / (a + b)) ** 0.5
        return jax.random.uniform(k, (a, b), dtype, -lim, lim)

    return MLPParams(xavier(k1, n_in, n_hidden), jnp.zeros(n_hidden, dtype), xavier(k2, n_hidden, n_classes), jnp.zeros(n_classes, dtype))


def forward(params: MLPParams, x: jax.Array):
    """Logits <float>[N, C] and the cache for :func:`backward`."""
    a, c1 = layers.linear_forward(x, params.w_in, params.b_in)
    h, c2 = layers.tanh_forward(a)
    z, c3 = layers.linear_forward(h, params.w_out, params.b_out)
    return z, (c1, c2, c3)


def backward_with_intermediates(cache, dz: jax.Array):
    """Gradients of the loss given dL/dz <float>[N, C], and {"δ_a": the hidden layer's
    pre-activation gradient <[N, H]>}."""
    c1, c2, c3 = cache
    dh, dw_out, db_out = layers.linear_backward(dz, c3)  # (P2), (P3), (P4)
    da = layers.tanh_backward(dh, c2)  # (P12)
    _, dw_in, db_in = layers.linear_backward(da, c1)  # (P3), (P4)
    return MLPParams(dw_in, db_in, dw_out, db_out), {"δ_a": da}


def backward(cache, dz: jax.Array) -> MLPParams:
    """Gradients of the loss given dL/dz <float>[N, C]."""
    return backward_with_intermediates(cache, dz)[0]


def loss(params: MLPParams, batch) -> jax.Array:
    """Reference loss for ``jax.grad``: written with jax.nn, not the layer caches."""
    x, y = batch
    z = jnp.tanh(x @ params.w_in + params.b_in) @ params.w_out + params.b_out
    return layers.cross_entropy(z, y)


def loss_grad_and_intermediates(params: MLPParams, batch):
    """(mean cross-entropy, MLPParams of gradients, {"dz" <[N, C]>, "δ_a" <[N, H]>})."""
    x, y = batch
    z, cache = forward(params, x)
    value, ce_cache = layers.softmax_cross_entropy_forward(z, y)
    dz = layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)  # (P17)
    grads, named = backward_with_intermediates(cache, dz)
    return value, grads, {"dz": dz, **named}


def loss_and_grad(params: MLPParams, batch):
    """Manual forward and backward: (mean cross-entropy, MLPParams of gradients)."""
    return loss_grad_and_intermediates(params, batch)[:2]


def metrics(params: MLPParams, batch) -> dict:
    x, y = batch
    z, _ = forward(params, x)
    value, _ = layers.softmax_cross_entropy_forward(z, y)
    return {"loss": value, "accuracy": jnp.mean((jnp.argmax(z, -1) == y).astype(z.dtype))}
