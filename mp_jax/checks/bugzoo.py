"""A zoo of wrong backward passes: the mistakes the gradient checks must catch.

A check that has never failed on a known mistake is unproven. Each :class:`Bug` below is a
mistake that is made, and published, again and again in hand-written backward passes: a
function that replaces ONE piece of a correct backward (a module attribute: a step backward,
a layer's backward, the sparsity term) with a copy that differs in the one place the
comment ``# BUG`` marks. :func:`applied` swaps it in for the duration of a ``with`` block; the
models read their pieces as module attributes when they run, so the swapped piece is the one
traced.

``tests/test_bugzoo.py`` asserts that the gradient table's check
(:func:`mp_jax.checks.gradtable.check_gradients`, default tolerances) fails for every bug and that
the first wrong tensor it names is :attr:`Bug.first_wrong`. ``python -m mp_jax.gradcheck MODEL
--bug NAME`` shows what such a failure looks like; ``--bug list`` names them all.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from mp_jax import layers
from mp_jax.models import autoencoder, language_model_dropout, language_model_fast, logistic, recurrent, recurrent_fast
from mp_jax.models.language_model import LMCache
from mp_jax.models.logistic import LogisticParams
from mp_jax.models.recurrent import GRUParams, LSTMParams, RNNParams
from mp_jax.checks.registry import Size

#: The instance a bug is shown on unless it needs another: N = 7 is none of the registry's other
#: sizes (D, H, M, C, V, T), so a count taken for another cannot pass by coincidence.
SHOWN = Size(batch=7, hidden=8, T=5)


@dataclasses.dataclass(frozen=True)
class Bug:
    name: str
    model: str  # the registry model it is shown on
    impl: str  # the implementation whose piece it replaces
    module: object  # the module holding the piece
    attribute: str  # the piece: a function of that module
    replacement: Callable
    summary: str  # what is wrong, in one line
    why: str  # how the mistake arises and what it costs
    first_wrong: str  # the first tensor the intermediate check names (a docs/ symbol or a leaf; dR: any row)
    size: Size = SHOWN  # the instance it is shown on
    family: str = ""  # the kind of mistake the diagnosis names for it (mp_jax.checks.diagnosis.FAMILIES), if any

    @property
    def piece(self) -> str:
        return f"{self.module.__name__}.{self.attribute}"


@contextlib.contextmanager
def swapped(module, attribute: str, replacement: Callable):
    """Run the body with ``module.attribute`` replaced by ``replacement`` (restored on exit):
    how a bug or a learner's exercise takes the place of one piece of a backward."""
    original = getattr(module, attribute)
    setattr(module, attribute, replacement)
    try:
        yield replacement
    finally:
        setattr(module, attribute, original)


@contextlib.contextmanager
def applied(bug: Bug):
    """Run the body with ``bug``'s piece in place of the correct one (restored on exit)."""
    with swapped(bug.module, bug.attribute, bug.replacement):
        yield bug


