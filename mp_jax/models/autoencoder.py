"""Sparse autoencoder with sigmoid hidden and output layers (Q1 (b)).

Equation labels refer to docs/autoencoder.md: the forward is (AE5)-(AE7), the cost
(AE8)-(AE9), the backward (AE10)-(AE17), each derived there step by step; the sparsity
term is computed in the log domain from the hidden pre-activations, (AE18)-(AE22), so that
its value and its gradient stay finite where σ(a) underflows to 0 in float32.

x <float>[N, L_in] → h = σ(x W1 + b1) <float>[N, L_hid] → o = σ(h W2 + b2) <float>[N, L_in];
ρ̂ = mean over the batch of h <float>[L_hid].

J = 1/(2N) Σ_n ‖x_n − o_n‖² + λ/2 (‖W1‖² + ‖W2‖²) + β Σ_b KL(ρ ‖ ρ̂_b),
KL(ρ‖ρ̂) = ρ log(ρ/ρ̂) + (1−ρ) log((1−ρ)/(1−ρ̂)).

Tied weights (the default, the report's choice): W2 = W1ᵀ, one matrix, so the penalty
is λ‖W‖² and dJ/dW = dW1 + dW2ᵀ. Untied: W2 is its own matrix (the assignment's
literal We = [W1 W2 b1 b2]). :class:`AEParams` holds both cases: ``w_dec is None``
means tied.

A batch is the preprocessed patches <float>[N, 256] (see :mod:`mp_jax.preprocess`).
The hyperparameters are an :class:`AEHyper` argument with a default, so a sweep can
``jax.vmap`` over them.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from mp_jax import layers

Array = jax.Array


class AEParams(NamedTuple):
    w_enc: Array  # [L_in, L_hid]  W1 (also the decoder, transposed, when tied)
    b_hid: Array  # [L_hid]        b1
    b_out: Array  # [L_in]         b2
    w_dec: Optional[Array] = None  # [L_hid, L_in] W2 when untied; None when tied

    @property
    def tied(self) -> bool:
        return self.w_dec is None

    def decoder(self) -> Array:
        """W2 <float>[L_hid, L_in]."""
        return self.w_enc.T if self.w_dec is None else self.w_dec


class AEHyper(NamedTuple):
    lam: float = 5e-4  # λ, weight decay
    beta: float = 2.2  # β, weight of the sparsity penalty
    rho: float = 0.026  # ρ, target mean activation of a hidden unit


DEFAULT_HYPER = AEHyper()


class AECache(NamedTuple):
    enc: layers.LinearCache
    h: Array  # [N, L_hid]
    dec: layers.LinearCache
    o: Array  # [N, L_in]
    h_c: Array  # [N, L_hid] 1 − h, computed as σ(−a): exact where h saturates near 1
    a: Array  # [N, L_hid] the hidden pre-activation: the sparsity term is computed from it (AE18)


def init_params(key: Array, n_hidden: int, n_in: int = 256, *, tied: bool = True, dtype=jnp.float32) -> AEParams:
    """Every weight and bias uniform on [−w0, w0], w0 = sqrt(6 / (L_in + L_hid))."""
    w0 = (6.0 / (n_in + n_hidden)) ** 0.5
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def u(k, shape):
        return jax.random.uniform(k, shape, dtype, -w0, w0)

    return AEParams(u(k1, (n_in, n_hidden)), u(k2, (n_hidden,)), u(k3, (n_in,)),
                    None if tied else u(k4, (n_hidden, n_in)))


# ----------------------------------------------------------------------------- manual
def forward(params: AEParams, x: Array) -> tuple[Array, AECache]:
    """Reconstruction o <float>[N, L_in] of x <float>[N, L_in] and the cache."""
    a, enc = layers.linear_forward(x, params.w_enc, params.b_hid)  # (AE5)
    h, _ = layers.sigmoid_forward(a)  # (AE5)
    z, dec = layers.linear_forward(h, params.decoder(), params.b_out)  # (AE6)
    o, _ = layers.sigmoid_forward(z)  # (AE6)
    return o, AECache(enc, h, dec, o, jax.nn.sigmoid(-a), a)  # h_c = 1 − h (AE17)


def _log_sigmoids(a: Array) -> tuple[Array, Array]:
    """(log σ(a), log σ(−a)) <float>[N, L_hid] each, finite for every finite a (AE18): softplus's
    stable form, log σ(±a) = −(max(∓a, 0) + log(1 + e^(−|a|))), one exp and one log1p for both."""
    t = jnp.log1p(jnp.exp(-jnp.abs(a)))
    return -(jnp.maximum(-a, 0.0) + t), -(jnp.maximum(a, 0.0) + t)


def _batch_softmax(log_x: Array) -> tuple[Array, Array]:
    """(log of the batch mean of e^(log_x) <float>[L_hid], the softmax of log_x over the batch
    <float>[N, L_hid]) from one exp per entry: log-sum-exp shifted by each column's maximum
    (AE18, AE20)."""
    top = jax.lax.stop_gradient(jnp.max(log_x, axis=0))
    u = jnp.exp(log_x - top)
    total = jnp.sum(u, axis=0)
    return top + jnp.log(total) - jnp.log(log_x.shape[0]), u / total


def log_mean_activation(a: Array) -> tuple[Array, Array]:
    """(log ρ̂, log(1 − ρ̂)) <float>[L_hid] each, from the pre-activations a <float>[N, L_hid]
    (AE18): log-sum-exp over the batch of log σ(±a), finite for every finite a, where
    ρ̂ = mean σ(a) itself underflows to 0 in float32 once every a is below about −87.3."""
    log_h, log_h_c = _log_sigmoids(a)
    return _batch_softmax(log_h)[0], _batch_softmax(log_h_c)[0]


def _kl(rho, a):
    """KL(ρ‖ρ̂_b) <float>[L_hid] from the logs of ρ̂ and 1 − ρ̂ (AE19), never from ρ̂ itself."""
    log_rho_hat, log_rho_hat_c = log_mean_activation(a)
    return rho * (jnp.log(rho) - log_rho_hat) + (1.0 - rho) * (jnp.log1p(-rho) - log_rho_hat_c)


def _terms(params: AEParams, x: Array, o: Array, hp: AEHyper, a: Array) -> dict:
    n = x.shape[0]
    sq = jnp.sum(params.w_enc ** 2)
    sq = 2.0 * sq if params.tied else sq + jnp.sum(params.w_dec ** 2)
    return {
        "reconstruction": jnp.sum((x - o) ** 2) / (2.0 * n),
        "weight_decay": 0.5 * hp.lam * sq,
        "sparsity": hp.beta * jnp.sum(_kl(hp.rho, a)),  # (AE8), (AE19)
    }


def output_delta(o: Array, x: Array) -> Array:
    """δ_o = (o − x)/N ⊙ o(1 − o) <float>[N, L_in] (AE10): the reconstruction term's
    gradient at the output's pre-activation z."""
    return layers.sigmoid_backward((o - x) / x.shape[0], o)


