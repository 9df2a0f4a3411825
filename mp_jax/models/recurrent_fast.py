"""The recurrent classifier's fast path: the same function as :mod:`mp_jax.models.recurrent`.

Same parameters (:class:`~mp_jax.models.recurrent.ClassifierParams`, re-exported here with
:func:`init_params` and the autodiff :func:`loss`), same forward and the same gradients: the
tests hold this module's :func:`loss_and_grad` equal to the reference's in float64 to 1e-12
relative, for every cell and T ∈ {1, 2, 7, 150}. Read the reference for the maths (its lines
cite ``docs/recurrent.md``); read this module for what a CPU makes of it. Training uses it
(:data:`loss_and_grad_reusing`). The rewritten forms it uses are (LSTM13), (GRU12) and (BPTT4)
of ``docs/recurrent.md``.

Each layout choice and what it buys, as measured on a 2-core CPU at Q3's size (N = 16 per
device, T = 150, D = 3, H = 128; numbers in BENCHMARKS.md):

* **Time-major inside** ([T, N, ·]), batch-major at the API: the scans slice axis 0.
* **Input projection inside the step** for D ≤ :data:`SMALL_INPUT`: x_t W_x + b as D
  broadcast multiply-adds fused into the gate activation (a K = 3 matmul over all T·N rows
  cost ~4 ms per batch and its [T, N, G·H] result ~2 ms more to write and read). Wider inputs
  get ONE matmul before the scan.
* **σ through tanh**: σ(a) = ½ tanh(½a) + ½, so the LSTM's four gates are one tanh pass over
  [N, 4H] (:func:`_lstm_cell`) and the GRU's two one pass over [N, 2H]; faster on a CPU than
  exp + divide, far faster than one activation per slice.
* **Local derivative factors**: the LSTM's forward computes, in its own elementwise pass,
  q = [g·σ'(i), c_{t−1}·σ'(f), i·tanh'(g), tanh(c_t)·σ'(o)], f and o(1 − tanh² c_t)
  (:func:`lstm_factors`), so a backward step is one fused multiply and one matmul; the GRU's
  backward step derives its five factors from the saved gates, candidate and h_{t−1} inside
  kernels it runs anyway (each way measured the faster for that cell).
* **Weight gradients after the scan**: the reverse scan emits δ_t and carries only (dh) or
  (dh, dc); then [dW_h; dW_x; db] = Σ_{t,n} [h_{t−1}, x_t, 1]ᵀ δ_t is ONE matmul with
  K = T·N (the GRU's candidate block, which multiplies r ⊙ h_{t−1}, a second one). The
  ones column gives db in the same pass.
* **Operands written in place**: the GRU's scans write the h-blocks of those [h, x, 1]
  operands with ``dynamic_update_slice`` (the forward h_{t−1}, the backward r ⊙ h_{t−1}),
  so no pass between the scans concatenates or transposes them; its reverse scan writes δ_t
  over the u_t and n_t it has just read, and the LSTM's writes δ_t over q_t (no fresh output
  buffers to zero-fill). A zero term that depends on the step's last readers orders those
  writes after the reads (else XLA copies both buffers every step).
* **Loop-invariant weights materialised once** (:func:`_transposed`, an
  ``optimization_barrier``): otherwise XLA folds W_hᵀ into every step's dot (~25 % slower).
* **Buffers reused across minibatches** (:data:`loss_and_grad_reusing`, a
  :class:`BufferReuse`): the epoch carries the GRU's four and the LSTM's four [T, N, ·] scan
  buffers from one minibatch to the next, so XLA no longer zero-fills them for every
  minibatch (~5 and ~9 MB per 16 sequences of 150 steps); split epoch 0.94 (GRU) and 0.90
  (LSTM) of the time without.

Everything stays in the parameters' dtype (float32 in training, float64 in the tests).
``unroll`` is ``lax.scan``'s: 1 measured fastest for every cell.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from mp_jax import layers
# The parameters, their initialisation and the autodiff reference are the reference module's:
# this module is another implementation of the same function (re-exported for callers).
from mp_jax.models.recurrent import (  # noqa: F401
    CELLS, N_BLOCKS, CellParams, ClassifierParams, GRUParams, LSTMParams, RNNParams, cell_name,
    init_params, loss)
from mp_jax.models import recurrent as _reference  # the head and its softmax cross-entropy, shared

Array = jax.Array


# ============================================================================= single steps
# Each backward step is one small fused elementwise pass and one matmul (two for the
# GRU) over the local derivative factors of that step: the LSTM's (LSTMStepCache) are
# computed by its forward (:func:`lstm_factors`), the GRU's inside its backward step from
# the gates, candidate and h_{t−1} that its forward kept (GRUStepCache).
# Step backwards take the gradient reaching the new state and return δ_t <float>[N, G·H]
# (gradient of the pre-activation, i.e. of xw_t = x_t W_x + b) and the gradient reaching
# the previous state.

def rnn_step_forward(xw_t: Array, h_prev: Array, w_h: Array) -> tuple[Array, Array]:
    """h_t = tanh(xw_t + h_{t−1} W_h) <float>[N, H]; the cache is h_t."""
    h = jnp.tanh(xw_t + h_prev @ w_h)
    return h, h


def rnn_step_backward(dh: Array, h: Array, w_hT: Array) -> tuple[Array, Array]:
    """δ = dh ⊙ (1 − h_t²); dh_{t−1} = δ W_hᵀ (``w_hT`` is W_hᵀ). Returns (δ, dh_prev)."""
    delta = dh * (1.0 - h * h)
    return delta, delta @ w_hT


class LSTMStepCache(NamedTuple):
    """What one LSTM step's backward needs (σ' = s(1 − s), tanh' = 1 − g²)."""

    q: Array  # [N, 4H]  [g·σ'(i), c_{t−1}·σ'(f), i·tanh'(g), tanh(c_t)·σ'(o)]
    f: Array  # [N, H]   forget gate (dc_{t−1} = dc_t ⊙ f)
    o_dtanh: Array  # [N, H]  o ⊙ (1 − tanh² c_t) (dc_t += dh ⊙ o_dtanh)


