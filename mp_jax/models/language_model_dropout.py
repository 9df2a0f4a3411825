"""The language model trained with dropout on its hidden layer: Q2's tuned network.

The network is :mod:`mp_jax.models.language_model`'s (the same :class:`LMParams`, the same
initialisation, the same function at evaluation: :func:`~mp_jax.models.language_model.metrics`
and the scoring of :mod:`mp_jax.models.language_model_scoring` apply as they are). Only
training differs: each hidden unit of each example is dropped with probability q and the
survivors are scaled by 1/(1 − q) (inverted dropout; Srivastava et al. 2014), so that the
expected hidden layer is h and evaluation uses h itself:

    h̃ = h ⊙ m / (1 − q),  m ∈ {0, 1}^[N, P], each 1 with probability 1 − q   (LM11)
    z = h̃ W2 + b2                                                           (LM12)

Manual backward: dz as (LM5); dh̃ = dz W2ᵀ, dW2 = h̃ᵀ dz, db2 = Σ dz (LM13);
dh = dh̃ ⊙ m / (1 − q) (LM14); then δ_h, dW1, db1, de and dR as (LM7)-(LM10).

A training batch is ``(ids <int>[N, 3], y <int>[N], seeds <uint32>[N])``: example n's mask is a
function of its own seed (:func:`keep_mask`), so the batch alone fixes the loss, the oracles of
:mod:`mp_jax.checks.gradtable` see the mask the manual backward saw, and a data-parallel split
over devices draws each example's mask as one device would. :class:`FreshSeeds` draws new seeds
for the whole training set at the start of every epoch (``FitConfig.augment``), so every epoch
drops other units.

Equation labels refer to docs/language_model.md ("Dropout on the hidden layer").
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mp_jax import layers
from mp_jax.models.language_model import LMParams, init_params, metrics, predict_proba  # noqa: F401 (the same network)

DEFAULT_RATE = 0.5  # q of the gradient checks' instances (registry "lm-dropout"); training passes its own


class DropoutCache(NamedTuple):
    emb: layers.EmbeddingCache
    hid: layers.LinearCache
    sig: jax.Array  # h = σ(a), [N, P]
    mask: jax.Array  # m, [N, P] of 0 and 1
    out: layers.LinearCache  # its input is h̃


def keep_mask(seeds: jax.Array, width: int, rate: float, dtype=jnp.float32) -> jax.Array:
    """m <dtype>[N, width]: 1 where a unit is kept (probability 1 − ``rate``), 0 where it is
    dropped, row n drawn from ``seeds[n]`` alone (``jax.random.bernoulli`` under the key
    ``fold_in(PRNGKey(0), seeds[n])``). No scaling here: the 1/(1 − q) is (LM11)'s."""
    base = jax.random.PRNGKey(0)
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(seeds).astype(jnp.uint32))
    return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, (width,)))(keys).astype(dtype)


def dropout_forward(h: jax.Array, mask: jax.Array, rate: float) -> jax.Array:
    """h̃ = h ⊙ m / (1 − q) (LM11)."""
    return h * mask / (1.0 - rate)  # (LM11)


def dropout_backward(dh_drop: jax.Array, mask: jax.Array, rate: float) -> jax.Array:
    """dh = dh̃ ⊙ m / (1 − q) (LM14): a dropped unit passes no gradient back, a kept one its
    gradient times the same 1/(1 − q) that scaled it forward."""
    return dh_drop * mask / (1.0 - rate)  # (LM14)


def forward(params: LMParams, ids: jax.Array, mask: jax.Array, rate: float) -> tuple[jax.Array, DropoutCache]:
    """Training logits <float>[N, V] for trigrams ``ids`` <int>[N, 3] with the hidden units
    ``mask`` <float>[N, P] keeps, and the cache for :func:`backward_with_intermediates`."""
    e3, c_emb = layers.embedding_forward(ids, params.emb)  # [N, 3, D]; (LM1)
    a, c_hid = layers.linear_forward(e3.reshape(ids.shape[0], -1), params.w_hid, params.b_hid)  # (LM2)
    h = 0.5 * jnp.tanh(0.5 * a) + 0.5  # σ(a) by (P6), as language_model_fast; σ' = h(1 − h) needs h
    h_drop = dropout_forward(h, mask, rate)  # (LM11)
    z, c_out = layers.linear_forward(h_drop, params.w_out, params.b_out)  # (LM12)
    return z, DropoutCache(c_emb, c_hid, h, mask, c_out)


