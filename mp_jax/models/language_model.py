"""Neural 4-gram language model: the next word from a trigram (Q2, after Bengio et al. 2003).

ids <int>[N, 3] → e = [R[w1]; R[w2]; R[w3]] <float>[N, 3D] (R <float>[V, D] shared by the
three positions) → h = σ(e W1 + b1) <float>[N, P] → z = h W2 + b2 <float>[N, V]
→ p = softmax(z); L = −1/N Σ_n log p[n, y_n].

Manual backward: dz = (p − onehot(y)) / N; dW2 = hᵀ dz; db2 = Σ dz;
δ_h = dz W2ᵀ ⊙ h(1 − h); dW1 = eᵀ δ_h; db1 = Σ δ_h; de = δ_h W1ᵀ, split into three
D-blocks and scatter-added into dR at each block's word (a word repeated within one
trigram collects the sum of its blocks).

Equation labels refer to docs/language_model.md: the forward is (LM1)-(LM4), the backward
(LM5)-(LM10), derived there step by step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mp_jax import layers


class LMParams(NamedTuple):
    emb: jax.Array  # R, [V, D]
    w_hid: jax.Array  # W1, [3D, P]
    b_hid: jax.Array  # b1, [P]
    w_out: jax.Array  # W2, [P, V]
    b_out: jax.Array  # b2, [V]


class LMCache(NamedTuple):
    emb: layers.EmbeddingCache
    hid: layers.LinearCache
    sig: jax.Array  # h, [N, P]
    out: layers.LinearCache


def init_params(key: jax.Array, vocab_size: int, embed_dim: int, hidden: int, *, std: float = 0.01,
                dtype=jnp.float32) -> LMParams:
    """Every weight and bias from N(0, std²) (the assignment's std = 0.01)."""
    ks = jax.random.split(key, 5)
    shapes = [(vocab_size, embed_dim), (3 * embed_dim, hidden), (hidden,), (hidden, vocab_size), (vocab_size,)]
    return LMParams(*(std * jax.random.normal(k, s, dtype) for k, s in zip(ks, shapes)))


def forward(params: LMParams, ids: jax.Array) -> tuple[jax.Array, LMCache]:
    """Logits <float>[N, V] for trigrams ``ids`` <int>[N, 3], and the cache for :func:`backward`."""
    e3, c_emb = layers.embedding_forward(ids, params.emb)  # [N, 3, D]; (LM1)
    e = e3.reshape(ids.shape[0], -1)  # [N, 3D], blocks in word order
    a, c_hid = layers.linear_forward(e, params.w_hid, params.b_hid)  # (LM2)
    h, c_sig = layers.sigmoid_forward(a)  # (LM2)
    z, c_out = layers.linear_forward(h, params.w_out, params.b_out)  # (LM3)
    return z, LMCache(c_emb, c_hid, c_sig, c_out)


def backward_with_intermediates(cache: LMCache, dz: jax.Array):
    """Gradients of the loss given dL/dz <float>[N, V], and the named intermediate
    gradients {"δ_h" <[N, P]> (LM7), "de" <[N, 3D]> (LM8)}; dR = scatter-add of the D-blocks
    of de (LM9-LM10)."""
    dh, dw_out, db_out = layers.linear_backward(dz, cache.out)  # (LM6)
    da = layers.sigmoid_backward(dh, cache.sig)  # (LM7)
    de, dw_hid, db_hid = layers.linear_backward(da, cache.hid)  # (LM8)
    n = de.shape[0]
    demb = layers.embedding_backward(de.reshape(n, 3, -1), cache.emb)  # (LM9), (LM10)
    return LMParams(demb, dw_hid, db_hid, dw_out, db_out), {"δ_h": da, "de": de}


def backward(cache: LMCache, dz: jax.Array) -> LMParams:
    """Gradients of the loss given dL/dz <float>[N, V] (:func:`backward_with_intermediates`)."""
    return backward_with_intermediates(cache, dz)[0]


def loss(params: LMParams, batch) -> jax.Array:
    """Reference mean cross-entropy for ``jax.grad`` (jnp / jax.nn only, no layer caches).

    batch: (ids <int>[N, 3], targets <int>[N]).
    """
    ids, y = batch
    e = jnp.concatenate([params.emb[ids[:, j]] for j in range(3)], axis=1)
    h = jax.nn.sigmoid(e @ params.w_hid + params.b_hid)
    return layers.cross_entropy(h @ params.w_out + params.b_out, y)


def loss_grad_and_intermediates(params: LMParams, batch):
    """(mean cross-entropy, LMParams of gradients, {"dz", "δ_h", "de"}) of the manual backward."""
    ids, y = batch
    z, cache = forward(params, ids)
    value, ce_cache = layers.softmax_cross_entropy_forward(z, y)  # (LM4)
    dz = layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)  # dz (LM5)
    grads, named = backward_with_intermediates(cache, dz)
    return value, grads, {"dz": dz, **named}


def loss_and_grad(params: LMParams, batch) -> tuple[jax.Array, LMParams]:
    """Manual forward and backward: (mean cross-entropy, LMParams of gradients)."""
    return loss_grad_and_intermediates(params, batch)[:2]


def predict_proba(params: LMParams, ids: jax.Array) -> jax.Array:
    """p(w4 | w1 w2 w3) <float>[N, V] for trigrams ``ids`` <int>[N, 3]."""
    z, _ = forward(params, ids)
    return jax.nn.softmax(z, axis=-1)


def metrics(params: LMParams, batch, *, k: int = 10) -> dict:
    """Batch means: ``loss`` (cross-entropy, nats), ``top1`` and ``top10`` accuracy.

    top-k counts a hit when fewer than k words score strictly higher than the target.
    """
    ids, y = batch
    z, _ = forward(params, ids)
    value, _ = layers.softmax_cross_entropy_forward(z, y)
    target = jnp.take_along_axis(z, y[:, None], axis=1)
    rank = jnp.sum(z > target, axis=1)  # 0 = best
    return {"loss": value, "top1": jnp.mean((rank < 1).astype(z.dtype)),
            f"top{k}": jnp.mean((rank < k).astype(z.dtype))}