def _lstm_gate_scale(hdim: int, dtype) -> Array:
    """[½, ½, 1, ½] per block of H: σ(a) = ½ tanh(½ a) + ½ puts all four gates in one tanh."""
    half = jnp.full(hdim, 0.5, dtype)
    return jnp.concatenate([half, half, 2.0 * half, half])


def _lstm_cell(xw_t: Array, h_prev: Array, c_prev: Array, w_h: Array) -> tuple[Array, Array, Array]:
    """(h_t, c_t, u) with u = tanh(s ⊙ a) <float>[N, 4H] the activated gates (before the
    affine map to [i, f, g, o]), a = xw_t + h_{t−1} W_h."""
    s = _lstm_gate_scale(h_prev.shape[-1], xw_t.dtype)
    u = jnp.tanh((xw_t + h_prev @ w_h) * s)
    i, f, g, o = jnp.split(u * s + (1.0 - s), 4, axis=-1)
    c = f * c_prev + i * g
    return o * jnp.tanh(c), c, u


def lstm_factors(u: Array, c: Array, c_prev: Array) -> LSTMStepCache:
    """The backward's factors from what the forward kept, for any leading shape
    (one step [N, ·] or all steps [T, N, ·]): u <[..., 4H]>, c_t and c_{t−1} <[..., H]>."""
    s = _lstm_gate_scale(c.shape[-1], u.dtype)
    i, f, g, o = jnp.split(u * s + (1.0 - s), 4, axis=-1)
    tc = jnp.tanh(c)
    q = jnp.concatenate([g, c_prev, i, tc], axis=-1) * ((1.0 - u * u) * (s * s))  # (LSTM13)
    return LSTMStepCache(q, f, o * (1.0 - tc * tc))


def lstm_step_forward(xw_t: Array, h_prev: Array, c_prev: Array, w_h: Array) -> tuple[Array, Array, LSTMStepCache]:
    """One LSTM step, gates fused: a = xw_t + h_{t−1} W_h, activated in ONE tanh pass.

    With s = [½, ½, 1, ½] per block, u = tanh(s ⊙ a) gives every gate as s ⊙ u + (1 − s)
    (σ(a) = ½ tanh(½a) + ½; g = tanh(a)) and every activation's derivative as s² ⊙ (1 − u²).
    One tanh over [N, 4H] measured faster on CPU than σ (exp + divide) and far faster than
    four separate activations on slices. Returns h_t, c_t <float>[N, H] and the cache.
    """
    h, c, u = _lstm_cell(xw_t, h_prev, c_prev, w_h)
    return h, c, lstm_factors(u, c, c_prev)


def lstm_step_backward(dh: Array, dc: Array, cache: LSTMStepCache, w_hT: Array) -> tuple[Array, Array, Array]:
    """Gradients through one LSTM step.

    dc_t ← dc + dh ⊙ o ⊙ (1 − tanh²c_t); δ = [dc_t, dc_t, dc_t, dh] ⊙ q (q as in
    :class:`LSTMStepCache`, i.e. δ_i = dc_t g i(1−i), δ_f = dc_t c_{t−1} f(1−f),
    δ_g = dc_t i (1−g²), δ_o = dh tanh(c_t) o(1−o)); dh_{t−1} = δ W_hᵀ; dc_{t−1} = dc_t ⊙ f.
    ``w_hT`` is W_hᵀ <float>[4H, H]. Returns (δ <float>[N, 4H], dh_prev, dc_prev, dc_t), dc_t
    the whole ∂L/∂c_t (read only by :func:`loss_grad_and_intermediates`; dead code otherwise).
    """
    dc = dc + dh * cache.o_dtanh
    delta = jnp.concatenate([dc, dc, dc, dh], axis=-1) * cache.q
    return delta, delta @ w_hT, dc * cache.f, dc


class GRUStepCache(NamedTuple):
    """What one GRU step's backward reads: the forward's own values, no derived factors."""

    u: Array  # [N, 2H] tanh(½ a_zr): [z, r] = ½ u + ½
    n: Array  # [N, H]  candidate
    h_prev: Array  # [N, H] h_{t−1}