# ============================================================================= reference recurrences
def _lstm_step_no_forget_carry(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    dc_prev = dc  # BUG: the cell-state path passes through c_t = f ⊙ c_{t−1} + …: dc ⊙ f
    return (da @ p.w_h.T, dc_prev), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_tanh_prime_of_c(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - c * c)  # BUG: tanh'(c) = 1 − tanh²(c), written as 1 − c²
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return (da @ p.w_h.T, dc * f), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_h_t_in_dwh(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    h = o * tanh_c
    grads = LSTMParams(w_x=x.T @ da, w_h=h.T @ da, b=da.sum(0))  # BUG: h_t where h_{t−1} belongs
    return (da @ p.w_h.T, dc * f), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_carry_before_lstm6(p: LSTMParams, dstate, cache):
    dh, dc_in = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc_in + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return (da @ p.w_h.T, dc_in * f), grads, {  # BUG: (LSTM12) carries the TOTAL dc_t, after (LSTM6)
        "δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_cell_carry_dropped(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    dc_prev = jnp.zeros_like(dc)  # BUG: c_{t−1} reaches the loss through c_t: dc_{t−1} = dc_t ⊙ f, not 0
    return (da @ p.w_h.T, dc_prev), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_output_gate_no_sigma_prime(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c  # BUG: that is dL/do; δ_o is at the pre-activation a_o: ⊙ σ'(a_o) = o(1 − o)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return (da @ p.w_h.T, dc * f), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _lstm_step_gate_order(p: LSTMParams, dstate, cache):
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i, d_f, d_g = dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g)
    da = jnp.concatenate([d_i, d_f, d_o, d_g], axis=-1)  # BUG: the fused blocks are i, f, g, o (LSTM1)
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return (da @ p.w_h.T, dc * f), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


def _rnn_step_h_t_in_dwh(p: RNNParams, dh, cache):
    x, h_prev, h = cache
    da = dh * (1.0 - h * h)
    grads = RNNParams(w_x=x.T @ da, w_h=h.T @ da, b=da.sum(0))  # BUG: h_t where h_{t−1} belongs
    return da @ p.w_h.T, grads, {"δ_t": da}


def _rnn_step_dh_prev_untransposed(p: RNNParams, dh, cache):
    x, h_prev, h = cache
    da = dh * (1.0 - h * h)
    grads = RNNParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return da @ p.w_h, grads, {"δ_t": da}  # BUG: (RNN5) is δ_t W_hᵀ; W_h is square, so W_h fits too


def _rnn_step_tanh_prime_float32(p: RNNParams, dh, cache):
    x, h_prev, h = cache
    h32 = h.astype(jnp.float32)
    da = dh * (1.0 - h32 * h32)  # BUG: 1 − h² rounded to float32 (7 digits) inside a float64 computation
    grads = RNNParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))
    return da @ p.w_h.T, grads, {"δ_t": da}


def _gru_step_un_without_reset(p: GRUParams, dh, cache):
    x, h_prev, z, r, n = cache
    hdim = h_prev.shape[-1]
    u_zr, u_n = p.w_h[:, :2 * hdim], p.w_h[:, 2 * hdim:]
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    d_rh = d_n @ u_n.T
    d_r = d_rh * h_prev * r * (1.0 - r)
    d_zr = jnp.concatenate([d_z, d_r], axis=-1)
    da = jnp.concatenate([d_zr, d_n], axis=-1)
    grads = GRUParams(w_x=x.T @ da, w_h=jnp.concatenate([h_prev.T @ d_zr, h_prev.T @ d_n], axis=-1),  # BUG: U_n
                      b=da.sum(0))  # multiplies r ⊙ h_{t−1} in (GRU3): dU_n = (r ⊙ h_{t−1})ᵀ δ_n
    return d_rh * r + d_zr @ u_zr.T + dh * z, grads, {"δ_n": d_n, "δ_z": d_z, "δ_r": d_r}


def _gru_step_no_direct_path(p: GRUParams, dh, cache):
    x, h_prev, z, r, n = cache
    hdim = h_prev.shape[-1]
    u_zr, u_n = p.w_h[:, :2 * hdim], p.w_h[:, 2 * hdim:]
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    d_rh = d_n @ u_n.T
    d_r = d_rh * h_prev * r * (1.0 - r)
    d_zr = jnp.concatenate([d_z, d_r], axis=-1)
    da = jnp.concatenate([d_zr, d_n], axis=-1)
    grads = GRUParams(w_x=x.T @ da, w_h=jnp.concatenate([h_prev.T @ d_zr, (r * h_prev).T @ d_n], axis=-1),
                      b=da.sum(0))
    dh_prev = d_rh * r + d_zr @ u_zr.T  # BUG: h_t = z ⊙ h_{t−1} + …: the direct term dh ⊙ z is missing
    return dh_prev, grads, {"δ_n": d_n, "δ_z": d_z, "δ_r": d_r}


def _encode_backward_weights_set(cell, caches, dh_last):
    kind = recurrent.cell_name(cell)
    _, step_backward = recurrent.step_functions(kind)
    dstate = (dh_last, jnp.zeros_like(dh_last)) if kind == "lstm" else dh_last

    def step(carry, cache):
        dstate, total = carry
        dstate_prev, grads, deltas = step_backward(cell, dstate, cache)
        total = grads  # BUG: the weights are shared over time: their gradient is the SUM over steps
        return (dstate_prev, total), {"dh_t": dstate[0] if kind == "lstm" else dstate, **deltas}

    (_, grads), per_step = jax.lax.scan(step, (dstate, jax.tree.map(jnp.zeros_like, cell)), caches, reverse=True)
    return grads, per_step


def _encode_backward_dh_after_step(cell, caches, dh_last):
    kind = recurrent.cell_name(cell)
    _, step_backward = recurrent.step_functions(kind)
    dstate = (dh_last, jnp.zeros_like(dh_last)) if kind == "lstm" else dh_last

    def step(carry, cache):
        dstate, total = carry
        dstate_prev, grads, deltas = step_backward(cell, dstate, cache)
        total = jax.tree.map(jnp.add, total, grads)
        dh_t = dstate_prev[0] if kind == "lstm" else dstate_prev  # BUG: dh_t is what REACHES h_t (the step's
        return (dstate_prev, total), {"dh_t": dh_t, **deltas}  # input dstate), not what it passes back

    (_, grads), per_step = jax.lax.scan(step, (dstate, jax.tree.map(jnp.zeros_like, cell)), caches, reverse=True)
    return grads, per_step


def _encode_backward_lstm_dc_from_dh(cell, caches, dh_last):
    _, step_backward = recurrent.step_functions("lstm")
    dstate = (dh_last, dh_last)  # BUG: c_T reaches the loss only through h_T, inside step T: dc_T = 0 (BPTT1)

    def step(carry, cache):
        dstate, total = carry
        dstate_prev, grads, deltas = step_backward(cell, dstate, cache)
        total = jax.tree.map(jnp.add, total, grads)
        return (dstate_prev, total), {"dh_t": dstate[0], **deltas}

    (_, grads), per_step = jax.lax.scan(step, (dstate, jax.tree.map(jnp.zeros_like, cell)), caches, reverse=True)
    return grads, per_step


# ============================================================================= fast recurrences
def _fast_lstm_step_no_forget_carry(dh, dc, cache, w_hT):
    dc = dc + dh * cache.o_dtanh
    delta = jnp.concatenate([dc, dc, dc, dh], axis=-1) * cache.q
    return delta, delta @ w_hT, dc, dc  # BUG: dc_{t−1} = dc_t ⊙ f, the ⊙ f dropped


def _fast_lstm_step_output_gate_from_dc(dh, dc, cache, w_hT):
    dc = dc + dh * cache.o_dtanh
    delta = jnp.concatenate([dc, dc, dc, dc], axis=-1) * cache.q  # BUG: δ_o is fed by dh_t, not dc_t
    return delta, delta @ w_hT, dc * cache.f, dc


def _fast_rnn_step_no_tanh_prime(dh, h, w_hT):
    delta = dh  # BUG: the tanh's derivative (1 − h_t²) is missing
    return delta, delta @ w_hT


def _fast_gru_update_gate_sign(dh, cache, u_zrT, u_nT):
    hdim = dh.shape[-1]
    u, n, h = cache
    u_z, u_r = u[..., :hdim], u[..., hdim:]
    z, r = recurrent_fast._gru_gates(u)
    dn = dh * ((1.0 - z) * (1.0 - n * n))
    drh = dn @ u_nT
    dzr = jnp.concatenate([dh * (n - h) * (0.25 * (1.0 - u_z * u_z)),  # BUG: h_t = z h + (1 − z) n: (h − n)
                           drh * h * (0.25 * (1.0 - u_r * u_r))], axis=-1)
    return dzr, dn, dh * z + drh * r + dzr @ u_zrT


def _fast_gru_gate_derivative_double(dh, cache, u_zrT, u_nT):
    hdim = dh.shape[-1]
    u, n, h = cache
    u_z, u_r = u[..., :hdim], u[..., hdim:]
    z, r = recurrent_fast._gru_gates(u)
    dn = dh * ((1.0 - z) * (1.0 - n * n))
    drh = dn @ u_nT
    dzr = jnp.concatenate([dh * (h - n) * (0.5 * (1.0 - u_z * u_z)),  # BUG: σ(a) = ½ tanh(½a) + ½ gives
                           drh * h * (0.5 * (1.0 - u_r * u_r))], axis=-1)  # σ' = ¼(1 − u²): the inner ½ dropped
    return dzr, dn, dh * z + drh * r + dzr @ u_zrT


# ============================================================================= the language model
def _embedding_backward_set(dout, cache: layers.EmbeddingCache):
    ids, vocab_size = cache
    d = dout.shape[-1]
    demb = jnp.zeros((vocab_size, d), dout.dtype)
    return demb.at[ids.reshape(-1)].set(dout.reshape(-1, d))  # BUG: a repeated word keeps one block: add


def _lm_fast_forward_caches_preactivation(params, ids):
    e3, c_emb = layers.embedding_forward(ids, params.emb)
    a, c_hid = layers.linear_forward(e3.reshape(ids.shape[0], -1), params.w_hid, params.b_hid)
    h = 0.5 * jnp.tanh(0.5 * a) + 0.5
    z, c_out = layers.linear_forward(h, params.w_out, params.b_out)
    return z, LMCache(c_emb, c_hid, a, c_out)  # BUG: σ' = h(1 − h) needs h; a is cached


def _dropout_backward_unscaled(dh_drop, mask, rate):
    return dh_drop * mask  # BUG: the forward scaled the kept units by 1/(1 − q): so does the backward


def _lm_dropout_forward_caches_undropped(params, ids, mask, rate):
    e3, c_emb = layers.embedding_forward(ids, params.emb)
    a, c_hid = layers.linear_forward(e3.reshape(ids.shape[0], -1), params.w_hid, params.b_hid)
    h = 0.5 * jnp.tanh(0.5 * a) + 0.5
    z = language_model_dropout.dropout_forward(h, mask, rate) @ params.w_out + params.b_out
    c_out = layers.LinearCache(h, params.w_out)  # BUG: W2 multiplied h̃, so dW2 = h̃ᵀ dz: cache h̃
    return z, language_model_dropout.DropoutCache(c_emb, c_hid, h, mask, c_out)


# ============================================================================= layers, AE, logistic
def _softmax_ce_backward_no_mean(dloss, cache: layers.SoftmaxCECache):
    probs, labels = cache
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return dloss * (probs - onehot)  # BUG: the loss is a mean over N examples: / N


def _softmax_ce_backward_sign(dloss, cache: layers.SoftmaxCECache):
    probs, labels = cache
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return dloss * (onehot - probs) / probs.shape[0]  # BUG: ∂(−log p_y)/∂z = p − onehot(y): the minus lost


def _softmax_ce_backward_mean_over_classes(dloss, cache: layers.SoftmaxCECache):
    probs, labels = cache
    onehot = jax.nn.one_hot(labels, probs.shape[1], dtype=probs.dtype)
    return dloss * (probs - onehot) / probs.shape[1]  # BUG: the mean is over the N rows, not the C columns


def _linear_backward_dw_transposed(dy, cache: layers.LinearCache):
    x, w = cache
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    return dy @ w.T, (x2.T @ dy2).T, dy2.sum(axis=0)  # BUG: dW = xᵀ dy, transposed (fits square W)


def _relu_backward_mask_from_gradient(dy, y):
    return jnp.where(dy > 0, dy, jnp.zeros_like(dy))  # BUG: the mask is where the INPUT was > 0 (y > 0)


def _sparsity_delta_sign(a, hp):
    n = a.shape[0]
    log_h, log_h_c = jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)
    rho_hat = jnp.exp(jax.nn.logsumexp(log_h, axis=0) - jnp.log(n))
    pi, pi_c = jax.nn.softmax(log_h, axis=0), jax.nn.softmax(log_h_c, axis=0)
    return n * hp.beta * (hp.rho - rho_hat) * pi * pi_c  # BUG: the KL term's sign (ρ̂ − ρ)