def sparsity_delta(a: Array, hp: AEHyper) -> Array:
    """δ_KL = ∂(β Σ_b KL(ρ‖ρ̂_b))/∂a <float>[N, L_hid], the sparsity term's share of δ_h, from
    the hidden pre-activations a <float>[N, L_hid] (AE21):

        δ_KL = N β (ρ̂ − ρ) ⊙ π ⊙ π̄,  π = softmax over the batch of log σ(a),
                                      π̄ = softmax over the batch of log σ(−a)   (AE20)

    the textbook (s/N) ⊙ h(1 − h) of (AE12)-(AE13) rewritten so that no factor is infinite:
    where every σ(a) of a unit underflows, s is −∞ and h(1 − h) is 0 in float32, while π
    and π̄ are weights that sum to 1 over the batch."""
    # the same expressions as the cost's (AE18), so that XLA computes them once for both
    log_h, log_h_c = _log_sigmoids(a)  # log σ(±a) (AE18)
    log_rho_hat, pi = _batch_softmax(log_h)  # (AE18), (AE20)
    _, pi_c = _batch_softmax(log_h_c)  # (AE20)
    return a.shape[0] * hp.beta * (jnp.exp(log_rho_hat) - hp.rho) * pi * pi_c  # (AE21); ρ̂ may be 0, never NaN


def tied_weight_grad(dw_enc: Array, dw_dec: Array, w: Array, lam) -> Array:
    """dJ/dW of the tied matrix (AE16): W appears as W1 and as W2ᵀ, so both paths and
    both decay terms: dW1 + dW2ᵀ + 2λW <float>[L_in, L_hid]."""
    return dw_enc + dw_dec.T + 2.0 * lam * w


def backward_with_intermediates(params: AEParams, cache: AECache, hp: AEHyper = DEFAULT_HYPER):
    """dJ/dparams from the forward cache, and the named intermediate gradients
    {"δ_o" <[N, L_in]>, "δ_KL" <[N, L_hid]>, "δ_h" <[N, L_hid]>} in the order computed.

    δ_o = (o − x) ⊙ o(1 − o) / N (AE10); δ_h = δ_o W2ᵀ ⊙ h ⊙ σ(−a) + δ_KL (AE22) with the
    sparsity term's share δ_KL = N β (ρ̂ − ρ) π ⊙ π̄ (AE21), equal to (s/N) ⊙ h(1 − h) of
    (AE12)-(AE13); dW1 = xᵀ δ_h + λ W1, dW2 = hᵀ δ_o + λ W2 (AE15); tied: dW = dW1 + dW2ᵀ (AE16).
    """
    x, h, o = cache.enc.x, cache.h, cache.o
    dz = output_delta(o, x)  # δ_o (AE10)
    dh, dw_dec, db_out = layers.linear_backward(dz, cache.dec)  # (AE11)
    # the sparsity share from a, not as (s/N) h(1 − h): where a unit's σ(a) underflows on the whole
    # batch (a below about −87.3 in float32) ρ̂ is 0, s is −∞ and h(1 − h) is 0, and their product NaN;
    # near ρ̂ = 1 the same happens with 1 − ρ̂ (AE21). σ'(a) = h(1 − h) as h ⊙ σ(−a), no subtraction (AE17)
    d_kl = sparsity_delta(cache.a, hp)  # δ_KL (AE21)
    da = dh * h * cache.h_c + d_kl  # δ_h (AE22)
    _, dw_enc, db_hid = layers.linear_backward(da, cache.enc)  # (AE14)
    named = {"δ_o": dz, "δ_KL": d_kl, "δ_h": da}
    if params.tied:  # W appears as W1 and as W2ᵀ: both paths and both decay terms (2λW): (AE16)
        return AEParams(tied_weight_grad(dw_enc, dw_dec, params.w_enc, hp.lam), db_hid, db_out, None), named
    return AEParams(dw_enc + hp.lam * params.w_enc, db_hid, db_out, dw_dec + hp.lam * params.w_dec), named  # (AE15)