def _gru_gates(u: Array) -> tuple[Array, Array]:
    """(z, r) from u = tanh(½ a_zr) <float>[..., 2H]: σ(a) = ½ tanh(½ a) + ½ (sliced
    first, so that a caller using one gate computes only that one)."""
    hdim = u.shape[-1] // 2
    return 0.5 * u[..., :hdim] + 0.5, 0.5 * u[..., hdim:] + 0.5


def _gru_cell(xw_t: Array, h_prev: Array, u_zr: Array, u_n: Array) -> tuple[Array, Array, Array]:
    """(h_t, u, n): u = tanh(½ a_zr) <float>[N, 2H] ([z, r] = ½ u + ½), n the candidate."""
    hdim = h_prev.shape[-1]
    u = jnp.tanh(0.5 * (xw_t[..., : 2 * hdim] + h_prev @ u_zr))  # one pass over [N, 2H]; (GRU12)
    z, r = _gru_gates(u)
    n = jnp.tanh(xw_t[..., 2 * hdim:] + (r * h_prev) @ u_n)
    return n + z * (h_prev - n), u, n


def _gru_backward(dh: Array, cache: GRUStepCache, u_zrT: Array, u_nT: Array) -> tuple[Array, Array, Array]:
    """(δ_zr <[N, 2H]>, δ_n <[N, H]>, dh_prev), the local factors derived in place.

    σ'(a) = ¼ (1 − tanh²(½ a)). δ_zr is one concatenation of two products, not the product
    of a concatenated gradient [dh, d(r⊙h)] and concatenated factors: one concatenate
    kernel per step instead of two. On CPU a step's small elementwise kernels cost more in
    launches than in arithmetic, so deriving the factors here, inside kernels the step runs
    anyway, beats a pass over all steps between the scans (BENCHMARKS.md).
    """
    hdim = dh.shape[-1]
    u, n, h = cache
    u_z, u_r = u[..., :hdim], u[..., hdim:]
    z, r = _gru_gates(u)
    dn = dh * ((1.0 - z) * (1.0 - n * n))
    drh = dn @ u_nT
    dzr = jnp.concatenate([dh * (h - n) * (0.25 * (1.0 - u_z * u_z)),
                           drh * h * (0.25 * (1.0 - u_r * u_r))], axis=-1)
    return dzr, dn, dh * z + drh * r + dzr @ u_zrT


def _gru_split(w_h: Array) -> tuple[Array, Array]:
    """(U_zr <[H, 2H]>, U_n <[H, H]>) from W_h <[H, 3H]>."""
    hdim = w_h.shape[0]
    return w_h[:, : 2 * hdim], w_h[:, 2 * hdim:]


def gru_step_forward(xw_t: Array, h_prev: Array, w_h: Array) -> tuple[Array, GRUStepCache]:
    """One GRU step: z, r from one matmul h_{t−1} [U_z U_r], then n from (r ⊙ h_{t−1}) U_n.

    Returns h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n <float>[N, H] and the cache.
    """
    h, u, n = _gru_cell(xw_t, h_prev, *_gru_split(w_h))
    return h, GRUStepCache(u, n, h_prev)


def gru_step_backward(dh: Array, cache: GRUStepCache, w_hT: Array) -> tuple[Array, Array]:
    """Gradients through one GRU step.

    δ_n = dh (1−z)(1−n²); d(r⊙h) = δ_n U_nᵀ; δ_z = dh (h_{t−1} − n) z(1−z);
    δ_r = d(r⊙h) ⊙ h_{t−1} r(1−r); dh_{t−1} = dh ⊙ z + d(r⊙h) ⊙ r + [δ_z, δ_r] [U_z, U_r]ᵀ.
    ``w_hT`` is W_hᵀ <float>[3H, H]. Returns (δ = [δ_z, δ_r, δ_n] <float>[N, 3H], dh_prev).
    """
    hdim = dh.shape[-1]
    dzr, dn, dh_prev = _gru_backward(dh, cache, w_hT[: 2 * hdim], w_hT[2 * hdim:])
    return jnp.concatenate([dzr, dn], axis=-1), dh_prev


# ============================================================================= sequences
class RNNCache(NamedTuple):
    xs: Array  # [T, N, D] the input, time-major
    hs: Array  # [T, N, H] h_1 … h_T


class LSTMCache(NamedTuple):
    xs: Array  # [T, N, D] the input, time-major
    steps: LSTMStepCache  # each field stacked over time: [T, N, ·]
    h_prev: Array  # [T, N, H] h_0 … h_{T−1}


class GRUCache(NamedTuple):
    xs: Array  # [T, N, D] the input, time-major
    us: Array  # [T, N, 2H] activated update/reset gates u_t (see _gru_cell)
    ns: Array  # [T, N, H] candidates n_t
    h_aug: Array  # [T, N, H + D + 1] = [h_{t−1}, x_t, 1], h_0 … h_{T−1} written by the forward scan


class GRUBuffers(NamedTuple):
    """The GRU's scan buffers, reusable from one minibatch to the next (:data:`loss_and_grad_reusing`).

    Every field is [T, N, ·]; on entry only the ones column of the two operands must hold
    ones (:func:`scan_buffers` makes them so; the scans and the x block overwrite the rest).
    """

    h_aug: Array  # [T, N, H + D + 1] the forward's [h_{t−1}, x_t, 1]
    us: Array  # [T, N, 2H] u_t, then δ_zr
    ns: Array  # [T, N, H] n_t, then δ_n
    rh_aug: Array  # [T, N, H + D + 1] the backward's [r ⊙ h_{t−1}, x_t, 1]