def _tied_weight_grad_encoder_only(dw_enc, dw_dec, w, lam):
    return dw_enc + 2.0 * lam * w  # BUG: W is also the decoder (W2 = Wᵀ): + dW2ᵀ is missing


def _logistic_backward_no_decay(params: LogisticParams, cache, dz, hp=logistic.LogisticHP()):
    _, dw, db = layers.linear_backward(dz, cache)
    return LogisticParams(dw, db)  # BUG: λ/2 ‖W‖² is in the loss: + λ W


# ============================================================================= the zoo
BUGS: dict[str, Bug] = {b.name: b for b in (
    Bug("lstm-no-forget-carry", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_no_forget_carry,
        "dc_{t−1} = dc_t: the cell gradient carried back without ⊙ f",
        "c_t = f ⊙ c_{t−1} + i ⊙ g, so ∂c_t/∂c_{t−1} = f; dropping it treats the cell as a plain "
        "accumulator and overstates every earlier step's gradient", "dc_t"),
    Bug("lstm-tanh-prime-of-c", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_tanh_prime_of_c,
        "tanh' of the wrong tensor: 1 − c_t² instead of 1 − tanh²(c_t)",
        "tanh'(x) = 1 − tanh²(x) is written in terms of the OUTPUT; applied to the input c_t it "
        "is another function (negative for |c_t| > 1)", "dc_t"),
    Bug("lstm-h-t-in-dWh", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_h_t_in_dwh,
        "dW_h += h_tᵀ δ_t: the step's output where its input h_{t−1} belongs",
        "W_h multiplies h_{t−1} in step t; with the step's own output every δ is right and only "
        "dW_h is wrong, which per-step checks of dh_t cannot see", "cell.w_h"),
    Bug("lstm-carry-before-lstm6", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_carry_before_lstm6,
        "dc_{t−1} = dc_t ⊙ f taken from the incoming dc_t, before (LSTM6) added the path through h_t",
        "dc_t is the whole gradient at c_t only after (LSTM6); carrying the part that came from step t + 1 "
        "drops, at every step, the path from c_{t−1} through c_t and h_t", "dc_t"),
    Bug("lstm-cell-carry-dropped", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_cell_carry_dropped,
        "dc_{t−1} = 0: no gradient carried along the cell state",
        "c_{t−1} reaches the loss through c_t = f ⊙ c_{t−1} + i ⊙ g; without the carry the LSTM's long "
        "path, the reason it remembers, gets no gradient, and each step sees only its own h_t", "dc_t",
        family="zero"),
    Bug("lstm-output-gate-no-sigma-prime", "lstm", "reference", recurrent, "lstm_step_backward",
        _lstm_step_output_gate_no_sigma_prime,
        "δ_o = dh_t ⊙ tanh(c_t): the sigmoid's derivative o(1 − o) left out",
        "dh_t ⊙ tanh(c_t) is the gradient at the gate's output o; δ_o is at its pre-activation a_o, one "
        "sigmoid earlier, so it takes σ'(a_o) = o(1 − o) too (P9)", "δ_o", family="factor"),
    Bug("lstm-gate-order", "lstm", "reference", recurrent, "lstm_step_backward", _lstm_step_gate_order,
        "δ_t = [δ_i, δ_f, δ_o, δ_g]: the fused gradient's blocks in another order than the forward's",
        "the fused weights hold the gates in the order of (LSTM1), i, f, g, o; a δ_t concatenated in "
        "another order credits each gate's gradient to another gate's columns (the shapes all fit)", "dh_t",
        family="blocks"),
    Bug("rnn-h-t-in-dWh", "rnn", "reference", recurrent, "rnn_step_backward", _rnn_step_h_t_in_dwh,
        "dW_h += h_tᵀ δ_t: h_t where h_{t−1} belongs",
        "the off-by-one of BPTT: the hidden state saved after the step instead of before it", "cell.w_h"),
    Bug("rnn-dh-prev-w-not-transposed", "rnn", "reference", recurrent, "rnn_step_backward",
        _rnn_step_dh_prev_untransposed,
        "dh_{t−1} = δ_t W_h: the recurrent matrix not transposed",
        "the forward multiplies h_{t−1} W_h, so the gradient goes back through W_hᵀ (P2); W_h is square, "
        "so W_h fits the shapes and nothing crashes", "dh_t"),
    Bug("rnn-tanh-prime-float32", "rnn", "reference", recurrent, "rnn_step_backward", _rnn_step_tanh_prime_float32,
        "tanh' = 1 − h_t² computed in float32 inside a float64 backward",
        "the algebra is right; one float32 value (a cast, a float32 constant array, an np.float32) rounds the "
        "result to 7 digits, far above the float64 check's tolerance and far below any algebra mistake",
        "δ_t", family="precision"),
    Bug("gru-no-direct-path", "gru", "reference", recurrent, "gru_step_backward", _gru_step_no_direct_path,
        "dh_{t−1} without dh_t ⊙ z, the path through the update gate's copy of h_{t−1}",
        "h_{t−1} reaches h_t three ways (the z ⊙ h_{t−1} term, the candidate and the gates); "
        "the direct one, the GRU's reason to exist, is the one most often dropped", "dh_t"),
    Bug("gru-un-without-reset", "gru", "reference", recurrent, "gru_step_backward", _gru_step_un_without_reset,
        "dU_n = h_{t−1}ᵀ δ_n: the candidate's block of dW_h without the reset gate",
        "U_n multiplies r ⊙ h_{t−1} in (GRU3), not h_{t−1}; only the n block of dW_h is wrong, every δ "
        "and dh_{t−1} are right", "cell.w_h", family="blocks"),
    Bug("bptt-weights-set", "lstm", "reference", recurrent, "encode_backward", _encode_backward_weights_set,
        "the reverse scan keeps the last step's weight gradient instead of summing over steps",
        "one W serves every step (BPTT2): its gradient is Σ_t of the per-step terms; assigning "
        "keeps only t = 1's", "cell.w_x"),
    Bug("bptt-dh-after-step", "lstm", "reference", recurrent, "encode_backward", _encode_backward_dh_after_step,
        "the reverse scan records as dh_t the gradient the step passes back, dh_{t−1}",
        "dh_t names the gradient REACHING h_t, the step's input; recording its output shifts every step's "
        "dh_t by one (and dh_T, from the head, is never recorded)", "dh_t"),
    Bug("bptt-lstm-dc-from-dh", "lstm", "reference", recurrent, "encode_backward", _encode_backward_lstm_dc_from_dh,
        "the LSTM's reverse scan starts from (dh_T, dh_T) instead of (dh_T, 0)",
        "c_T reaches the loss only through h_T, a path step T's own backward adds by (LSTM6); no gradient "
        "comes from a step T + 1, so dc_T = 0 (BPTT1)", "dc_t"),
    Bug("lstm-fast-no-forget-carry", "lstm", "fast", recurrent_fast, "lstm_step_backward",
        _fast_lstm_step_no_forget_carry,
        "the fast step returns dc_t, not dc_t ⊙ f, as the carried cell gradient",
        "the same mistake in the fused step of the fast path", "dc_t"),
    Bug("lstm-fast-output-gate-from-dc", "lstm", "fast", recurrent_fast, "lstm_step_backward",
        _fast_lstm_step_output_gate_from_dc,
        "δ_o scaled by dc_t instead of dh_t in the fused product",
        "h_t = o ⊙ tanh(c_t): the output gate sees dh_t only; fusing the four gates into one "
        "product [dc, dc, dc, dh] ⊙ q invites a fourth dc", "δ_o"),
    Bug("rnn-fast-no-tanh-prime", "rnn", "fast", recurrent_fast, "rnn_step_backward", _fast_rnn_step_no_tanh_prime,
        "δ_t = dh_t: the derivative of the tanh forgotten",
        "backpropagating through the matmul but not through the nonlinearity after it", "δ_t"),
    Bug("gru-fast-update-sign", "gru", "fast", recurrent_fast, "_gru_backward", _fast_gru_update_gate_sign,
        "δ_z with (n − h_{t−1}) where this GRU has (h_{t−1} − n)",
        "two conventions are published, h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n (Cho et al. 2014 and PyTorch, "
        "used here) and h_t = (1 − z) ⊙ h_{t−1} + z ⊙ n (Chung et al. 2014); mixing them flips δ_z's sign", "δ_z",
        family="negated"),
    Bug("gru-fast-gate-derivative-double", "gru", "fast", recurrent_fast, "_gru_backward",
        _fast_gru_gate_derivative_double,
        "σ'(a) = ½(1 − u²) with u = tanh(½a): the inner ½ of the chain rule dropped",
        "the fast path writes σ(a) = ½ tanh(½a) + ½ (P6), whose derivative is ½ · ½ (1 − u²) = ¼(1 − u²); "
        "each gate's δ comes out twice as large", "δ_z", family="constant"),
    Bug("embedding-set-not-added", "lm", "fast", layers, "embedding_backward", _embedding_backward_set,
        "dR[ids] = de: the embedding gradient written instead of added",
        "a word used twice (in one context or in two examples) contributes twice; NumPy's "
        "dR[ids] += de with repeated ids does the same as this .set (np.add.at adds)", "dR",
        Size(special="repeat")),
    Bug("lm-fast-cache-preactivation", "lm", "fast", language_model_fast, "forward",
        _lm_fast_forward_caches_preactivation,
        "the fast forward caches the hidden pre-activation a where σ' = h(1 − h) needs h",
        "σ'(a) = σ(a)(1 − σ(a)) is written in terms of the output; caching the input of the "
        "nonlinearity gives a(1 − a)", "δ_h"),
    Bug("dropout-backward-unscaled", "lm-dropout", "reference", language_model_dropout, "dropout_backward",
        _dropout_backward_unscaled,
        "dh = dh̃ ⊙ m: the 1/(1 − q) of inverted dropout left out of the backward",
        "the forward scales every kept unit by 1/(1 − q) so that evaluation needs no rescaling; the "
        "backward must carry the same factor, or every gradient below the hidden layer is (1 − q) "
        "times too small", "dh"),
    Bug("dropout-dw2-from-undropped-h", "lm-dropout", "reference", language_model_dropout, "forward",
        _lm_dropout_forward_caches_undropped,
        "dW2 = hᵀ dz: the output layer's cache holds h where W2 multiplied h̃",
        "the output layer's input is the dropped, rescaled h̃; caching the sigmoid's output instead "
        "leaves every δ right and only dW2 wrong, with units the mask removed still learning", "w_out"),
    Bug("softmax-ce-no-mean", "mlp", "reference", layers, "softmax_cross_entropy_backward",
        _softmax_ce_backward_no_mean,
        "dz = p − onehot(y), the 1/N of the mean loss missing",
        "the loss is a mean over the batch; the gradient of a sum is N times too large "
        "(invisible at N = 1)", "dz", family="count"),
    Bug("softmax-ce-mean-over-classes", "mlp", "reference", layers, "softmax_cross_entropy_backward",
        _softmax_ce_backward_mean_over_classes,
        "dz = (p − onehot(y))/C: the mean's 1/N taken over the classes",
        "the loss averages over the N examples of the batch (P16); dividing by the number of classes "
        "passes wherever N = C, so only an instance with N ≠ C shows it", "dz", family="count"),
    Bug("softmax-ce-sign", "mlp", "reference", layers, "softmax_cross_entropy_backward", _softmax_ce_backward_sign,
        "dz = (onehot(y) − p)/N: the gradient's sign flipped",
        "L = −(1/N) Σ log p_y; the derivative of −log p_y in z is p − onehot(y), and losing the minus "
        "makes gradient descent climb the loss", "dz", family="negated"),
    Bug("linear-dw-transposed", "mlp", "reference", layers, "linear_backward", _linear_backward_dw_transposed,
        "dW = (xᵀ dy)ᵀ: the weight gradient transposed",
        "with square weights the shapes agree and nothing crashes; only the values are wrong",
        "w_in", Size(special="square"), family="transposed"),
    Bug("relu-mask-from-gradient", "gru", "reference", layers, "relu_backward", _relu_backward_mask_from_gradient,
        "the head's ReLU masks where the incoming gradient is positive, not where its input was",
        "ReLU'(a) = 1[a > 0] depends on the forward's input, not on the gradient arriving", "da"),
    Bug("ae-kl-sign", "ae", "reference", autoencoder, "sparsity_delta", _sparsity_delta_sign,
        "δ_KL = Nβ(ρ − ρ̂) π ⊙ π̄: the sparsity term's sign flipped",
        "d/dρ̂ of ρ log(ρ/ρ̂) is −ρ/ρ̂, so ∂KL/∂ρ̂ = (ρ̂ − ρ)/(ρ̂(1 − ρ̂)); a flipped sign pushes ρ̂ away "
        "from ρ", "δ_KL"),
    Bug("ae-tied-encoder-only", "ae", "reference", autoencoder, "tied_weight_grad", _tied_weight_grad_encoder_only,
        "tied weights: dW = dW1 + 2λW, the decoder's dW2ᵀ missing",
        "with W2 = Wᵀ the matrix is used twice and collects both gradients (AE16)", "w_enc"),
    Bug("logistic-no-decay", "logistic", "reference", logistic, "backward", _logistic_backward_no_decay,
        "dW = fᵀ dz, the weight decay's λW missing",
        "the penalty λ/2 ‖W‖² is part of the loss, so λW is part of its gradient", "w"),
)}


def get(name: str) -> Bug:
    try:
        return BUGS[name]
    except KeyError:
        raise KeyError(f"unknown bug {name!r}; the zoo has {', '.join(BUGS)}") from None