def backward(params: AEParams, cache: AECache, hp: AEHyper = DEFAULT_HYPER) -> AEParams:
    """dJ/dparams from the forward cache (:func:`backward_with_intermediates`)."""
    return backward_with_intermediates(params, cache, hp)[0]


def loss_grad_and_intermediates(params: AEParams, batch: Array, hp: AEHyper = DEFAULT_HYPER):
    """(J, gradients, named intermediate gradients) of the manual backward."""
    o, cache = forward(params, batch)
    value = sum(_terms(params, cache.enc.x, o, hp, cache.a).values())  # x in the weights' dtype
    grads, named = backward_with_intermediates(params, cache, hp)
    return value, grads, named


def loss_and_grad(params: AEParams, batch: Array, hp: AEHyper = DEFAULT_HYPER) -> tuple[Array, AEParams]:
    """Manual forward and backward: (J, :class:`AEParams` of gradients)."""
    return loss_grad_and_intermediates(params, batch, hp)[:2]


# ----------------------------------------------------------------------------- reference
def loss(params: AEParams, batch: Array, hp: AEHyper = DEFAULT_HYPER) -> Array:
    """Reference J for ``jax.grad``, written directly with jax.nn / jnp."""
    w1 = params.w_enc
    w2 = w1.T if params.w_dec is None else params.w_dec
    a = batch @ w1 + params.b_hid
    h = jax.nn.sigmoid(a)
    o = jax.nn.sigmoid(h @ w2 + params.b_out)
    recon = 0.5 * jnp.mean(jnp.sum(jnp.square(batch - o), axis=-1))
    decay = 0.5 * hp.lam * (jnp.sum(jnp.square(w1)) + jnp.sum(jnp.square(w2)))
    # log ρ̂ and log(1 − ρ̂) as log-sum-exp of log σ(±a) over the batch (AE18), not log(mean(h)):
    # in float32 mean(h) is 0 once every a of a unit is below about −87.3, and 1 − mean(h) is 0
    # once every a is above about 17; autodiff of logsumexp and log_sigmoid gives softmax and
    # σ(∓a), both finite there
    n = batch.shape[0]
    log_rho_hat = jax.nn.logsumexp(jax.nn.log_sigmoid(a), axis=0) - jnp.log(n)
    log_rho_hat_c = jax.nn.logsumexp(jax.nn.log_sigmoid(-a), axis=0) - jnp.log(n)
    kl = hp.rho * (jnp.log(hp.rho) - log_rho_hat) + (1 - hp.rho) * (jnp.log1p(-hp.rho) - log_rho_hat_c)  # (AE19)
    return recon + decay + hp.beta * jnp.sum(kl)


# ----------------------------------------------------------------------------- helpers
def encode(params: AEParams, x: Array) -> Array:
    """Hidden activations h <float>[N, L_hid]."""
    return jax.nn.sigmoid(x @ params.w_enc + params.b_hid)


def reconstruct(params: AEParams, x: Array) -> Array:
    """o <float>[N, L_in]."""
    return forward(params, x)[0]


def mean_hidden_activation(params: AEParams, x: Array) -> Array:
    """ρ̂ <float>[L_hid]: each hidden unit's mean activation over x."""
    return jnp.mean(encode(params, x), axis=0)


def cost_terms(params: AEParams, batch: Array, hp: AEHyper = DEFAULT_HYPER) -> dict:
    """The three terms of J on ``batch``: reconstruction, weight_decay, sparsity."""
    o, cache = forward(params, batch)
    return _terms(params, cache.enc.x, o, hp, cache.a)


def metrics(params: AEParams, batch: Array, hp: AEHyper = DEFAULT_HYPER) -> dict:
    """Batch means for the engine: loss (J on the batch), its terms, and per-pixel MSE."""
    o, cache = forward(params, batch)
    terms = _terms(params, cache.enc.x, o, hp, cache.a)
    return {"loss": sum(terms.values()), **terms, "mse": jnp.mean(jnp.square(cache.enc.x - o))}