class LSTMBuffers(NamedTuple):
    """The LSTM's scan buffers, reusable from one minibatch to the next
    (:data:`loss_and_grad_reusing`). Every field is [T, N, ·]; their contents on entry do not
    matter (the forward scan overwrites every element before the backward reads it)."""

    q: Array  # [T, N, 4H] the forward's factors q_t, then δ_t
    f: Array  # [T, N, H] forget gates
    o_dtanh: Array  # [T, N, H] o ⊙ (1 − tanh² c_t)
    h_prev: Array  # [T, N, H] h_0 … h_{T−1}


def _lstm_buffers(n: int, t: int, hdim: int, dtype) -> LSTMBuffers:
    """Fresh (zero) :class:`LSTMBuffers` for n sequences of t steps."""
    return LSTMBuffers(jnp.zeros((t, n, 4 * hdim), dtype), *(jnp.zeros((t, n, hdim), dtype) for _ in range(3)))


def _shift(seq: Array) -> Array:
    """[s_1 … s_T] → [0, s_1 … s_{T−1}] (the previous step's value; zero initial state)."""
    return jnp.concatenate([jnp.zeros_like(seq[:1]), seq[:-1]], axis=0)


#: Inputs with at most this many features are projected inside each step (D fused
#: multiply-adds in the step's elementwise pass); wider inputs by one matmul before the scan.
SMALL_INPUT = 16


def input_projection(xs: Array, w_x: Array, b: Array) -> Array:
    """xw = x W_x + b for every step at once: <float>[T, N, D] → <float>[T, N, G·H].

    Takes the time-major input: XLA's CPU dot for ``einsum("ntd,dg->tng")`` (transposing
    inside the contraction) measured ~10x slower than a swap followed by a plain matmul.
    """
    return xs @ w_x + b


def _step_inputs(xs: Array, w_x: Array, b: Array):
    """(sequence to scan over, function of its step → xw_t = x_t W_x + b <float>[N, G·H]).

    For D ≤ :data:`SMALL_INPUT` (Q3 has D = 3) the scan reads x_t itself and the step
    computes b + Σ_d x_t[:, d] W_x[d] as D broadcast multiply-adds that XLA fuses into the
    gate activation: a K = 3 matmul over all T·N rows measured ~4 ms per batch on CPU and
    the [T, N, G·H] result another ~2 ms to write and read, against nearly nothing here.
    """
    d = xs.shape[-1]
    if d > SMALL_INPUT:
        return input_projection(xs, w_x, b), lambda xw_t: xw_t

    def project(x_t):
        acc = b + x_t[..., 0:1] * w_x[0]
        for k in range(1, d):
            acc = acc + x_t[..., k:k + 1] * w_x[k]
        return acc

    return xs, project


def _sum_outer(a: Array, b: Array) -> Array:
    """Σ_{t,n} a[t, n]ᵀ b[t, n] as one 2-D matmul: <[T, N, P]>, <[T, N, Q]> → <[P, Q]>.

    aᵀ is laid out explicitly ([P, T·N]) first: measured ~1.5x faster on CPU than a dot
    that contracts the leading axis of both operands.
    """
    p = a.shape[-1]
    return jnp.transpose(a, (2, 0, 1)).reshape(p, -1) @ b.reshape(-1, b.shape[-1])


def _weight_grads(h_in: Array, xs: Array, deltas: Array) -> tuple[Array, Array, Array]:
    """(dW_x, dW_h, db) from Σ_{t,n} [h_in, x, 1]ᵀ δ as ONE matmul with K = T·N.

    h_in <[T, N, H]> is what multiplied W_h at each step, xs <[T, N, D]> the input,
    deltas <[T, N, Q]> the pre-activation gradients. The ones column gives db in the same
    pass (a separate reduction over [T·N, Q] measured slower than the extra row).
    """
    return _split_weight_grads(_sum_outer(_augmented(xs, h_in), deltas), h_in.shape[-1])  # (BPTT4)


def _augmented(xs: Array, h_block: Array) -> Array:
    """[h_block, x, 1] <float>[T, N, H + D + 1], the weight gradients' left operand."""
    return jnp.concatenate([h_block, xs, jnp.ones(xs.shape[:-1] + (1,), xs.dtype)], axis=-1)


def _augmented_empty(xs: Array, hdim: int) -> Array:
    """[0, x, 1]: an operand whose h-block a scan fills in place (the GRU's; see
    :func:`encode_forward`)."""
    return _augmented(xs, jnp.zeros(xs.shape[:-1] + (hdim,), xs.dtype))


def _with_inputs(aug: Array, xs: Array, hdim: int) -> Array:
    """A reused [·, x, 1] operand with this minibatch's x block written in place."""
    return jax.lax.dynamic_update_slice(aug, xs.astype(aug.dtype), (0, 0, hdim))


