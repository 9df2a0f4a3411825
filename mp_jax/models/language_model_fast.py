"""The language model's fast path: the same function as :mod:`mp_jax.models.language_model`.

Same parameters (:class:`~mp_jax.models.language_model.LMParams`), the same backward
(:func:`~mp_jax.models.language_model.backward`, reused as it is) and the same gradients up to
rounding: the tests hold this module's :func:`loss_and_grad` equal to the reference's in
float64 to 1e-12 relative. Training uses it.

The one difference is how the hidden layer computes σ: as σ(a) = ½ tanh(½a) + ½ (P6 in
``docs/layers.md``). XLA's CPU tanh is one rational approximation where σ is an exp and a
divide; the epoch measured 0.278 s against the reference's 0.293 s on a 2-core CPU (about
5 %; the six matmuls are most of the epoch; BENCHMARKS.md). The backward needs only h, so it
is unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mp_jax import layers
from mp_jax.models.language_model import (  # noqa: F401  (re-exported: same parameters, same reference)
    LMCache, LMParams, backward, backward_with_intermediates, init_params, loss, metrics, predict_proba)


def forward(params: LMParams, ids: jax.Array) -> tuple[jax.Array, LMCache]:
    """Logits <float>[N, V] for trigrams ``ids`` <int>[N, 3], and the reference's cache."""
    e3, c_emb = layers.embedding_forward(ids, params.emb)  # [N, 3, D]
    a, c_hid = layers.linear_forward(e3.reshape(ids.shape[0], -1), params.w_hid, params.b_hid)
    h = 0.5 * jnp.tanh(0.5 * a) + 0.5  # σ(a) by (P6); the cache for σ' = h(1 − h) is h itself
    z, c_out = layers.linear_forward(h, params.w_out, params.b_out)
    return z, LMCache(c_emb, c_hid, h, c_out)


def loss_grad_and_intermediates(params: LMParams, batch):
    """(mean cross-entropy, LMParams of gradients, {"dz", "δ_h", "de"}): this forward, the
    reference's backward."""
    ids, y = batch
    z, cache = forward(params, ids)
    value, ce_cache = layers.softmax_cross_entropy_forward(z, y)
    dz = layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)
    grads, named = backward_with_intermediates(cache, dz)
    return value, grads, {"dz": dz, **named}


def loss_and_grad(params: LMParams, batch) -> tuple[jax.Array, LMParams]:
    """Manual forward and backward: (mean cross-entropy, LMParams of gradients)."""
    return loss_grad_and_intermediates(params, batch)[:2]