def backward_with_intermediates(cache: DropoutCache, dz: jax.Array, rate: float):
    """Gradients of the loss given dL/dz <float>[N, V], and the named intermediate gradients
    {"dh" <[N, P]> (LM14), "δ_h" <[N, P]> (LM7), "de" <[N, 3D]> (LM8)}."""
    dh_drop, dw_out, db_out = layers.linear_backward(dz, cache.out)  # (LM13)
    dh = dropout_backward(dh_drop, cache.mask, rate)  # (LM14)
    da = layers.sigmoid_backward(dh, cache.sig)  # (LM7)
    de, dw_hid, db_hid = layers.linear_backward(da, cache.hid)  # (LM8)
    n = de.shape[0]
    demb = layers.embedding_backward(de.reshape(n, 3, -1), cache.emb)  # (LM9), (LM10)
    return LMParams(demb, dw_hid, db_hid, dw_out, db_out), {"dh": dh, "δ_h": da, "de": de}


def loss_grad_and_intermediates(params: LMParams, batch, rate: float = DEFAULT_RATE):
    """(mean cross-entropy with dropout, LMParams of gradients, {"dz", "dh", "δ_h", "de"}) of
    the manual backward; ``batch`` = (ids, y, seeds), ``rate`` = q."""
    ids, y, seeds = batch
    mask = keep_mask(seeds, params.w_hid.shape[1], rate, params.w_hid.dtype)
    z, cache = forward(params, ids, mask, rate)
    value, ce_cache = layers.softmax_cross_entropy_forward(z, y)  # (LM4)
    dz = layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)  # (LM5)
    grads, named = backward_with_intermediates(cache, dz, rate)
    return value, grads, {"dz": dz, **named}


def loss_and_grad(params: LMParams, batch, rate: float = DEFAULT_RATE) -> tuple[jax.Array, LMParams]:
    """Manual forward and backward with dropout ``rate``: (mean cross-entropy, LMParams of gradients)."""
    return loss_grad_and_intermediates(params, batch, rate)[:2]


def loss(params: LMParams, batch, rate: float = DEFAULT_RATE) -> jax.Array:
    """Reference training loss for ``jax.grad`` (jnp / jax.nn only, no layer caches): the mean
    cross-entropy of the network whose hidden units :func:`keep_mask` drops for ``batch`` =
    (ids <int>[N, 3], y <int>[N], seeds <int>[N])."""
    ids, y, seeds = batch
    e = jnp.concatenate([params.emb[ids[:, j]] for j in range(3)], axis=1)
    h = jax.nn.sigmoid(e @ params.w_hid + params.b_hid)
    m = keep_mask(seeds, h.shape[1], rate, h.dtype)
    return layers.cross_entropy((h * m / (1.0 - rate)) @ params.w_out + params.b_out, y)


def with_seeds(ids: jax.Array, y: jax.Array) -> tuple:
    """A training set for :func:`loss_and_grad`: (ids, y, zero seeds <uint32>[N]) (the engine's
    :class:`FreshSeeds` replaces the seeds before every epoch)."""
    return ids, y, jnp.zeros(jnp.shape(y), jnp.uint32)


@dataclasses.dataclass(frozen=True)
class FreshSeeds:
    """``FitConfig.augment`` for dropout: ``(key, (ids, y, seeds)) -> (ids, y, new seeds)``, a
    random <uint32>[N] drawn from the epoch's key, so each epoch drops other units (and a run
    resumed from a checkpoint draws the masks an uninterrupted one would)."""

    def __call__(self, key: jax.Array, data):
        ids, y, seeds = data
        return ids, y, jax.random.bits(key, jnp.shape(seeds), jnp.uint32)