def _weight_grads_augmented(aug: Array, deltas: Array, hdim: int) -> tuple[Array, Array, Array]:
    """(dW_x, dW_h, db) from a filled [h, x, 1] operand <[T, N, H + D + 1]> and deltas
    <[T, N, Q]>: Σ_{t,n} augᵀ δ as one dot that contracts the leading (T·N) axis of both.

    The contraction form, not the explicit transpose of :func:`_sum_outer`: the operand is
    already laid out by the scans, and a transpose would be another full pass over it
    (measured: the GRU epoch 0.89-0.98 of the concatenate-and-transpose version).
    """
    k, q = aug.shape[-1], deltas.shape[-1]
    g = jax.lax.dot_general(aug.reshape(-1, k), deltas.reshape(-1, q), (((0,), (0,)), ((), ())))
    return _split_weight_grads(g, hdim)


def _split_weight_grads(g: Array, hdim: int) -> tuple[Array, Array, Array]:
    """[dW_h; dW_x; db] <[H + D + 1, Q]> → (dW_x, dW_h, db)."""
    return g[hdim:-1], g[:hdim], g[-1]


def _transposed(*ws: Array):
    """Loop-invariant weights (transposes, slices) materialized once before a scan: XLA
    would otherwise fold the transpose into every step's dot (~25% slower on CPU) or
    re-slice in every step (~5 µs each)."""
    out = jax.lax.optimization_barrier(ws)
    return out[0] if len(ws) == 1 else out


def encode_forward(cell: CellParams, x: Array, *, unroll: int = 1, buffers: GRUBuffers | LSTMBuffers | None = None):
    """Run the cell over x <float>[N, T, D] from a zero state, keeping what BPTT needs.

    x is cast to the parameters' dtype (float64 data with float32 weights trains in float32).
    ``buffers`` (GRU, LSTM): write the saved values into these instead of fresh buffers.

    Returns h_T <float>[N, H] and the cell's sequence cache.
    """
    kind = cell_name(cell)
    n, hdim = x.shape[0], cell.w_h.shape[0]
    xs = jnp.swapaxes(x, 0, 1).astype(cell.w_h.dtype)  # the parameters' dtype throughout
    seq, project = _step_inputs(xs, cell.w_x, cell.b)
    h0 = jnp.zeros((n, hdim), cell.w_h.dtype)
    w_h = cell.w_h
    if kind == "rnn":
        def step(h, x_t):
            h, _ = rnn_step_forward(project(x_t), h, w_h)
            return h, h

        h_t, hs = jax.lax.scan(step, h0, seq, unroll=unroll)
        return h_t, RNNCache(xs, hs)
    if kind == "lstm":  # writes its saved values into [T, N, ·] buffers in place
        def step(carry, inputs):
            h, c, bufs = carry
            x_t, t = inputs
            h_new, c_new, u = _lstm_cell(project(x_t), h, c, w_h)
            sc = lstm_factors(u, c_new, c)
            bufs = LSTMBuffers(*(jax.lax.dynamic_update_slice(b, v[None], (t, 0, 0))
                                 for b, v in zip(bufs, (sc.q, sc.f, sc.o_dtanh, h))))
            return (h_new, c_new, bufs), None

        bufs = buffers if buffers is not None else _lstm_buffers(xs.shape[1], xs.shape[0], hdim, xs.dtype)
        (h_t, _, bufs), _ = jax.lax.scan(step, (h0, h0, bufs), (seq, jnp.arange(xs.shape[0])), unroll=unroll)
        return h_t, LSTMCache(xs, LSTMStepCache(bufs.q, bufs.f, bufs.o_dtanh), bufs.h_prev)

    u_zr, u_n = _transposed(*_gru_split(w_h))

    def step(carry, inputs):
        h, h_aug, us, ns = carry
        x_t, t = inputs
        h_new, u, n_t = _gru_cell(project(x_t), h, u_zr, u_n)
        h_aug = jax.lax.dynamic_update_slice(h_aug, h[None], (t, 0, 0))  # h_{t−1}, in place
        us = jax.lax.dynamic_update_slice(us, u[None], (t, 0, 0))
        ns = jax.lax.dynamic_update_slice(ns, n_t[None], (t, 0, 0))
        return (h_new, h_aug, us, ns), None

    if buffers is None:
        init = (_augmented_empty(xs, hdim), jnp.zeros(xs.shape[:-1] + (2 * hdim,), xs.dtype),
                jnp.zeros(xs.shape[:-1] + (hdim,), xs.dtype))
    else:
        init = (_with_inputs(buffers.h_aug, xs, hdim), buffers.us, buffers.ns)
    steps = jnp.arange(xs.shape[0])
    (h_t, h_aug, us, ns), _ = jax.lax.scan(step, (h0, *init), (seq, steps), unroll=unroll)
    return h_t, GRUCache(xs, us, ns, h_aug)


