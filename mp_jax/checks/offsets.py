"""The autodiff side of the intermediate-gradient check: each model's loss with a zero offset ε
added to every intermediate its manual backward names.

At ε = 0 the loss is unchanged, and ∂L/∂ε is exactly the gradient of the loss with respect to
that intermediate: ε added to the pre-activation a gives ∂L/∂a = δ, ε added to h_t as it is
produced gives ∂L/∂h_t (through every later use of h_t). So ``jax.grad`` of these functions in ε
is an oracle for every named tensor of a manual backward, not only for the parameter
gradients. The forwards are written here with ``jnp`` and ``jax.nn`` only, from the equations of
``docs/`` (AE5-AE9, LM1-LM4, LM11-LM12, RNN1-2, LSTM1-4, GRU1-5, HEAD1-3, P15-P17), sharing no code with the
manual paths they check.

Each function takes ``(params, batch, eps)``, ``eps`` a dict of arrays named as the manual
path's intermediates (docs/ symbols); :func:`zeros` builds it for a model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mp_jax import layers
from mp_jax.models import language_model_dropout as lm_dropout
from mp_jax.models.autoencoder import DEFAULT_HYPER
from mp_jax.models.logistic import LogisticHP

Array = jax.Array
sig = jax.nn.sigmoid


_cross_entropy = layers.cross_entropy  # a forward, differentiated here by jax.grad


def autoencoder(params, x, eps, hp=DEFAULT_HYPER) -> Array:
    """J (AE8) with ε["δ_h"] on a, ε["δ_o"] on z and ε["δ_KL"] on the a that the sparsity term
    sees (not the reconstruction), so ∂J/∂ε["δ_KL"] is that term's share of δ_h. The KL is
    written in the log domain (AE18)-(AE19), as the reference loss is."""
    w1 = params.w_enc
    w2 = w1.T if params.w_dec is None else params.w_dec
    a = x @ w1 + params.b_hid + eps["δ_h"]
    h = sig(a)
    o = sig(h @ w2 + params.b_out + eps["δ_o"])
    recon = jnp.sum(jnp.square(x - o)) / (2.0 * x.shape[0])
    decay = 0.5 * hp.lam * (jnp.sum(jnp.square(w1)) + jnp.sum(jnp.square(w2)))
    a_kl = a + eps["δ_KL"]
    log_n = jnp.log(x.shape[0])
    log_rho_hat = jax.scipy.special.logsumexp(-jax.nn.softplus(-a_kl), axis=0) - log_n  # log σ(a) = −softplus(−a)
    log_rho_hat_c = jax.scipy.special.logsumexp(-jax.nn.softplus(a_kl), axis=0) - log_n
    kl = hp.rho * (jnp.log(hp.rho) - log_rho_hat) + (1.0 - hp.rho) * (jnp.log(1.0 - hp.rho) - log_rho_hat_c)
    return recon + decay + hp.beta * jnp.sum(kl)


def language_model(params, batch, eps) -> Array:
    """L (LM4) with ε["de"] on e, ε["δ_h"] on a and ε["dz"] on z."""
    ids, y = batch
    e = jnp.concatenate([params.emb[ids[:, j]] for j in range(3)], axis=1) + eps["de"]
    h = sig(e @ params.w_hid + params.b_hid + eps["δ_h"])
    return _cross_entropy(h @ params.w_out + params.b_out + eps["dz"], y)


def language_model_dropout(params, batch, eps, rate: float = lm_dropout.DEFAULT_RATE) -> Array:
    """The training loss with dropout (LM11-LM12) with ε["de"] on e, ε["δ_h"] on a, ε["dh"] on h
    (before the mask) and ε["dz"] on z. The mask m is the batch's (``keep_mask`` of its seeds,
    data rather than computation); the scaling 1/(1 − q) is written here afresh."""
    ids, y, seeds = batch
    e = jnp.concatenate([params.emb[ids[:, j]] for j in range(3)], axis=1) + eps["de"]
    h = sig(e @ params.w_hid + params.b_hid + eps["δ_h"]) + eps["dh"]
    m = lm_dropout.keep_mask(seeds, h.shape[1], rate, h.dtype)
    return _cross_entropy((h * m / (1.0 - rate)) @ params.w_out + params.b_out + eps["dz"], y)


def mlp(params, batch, eps) -> Array:
    """L with ε["δ_a"] on the hidden pre-activation and ε["dz"] on the logits."""
    x, y = batch
    h = jnp.tanh(x @ params.w_in + params.b_in + eps["δ_a"])
    return _cross_entropy(h @ params.w_out + params.b_out + eps["dz"], y)


def logistic(params, batch, eps, hp=LogisticHP()) -> Array:
    """L + λ/2 ‖W‖² with ε["dz"] on the logits."""
    f, y = batch
    return _cross_entropy(f @ params.w + params.b + eps["dz"], y) + 0.5 * hp.l2 * jnp.sum(params.w ** 2)


def recurrent(params, batch, eps) -> Array:
    """The sequence classifier's L (HEAD3) with offsets on every named intermediate.

    Per step t (ε[name] <[T, N, H]>): "dh_t" on h_t, "dc_t" on c_t (LSTM), and on the
    pre-activations: "δ_t" (RNN), "δ_i", "δ_f", "δ_g", "δ_o" (LSTM), "δ_z", "δ_r", "δ_n"
    (GRU). In the head: "da" on the ReLU layer's pre-activation, "dz" on the logits.
    """
    x, y = batch
    per_step = {k: v for k, v in eps.items() if k not in ("da", "dz")}
    h_last, _ = encode(params.cell, x, per_step)
    u = jax.nn.relu(h_last @ params.w_mlp + params.b_mlp + eps["da"])
    return _cross_entropy(u @ params.w_out + params.b_out + eps["dz"], y)


def encode(cell, x, eps, state0=None):
    """(h_T, c_T) <[N, H]> each of the recurrence over x <[N, T, D]> from ``state0`` = (h_0, c_0)
    (zeros when None; c is carried but unused for the RNN and the GRU), with the per-step offsets
    ``eps`` of :func:`recurrent` (each <[T, N, H]>). With T = 1 and a random ``state0`` it is one
    step of the cell: the oracle of a step backward alone."""
    hdim = cell.w_h.shape[0]
    blocks = cell.w_h.shape[1] // hdim  # 1 RNN, 4 LSTM, 3 GRU
    wx, wh, bs = (jnp.split(w, blocks, axis=-1) for w in (cell.w_x, cell.w_h, cell.b))

    def pre(k, x_t, h):
        return x_t @ wx[k] + h @ wh[k] + bs[k]

    def step(state, inputs):
        h, c = state
        x_t, e = inputs
        if blocks == 1:
            h = jnp.tanh(pre(0, x_t, h) + e["δ_t"])
        elif blocks == 4:
            i, f = sig(pre(0, x_t, h) + e["δ_i"]), sig(pre(1, x_t, h) + e["δ_f"])
            g, o = jnp.tanh(pre(2, x_t, h) + e["δ_g"]), sig(pre(3, x_t, h) + e["δ_o"])
            c = f * c + i * g + e["dc_t"]
            h = o * jnp.tanh(c)
        else:
            z, r = sig(pre(0, x_t, h) + e["δ_z"]), sig(pre(1, x_t, h) + e["δ_r"])
            n = jnp.tanh(x_t @ wx[2] + (r * h) @ wh[2] + bs[2] + e["δ_n"])
            h = z * h + (1.0 - z) * n
        return (h + e["dh_t"], c), None

    if state0 is None:
        h0 = jnp.zeros((x.shape[0], hdim), cell.w_h.dtype)
        state0 = (h0, h0)
    (h_last, c_last), _ = jax.lax.scan(step, state0, (jnp.swapaxes(x, 0, 1).astype(cell.w_h.dtype), eps))
    return h_last, c_last


def zeros(names_and_shapes: dict, dtype) -> dict:
    """ε = 0 for every named intermediate: {name: shape} → {name: zeros(shape, dtype)}."""
    return {name: jnp.zeros(shape, dtype) for name, shape in names_and_shapes.items()}
