"""Forward/backward pairs shared by the models.

Each primitive comes as ``<op>_forward(...) -> (out, cache)`` and
``<op>_backward(dout, cache) -> grads`` (the cs231n convention). A backward takes
the upstream gradient ``dout`` (same shape as ``out``) and returns the gradient
of the scalar loss with respect to every input of the forward, in order.

Equation labels refer to docs/layers.md, where each forward and backward line below is
derived, e.g. ``(P3)`` for dW = xᵀ dy.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


# ----------------------------------------------------------------------------- linear
class LinearCache(NamedTuple):
    x: Array
    w: Array


def linear_forward(x: Array, w: Array, b: Array) -> tuple[Array, LinearCache]:
    """y = x W + b, in the dtype of W.

    Args:
      x: <float>[..., D_in], cast to W's dtype (float64 data with float32 weights, e.g. under
        ``jax_enable_x64``, computes and caches in float32, so the gradients keep the
        parameters' dtype).
      w: <float>[D_in, D_out].
      b: <float>[D_out].
    Returns:
      y: <float>[..., D_out] and the cache for :func:`linear_backward`.
    """
    x = x.astype(w.dtype)
    return x @ w + b, LinearCache(x, w)  # (P1)


def linear_backward(dy: Array, cache: LinearCache) -> tuple[Array, Array, Array]:
    """dx = dy Wᵀ, dW = xᵀ dy, db = Σ dy (sums over every leading axis); (P2)-(P4)."""
    x, w = cache
    dx = dy @ w.T  # (P2)
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return dx, x2.T @ dy2, dy2.sum(axis=0)  # (P3), (P4)


# ----------------------------------------------------------------------------- activations
def sigmoid_forward(x: Array) -> tuple[Array, Array]:
    """y = 1 / (1 + exp(-x)); the cache is y."""
    y = jax.nn.sigmoid(x)  # (P5)
    return y, y


def sigmoid_backward(dy: Array, y: Array) -> Array:
    """dσ/dx = y (1 − y) (P8)."""
    return dy * y * (1.0 - y)  # (P9)


def tanh_forward(x: Array) -> tuple[Array, Array]:
    """y = tanh(x); the cache is y."""
    y = jnp.tanh(x)  # (P10)
    return y, y


def tanh_backward(dy: Array, y: Array) -> Array:
    """d tanh/dx = 1 − y² (P11)."""
    return dy * (1.0 - y * y)  # (P12)


def relu_forward(x: Array) -> tuple[Array, Array]:
    """y = max(x, 0); the cache is y."""
    y = jnp.maximum(x, 0.0)  # (P13)
    return y, y


def relu_backward(dy: Array, y: Array) -> Array:
    """d relu/dx = 1[x > 0] (0 at x = 0, as jax.nn.relu's gradient)."""
    return jnp.where(y > 0, dy, jnp.zeros_like(dy))  # (P14)


# ----------------------------------------------------------------------------- softmax CE
class SoftmaxCECache(NamedTuple):
    probs: Array
    labels: Array


def _log_probs(logits: Array, labels: Array) -> tuple[Array, Array]:
    """(log softmax(logits) <[N, C]>, each row's log-probability of its label <[N]>)."""
    logp = jax.nn.log_softmax(logits, axis=-1)  # log of (P15), stable for any logits
    return logp, jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean cross-entropy of integer labels under softmax(logits): −1/N Σ_n log p[n, labels[n]]
    (P16), written once.

    A forward only: every model's reference loss ends with it (``jax.grad`` differentiates it
    there) and :func:`softmax_cross_entropy_forward` computes the same value; the manual
    gradient is :func:`softmax_cross_entropy_backward`.

    Args:
      logits: <float>[N, C].
      labels: <int>[N], values in [0, C).
    """
    return -jnp.mean(_log_probs(logits, labels)[1])  # (P16)


def softmax_cross_entropy_forward(logits: Array, labels: Array) -> tuple[Array, SoftmaxCECache]:
    """:func:`cross_entropy` and the cache for :func:`softmax_cross_entropy_backward`.

    Args:
      logits: <float>[N, C].
      labels: <int>[N], values in [0, C).
    Returns:
      loss: scalar, −1/N Σ_n log p[n, labels[n]]; and the cache (probs <float>[N, C], labels).
    """
    logp, picked = _log_probs(logits, labels)
    return -jnp.mean(picked), SoftmaxCECache(jnp.exp(logp), labels)  # (P16)


def softmax_cross_entropy_backward(dloss: Array, cache: SoftmaxCECache) -> Array:
    """dlogits = dloss · (p − onehot(y)) / N."""
    probs, labels = cache
    n, c = probs.shape
    onehot = jax.nn.one_hot(labels, c, dtype=probs.dtype)
    return dloss * (probs - onehot) / n  # (P17)


# ----------------------------------------------------------------------------- embedding
class EmbeddingCache(NamedTuple):
    ids: Array
    vocab_size: int


def embedding_forward(ids: Array, emb: Array) -> tuple[Array, EmbeddingCache]:
    """Row lookup.

    Args:
      ids: <int>[...], values in [0, V).
      emb: <float>[V, D].
    Returns:
      out: <float>[..., D] = emb[ids]; and the cache.
    """
    return emb[ids], EmbeddingCache(ids, emb.shape[0])  # (P18)


def embedding_backward(dout: Array, cache: EmbeddingCache) -> Array:
    """demb = scatter-add of dout into the looked-up rows (repeated ids add up)."""
    ids, vocab_size = cache
    d = dout.shape[-1]
    demb = jnp.zeros((vocab_size, d), dout.dtype)
    return demb.at[ids.reshape(-1)].add(dout.reshape(-1, d))  # (P19)