def encode_backward(cell: CellParams, cache, dh_t: Array, *, unroll: int = 1) -> CellParams:
    """BPTT from dL/dh_T <float>[N, H]; returns the cell's gradients.

    A reverse scan that carries (dh) or (dh, dc), reads what the forward kept for each step
    and emits δ_t (the GRU derives its local factors there); then the weight
    gradients as ONE matmul over (T, N) (two for the GRU, whose candidate block multiplies
    r ⊙ h_{t−1}): [dW_h; dW_x; db] = Σ_{t,n} [h_{t−1}, x_t, 1]ᵀ δ_t. The GRU's reverse scan
    also writes r ⊙ h_{t−1} into its [r ⊙ h, x, 1] operand in place, beside the forward's
    [h_{t−1}, x_t, 1] (``GRUCache.h_aug``).
    """
    kind = cell_name(cell)
    w_h = cell.w_h
    hdim = w_h.shape[0]
    if kind == "rnn":
        return _rnn_encode_backward(cell, cache, dh_t, unroll=unroll)[0]
    if kind == "lstm":
        return _lstm_encode_backward(cell, cache, dh_t, unroll=unroll)[0]

    return _gru_encode_backward(cell, cache, dh_t, unroll=unroll)[0]


def _rnn_encode_backward(cell: RNNParams, cache: RNNCache, dh_t: Array, *, unroll: int = 1,
                         record: bool = False):
    """The RNN's BPTT (see :func:`encode_backward`): (gradients, δ_t <[T, N, H]>, dL/dh_t
    <[T, N, H]> if ``record`` else None)."""
    w_hT = _transposed(cell.w_h.T)

    def step(dh, h):
        delta, dh_prev = rnn_step_backward(dh, h, w_hT)
        return dh_prev, ((delta, dh) if record else delta)

    _, out = jax.lax.scan(step, dh_t, cache.hs, reverse=True, unroll=unroll)
    deltas, dhs = out if record else (out, None)
    return RNNParams(*_weight_grads(_shift(cache.hs), cache.xs, deltas)), deltas, dhs


def _lstm_encode_backward(cell: LSTMParams, cache: LSTMCache, dh_t: Array, *,
                          unroll: int = 1, record: bool = False):
    """The LSTM's BPTT (see :func:`encode_backward`), writing δ_t over the forward's q_t in
    place; returns (gradients, its buffers for reuse by the next minibatch), and with
    ``record`` also (dL/dh_t, dL/dc_t) <[T, N, H]> each (the scan emits them only then)."""
    w_hT = _transposed(cell.w_h.T)
    steps = cache.steps

    def step(carry, t):
        dh, dc, q = carry
        sc = LSTMStepCache(*(jax.lax.dynamic_index_in_dim(b, t, keepdims=False) for b in (q, steps.f, steps.o_dtanh)))
        delta, dh_prev, dc_prev, dc_t = lstm_step_backward(dh, dc, sc, w_hT)
        return (dh_prev, dc_prev, jax.lax.dynamic_update_slice(q, delta[None], (t, 0, 0))), ((dh, dc_t) if record else None)

    init = (dh_t, jnp.zeros_like(dh_t), steps.q)
    (_, _, deltas), states = jax.lax.scan(step, init, jnp.arange(cache.xs.shape[0]), reverse=True, unroll=unroll)
    grads = LSTMParams(*_weight_grads(cache.h_prev, cache.xs, deltas))
    bufs = LSTMBuffers(deltas, steps.f, steps.o_dtanh, cache.h_prev)
    return (grads, bufs, states) if record else (grads, bufs)


def _gru_encode_backward(cell: GRUParams, cache: GRUCache, dh_t: Array, *, unroll: int = 1,
                         rh_aug: Array | None = None, record: bool = False):
    """The GRU's BPTT (see :func:`encode_backward`); also returns its buffers for reuse:
    ``rh_aug`` a reused [r ⊙ h, x, 1] operand (None: a fresh one). With ``record`` a third
    value, dL/dh_t <[T, N, H]> (the scan emits it only then)."""
    w_h = cell.w_h
    hdim = w_h.shape[0]
    u_zrT, u_nT = _transposed(*(u.T for u in _gru_split(w_h)))
    h_aug = cache.h_aug

    def step(carry, t):
        dh, d_zr, d_n, rh_aug = carry  # d_zr, d_n: the forward's u and n until slot t is overwritten
        u = jax.lax.dynamic_index_in_dim(d_zr, t, keepdims=False)
        n_t = jax.lax.dynamic_index_in_dim(d_n, t, keepdims=False)
        h = jax.lax.dynamic_slice_in_dim(h_aug, t, 1)[0, :, :hdim]  # h_{t−1}
        dzr, dn, dh_prev = _gru_backward(dh, GRUStepCache(u, n_t, h), u_zrT, u_nT)
        _, r = _gru_gates(u)
        rh_aug = jax.lax.dynamic_update_slice(rh_aug, (r * h)[None], (t, 0, 0))  # r ⊙ h_{t−1}
        # δ_t overwrites u_t and n_t in place. The writes must come after every read of slot
        # t, or XLA copies both [T, N, ·] buffers in every step; a zero term that depends on
        # the last readers (dh_{t−1} and the r ⊙ h write) orders them: δ is unchanged.
        after = 0.0 * (dh_prev[:, :1] + jax.lax.dynamic_slice_in_dim(rh_aug, t, 1)[0, :, :1])
        d_zr = jax.lax.dynamic_update_slice(d_zr, (dzr + after)[None], (t, 0, 0))
        d_n = jax.lax.dynamic_update_slice(d_n, (dn + after)[None], (t, 0, 0))
        return (dh_prev, d_zr, d_n, rh_aug), (dh if record else None)

    steps = jnp.arange(cache.xs.shape[0])
    rh0 = _augmented_empty(cache.xs, hdim) if rh_aug is None else _with_inputs(rh_aug, cache.xs, hdim)
    init = (dh_t, cache.us, cache.ns, rh0)
    (_, d_zr, d_n, rh_aug), dhs = jax.lax.scan(step, init, steps, reverse=True, unroll=unroll)
    zr = _weight_grads_augmented(h_aug, d_zr, hdim)
    nn = _weight_grads_augmented(rh_aug, d_n, hdim)
    grads = GRUParams(*(jnp.concatenate([a, b], axis=-1) for a, b in zip(zr, nn)))
    bufs = GRUBuffers(h_aug, d_zr, d_n, rh_aug)
    return (grads, bufs, dhs) if record else (grads, bufs)


def encode(cell: CellParams, x: Array, *, unroll: int = 1) -> Array:
    """h_T <float>[N, H] only (inference: the scan keeps nothing but the state)."""
    kind = cell_name(cell)
    n, hdim = x.shape[0], cell.w_h.shape[0]
    seq, project = _step_inputs(jnp.swapaxes(x, 0, 1).astype(cell.w_h.dtype), cell.w_x, cell.b)
    h0 = jnp.zeros((n, hdim), cell.w_h.dtype)
    w_h = cell.w_h
    if kind == "rnn":
        def step(h, x_t):
            return rnn_step_forward(project(x_t), h, w_h)[0], None
    elif kind == "lstm":
        def step(hc, x_t):
            return _lstm_cell(project(x_t), *hc, w_h)[:2], None

        h0 = (h0, h0)
    else:
        u_zr, u_n = _transposed(*_gru_split(w_h))

        def step(h, x_t):
            return _gru_cell(project(x_t), h, u_zr, u_n)[0], None
    h_t, _ = jax.lax.scan(step, h0, seq, unroll=unroll)
    return h_t[0] if kind == "lstm" else h_t


# ============================================================================= classifier
# The head (HEAD1-HEAD6) and the softmax cross-entropy are the reference's: a few small
# matmuls per minibatch, nothing to lay out for speed.
def forward(params: ClassifierParams, x: Array, *, unroll: int = 1):
    """Logits <float>[N, C] for x <float>[N, T, D], and the cache for :func:`backward`."""
    h_t, seq_cache = encode_forward(params.cell, x, unroll=unroll)
    z, head_cache = _reference.head_forward(params, h_t)
    return z, (seq_cache, head_cache)


def backward(params: ClassifierParams, cache, dz: Array, *, unroll: int = 1) -> ClassifierParams:
    """All gradients from dL/dz <float>[N, C]: head first, then BPTT from dL/dh_T."""
    seq_cache, head_cache = cache
    dh_t, head_grads, _ = _reference.head_backward(head_cache, dz)
    return ClassifierParams(encode_backward(params.cell, seq_cache, dh_t, unroll=unroll), *head_grads)


def _cross_entropy(z: Array, y: Array) -> tuple[Array, Array]:
    """(mean cross-entropy, dL/dz): the reference's (HEAD3-HEAD4)."""
    return _reference._cross_entropy(z, y)


def loss_and_grad(params: ClassifierParams, batch, *, unroll: int = 1):
    """Manual forward and BPTT: (mean cross-entropy, ClassifierParams of gradients).

    batch: (x <float>[N, T, D], y <int>[N]). ``unroll`` is ``lax.scan``'s, for the time
    scans: 1 (the default) measured fastest for every cell; for the GRU a larger one is
    several times slower (XLA then copies the buffers its scans write in place every step).
    Training uses :data:`loss_and_grad_reusing`, the same function with the GRU's and LSTM's scan
    buffers carried from one minibatch to the next.
    """
    x, y = batch
    z, cache = forward(params, x, unroll=unroll)
    value, dz = _cross_entropy(z, y)
    return value, backward(params, cache, dz, unroll=unroll)


def scan_buffers(params: ClassifierParams, batch):
    """Buffers for :data:`loss_and_grad_reusing` and minibatches shaped like ``batch``: the
    GRU's :class:`GRUBuffers` (the operands' ones column set), the LSTM's
    :class:`LSTMBuffers`; () for the RNN (its scan saves one [T, N, H] output)."""
    cell = params.cell
    n, t, d = batch[0].shape
    hdim, dtype = cell.w_h.shape[0], cell.w_h.dtype
    if cell_name(cell) == "lstm":
        return _lstm_buffers(n, t, hdim, dtype)
    if cell_name(cell) != "gru":
        return ()
    aug = _augmented_empty(jnp.zeros((t, n, d), dtype), hdim)
    return GRUBuffers(aug, jnp.zeros((t, n, 2 * hdim), dtype), jnp.zeros((t, n, hdim), dtype), aug)


def loss_and_grad_step(params: ClassifierParams, batch, buffers, *, unroll: int = 1):
    """:func:`loss_and_grad` writing the GRU's or LSTM's saved values into ``buffers`` (from
    :func:`scan_buffers`, or from the previous minibatch's call) instead of fresh ones:
    ((loss, grads), buffers). The RNN (buffers ()) runs :func:`loss_and_grad`.

    The same arithmetic in the same order: the gradients equal :func:`loss_and_grad`'s
    exactly, whatever the buffers held.
    """
    if not isinstance(buffers, (GRUBuffers, LSTMBuffers)):
        return loss_and_grad(params, batch, unroll=unroll), buffers
    x, y = batch
    h_t, seq_cache = encode_forward(params.cell, x, unroll=unroll, buffers=buffers)
    z, head_cache = _reference.head_forward(params, h_t)
    value, dz = _cross_entropy(z, y)
    dh_t, head_grads, _ = _reference.head_backward(head_cache, dz)
    if isinstance(buffers, LSTMBuffers):
        dcell, buffers = _lstm_encode_backward(params.cell, seq_cache, dh_t, unroll=unroll)
    else:
        dcell, buffers = _gru_encode_backward(params.cell, seq_cache, dh_t, unroll=unroll, rh_aug=buffers.rh_aug)
    return (value, ClassifierParams(dcell, *head_grads)), buffers


def loss_grad_and_intermediates(params: ClassifierParams, batch):
    """(loss, gradients, named intermediate gradients) of this fast path, named as the
    reference's :func:`mp_jax.models.recurrent.loss_grad_and_intermediates`: "dz", "da", and
    per step <[T, N, H]> "dh_t" and the cell's deltas. The scans run as in training, but also
    emit dL/dh_t (and dL/dc_t) per step; the deltas are the buffers the backward writes."""
    x, y = batch
    kind = cell_name(params.cell)
    h_t, seq_cache = encode_forward(params.cell, x)
    z, head_cache = _reference.head_forward(params, h_t)
    value, dz = _cross_entropy(z, y)
    dh_t, head_grads, da = _reference.head_backward(head_cache, dz)
    if kind == "rnn":
        dcell, deltas, dhs = _rnn_encode_backward(params.cell, seq_cache, dh_t, record=True)
        per_step = {"dh_t": dhs, "δ_t": deltas}
    elif kind == "lstm":
        dcell, bufs, (dhs, dcs) = _lstm_encode_backward(params.cell, seq_cache, dh_t, record=True)
        d_i, d_f, d_g, d_o = jnp.split(bufs.q, 4, axis=-1)
        per_step = {"dh_t": dhs, "δ_o": d_o, "dc_t": dcs, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}
    else:
        dcell, bufs, dhs = _gru_encode_backward(params.cell, seq_cache, dh_t, record=True)
        d_z, d_r = jnp.split(bufs.us, 2, axis=-1)
        per_step = {"dh_t": dhs, "δ_n": bufs.ns, "δ_z": d_z, "δ_r": d_r}
    return value, ClassifierParams(dcell, *head_grads), {"dz": dz, "da": da, **per_step}


@dataclasses.dataclass(frozen=True, eq=False)
class BufferReuse:
    """A ``loss_and_grad`` whose scratch buffers an epoch carries from one minibatch to the
    next (the engine's :class:`mp_jax.engine.train.Carrying`).

    XLA zero-fills every buffer a program allocates; the manual BPTT saves its activations in
    [T, N, ·] buffers that its scans overwrite before reading. Carried through the epoch's
    ``lax.scan`` (updated in place), they are made once per epoch instead of once per
    minibatch. Measured split over two cores: the Q3 GRU's epoch 0.94 of the time without,
    the LSTM's 0.90 (BENCHMARKS.md).

    Attributes:
      step: ``(params, batch, buffers) -> ((loss, grads), buffers)``; the buffers come back
        overwritten, ready for the next minibatch of the same shape (their contents on entry
        do not matter).
      init: ``(params, batch) -> buffers`` for batches of that shape.
      batch_axis: the examples' axis of every buffer (data parallelism splits it).
    """

    step: Callable
    init: Callable
    batch_axis: int = 0

    def __call__(self, params, batch):
        """The plain ``loss_and_grad(params, batch) -> (loss, grads)``, with fresh buffers."""
        return self.step(params, batch, self.init(params, batch))[0]


#: :func:`loss_and_grad` for training: an epoch carries the GRU's and LSTM's scan buffers from one
#: minibatch to the next (no zero fill of ~5 and ~9 MB per minibatch). Called as
#: ``loss_and_grad_reusing(params, batch)`` it is :func:`loss_and_grad`.
loss_and_grad_reusing = BufferReuse(loss_and_grad_step, scan_buffers, batch_axis=1)


def logits(params: ClassifierParams, x: Array) -> Array:
    """<float>[N, C], without keeping any activations."""
    return _reference.head_forward(params, encode(params.cell, x))[0]


def predict(params: ClassifierParams, x: Array) -> Array:
    """Predicted class <int32>[N]."""
    return jnp.argmax(logits(params, x), axis=-1).astype(jnp.int32)


def metrics(params: ClassifierParams, batch) -> dict:
    """{"loss": mean cross-entropy, "accuracy": fraction correct} of a batch."""
    x, y = batch
    z = logits(params, x)
    value, _ = layers.softmax_cross_entropy_forward(z, y)
    return {"loss": value, "accuracy": jnp.mean((jnp.argmax(z, -1) == y).astype(z.dtype))}
