"""RNN, LSTM and GRU cells with manual backpropagation through time, and the Q3 classifier.

This is the readable reference: each line of a backward is one equation of
``docs/recurrent.md``, cited by its label, e.g. ``# (LSTM7)``. :mod:`mp_jax.models.recurrent_fast`
computes the same function with the same parameters, laid out for speed; tests hold the two
equal in float64, and both equal to ``jax.grad`` of :func:`loss`.

The classifier reads a batch-major sequence x <float>[N, T, D], runs one recurrent layer of
H units from h_0 = 0 (and c_0 = 0), and classifies the last state h_T with a ReLU layer of
M units and a softmax over C classes (HEAD1-HEAD3).

Every cell has the same two step functions, so one scan runs any of them:

* ``<cell>_step_forward(p, state, x_t) -> (state, cache)``: one time step; the state is h_t
  (RNN, GRU) or (h_t, c_t) (LSTM); the cache keeps the step's input, previous state and
  gate values.
* ``<cell>_step_backward(p, dstate, cache) -> (dstate_prev, grads, deltas)``: given the gradient
  reaching this step's state, the gradient reaching the previous state and this step's
  contribution to every weight gradient (a parameter tuple of the cell's type).

:func:`encode_forward` is a ``lax.scan`` over time that stacks the caches; :func:`encode_backward`
is a ``lax.scan(reverse=True)`` whose carry holds the state gradient and the weight gradients
summed so far (BPTT2).

Verbs, as every model module: :func:`init_params`, :func:`forward` → (logits, cache),
:func:`backward`, :func:`loss` (the reference for ``jax.grad``, from
:mod:`mp_jax.models.recurrent_autodiff`), :func:`loss_and_grad` (manual), :func:`metrics`,
:func:`predict`; and :func:`hidden_state_grads`, the gradient reaching every h_t.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from mp_jax import layers
from mp_jax.models.recurrent_autodiff import loss  # noqa: F401  (the reference for jax.grad, its own module)

Array = jax.Array

CELLS = ("rnn", "lstm", "gru")
N_BLOCKS = {"rnn": 1, "lstm": 4, "gru": 3}


# ============================================================================= parameters
class RNNParams(NamedTuple):
    w_x: Array  # [D, H]
    w_h: Array  # [H, H]
    b: Array  # [H]


class LSTMParams(NamedTuple):
    """Fused gates; column blocks of H in the order i, f, g, o."""

    w_x: Array  # [D, 4H]
    w_h: Array  # [H, 4H]
    b: Array  # [4H]


class GRUParams(NamedTuple):
    """Column blocks of H in the order z (update), r (reset), n (candidate)."""

    w_x: Array  # [D, 3H]
    w_h: Array  # [H, 3H]  [U_z U_r U_n]
    b: Array  # [3H]


CellParams = Union[RNNParams, LSTMParams, GRUParams]
_PARAM_TYPES = {"rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}


class ClassifierParams(NamedTuple):
    cell: CellParams
    w_mlp: Array  # [H, M]
    b_mlp: Array  # [M]
    w_out: Array  # [M, C]
    b_out: Array  # [C]


def cell_name(cell: CellParams) -> str:
    """"rnn", "lstm" or "gru", from the parameter type."""
    for name, cls in _PARAM_TYPES.items():
        if isinstance(cell, cls):
            return name
    raise TypeError(f"expected RNNParams, LSTMParams or GRUParams, found {type(cell).__name__}")


def _xavier(key, shape, dtype):
    lim = (6.0 / (shape[0] + shape[1])) ** 0.5
    return jax.random.uniform(key, shape, dtype, -lim, lim)


def init_params(key: Array, cell: str, n_in: int, n_hidden: int, n_mlp: int, n_classes: int,
                dtype=jnp.float32, *, forget_bias: float = 0.0) -> ClassifierParams:
    """Xavier-uniform weights (each gate block on its own fan-in/fan-out), zero biases,
    except the LSTM's forget-gate block of b, set to ``forget_bias``.

    With b_f = 0 the forget gate starts near σ(0) = 1/2, which halves dc_t at every step
    back along the cell path (LSTM12); b_f = 1 (Gers et al. 2000; Jozefowicz et al. 2015)
    starts it near σ(1) ≈ 0.73 (docs/recurrent.md, "Predicting the slope of the gradient
    flow"). The weights do not depend on ``forget_bias``: the same key gives the same W.

    Args:
      cell: "rnn", "lstm" or "gru".
      n_in: D; n_hidden: H; n_mlp: M (the head's ReLU layer); n_classes: C.
      forget_bias: the LSTM's b_f (columns H … 2H − 1 of b); a nonzero value for another cell
        is an error.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, found {cell!r}")
    if forget_bias != 0.0 and cell != "lstm":
        raise ValueError(f"forget_bias is the LSTM's forget-gate bias; the {cell.upper()} has no forget gate "
                         f"(found forget_bias={forget_bias!r}): leave it 0")
    g = N_BLOCKS[cell]
    keys = jax.random.split(key, 2 * g + 2)
    w_x = jnp.concatenate([_xavier(keys[i], (n_in, n_hidden), dtype) for i in range(g)], axis=1)
    w_h = jnp.concatenate([_xavier(keys[g + i], (n_hidden, n_hidden), dtype) for i in range(g)], axis=1)
    b = jnp.zeros(g * n_hidden, dtype)
    if cell == "lstm":  # blocks i, f, g, o: the forget gate's is the second
        b = b.at[n_hidden:2 * n_hidden].set(forget_bias)
    cp = _PARAM_TYPES[cell](w_x, w_h, b)
    return ClassifierParams(
        cp,
        _xavier(keys[-2], (n_hidden, n_mlp), dtype), jnp.zeros(n_mlp, dtype),
        _xavier(keys[-1], (n_mlp, n_classes), dtype), jnp.zeros(n_classes, dtype),
    )


# ============================================================================= RNN step
class RNNStepCache(NamedTuple):
    x: Array  # [N, D] x_t
    h_prev: Array  # [N, H] h_{t−1}
    h: Array  # [N, H] h_t


def rnn_step_forward(p: RNNParams, h_prev: Array, x_t: Array) -> tuple[Array, RNNStepCache]:
    """h_t = tanh(x_t W_x + h_{t−1} W_h + b) <float>[N, H]."""
    a = x_t @ p.w_x + h_prev @ p.w_h + p.b  # (RNN1)
    h = jnp.tanh(a)  # (RNN2)
    return h, RNNStepCache(x_t, h_prev, h)


def rnn_step_backward(p: RNNParams, dh: Array, cache: RNNStepCache) -> tuple[Array, RNNParams, dict]:
    """(dh_{t−1}, this step's gradients, {"δ_t": δ_t}) from dh_t; key derivative
    tanh' = 1 − h_t²."""
    x, h_prev, h = cache
    da = dh * (1.0 - h * h)  # (RNN3) through the tanh
    grads = RNNParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))  # (RNN4)
    dh_prev = da @ p.w_h.T  # (RNN5)
    return dh_prev, grads, {"δ_t": da}


# ============================================================================= LSTM step
class LSTMStepCache(NamedTuple):
    x: Array  # [N, D] x_t
    h_prev: Array  # [N, H] h_{t−1}
    c_prev: Array  # [N, H] c_{t−1}
    i: Array  # [N, H] input gate
    f: Array  # [N, H] forget gate
    g: Array  # [N, H] candidate cell
    o: Array  # [N, H] output gate
    c: Array  # [N, H] c_t


def lstm_step_forward(p: LSTMParams, state: tuple[Array, Array], x_t: Array):
    """(h_t, c_t) <float>[N, H] each, from (h_{t−1}, c_{t−1}); the cache keeps the gates."""
    h_prev, c_prev = state
    a_i, a_f, a_g, a_o = jnp.split(x_t @ p.w_x + h_prev @ p.w_h + p.b, 4, axis=-1)  # (LSTM1)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)  # (LSTM2)
    c = f * c_prev + i * g  # (LSTM3)
    h = o * jnp.tanh(c)  # (LSTM4)
    return (h, c), LSTMStepCache(x_t, h_prev, c_prev, i, f, g, o, c)


def lstm_step_backward(p: LSTMParams, dstate: tuple[Array, Array], cache: LSTMStepCache):
    """((dh_{t−1}, dc_{t−1}), this step's gradients, its named deltas) from (dh_t, dc_t).

    dc_t enters as the gradient from step t + 1 (zero at t = T) and collects the path
    through h_t first (LSTM6); σ' = σ(1 − σ), tanh' = 1 − tanh². The named deltas are
    δ_o, dc_t (the whole ∂L/∂c_t, after LSTM6), δ_i, δ_f, δ_g, each <float>[N, H].
    """
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    tanh_c = jnp.tanh(c)
    d_o = dh * tanh_c * o * (1.0 - o)  # (LSTM5)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)  # (LSTM6) through h_t = o ⊙ tanh(c_t)
    d_i = dc * g * i * (1.0 - i)  # (LSTM7)
    d_f = dc * c_prev * f * (1.0 - f)  # (LSTM8)
    d_g = dc * i * (1.0 - g * g)  # (LSTM9)
    da = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)  # (LSTM10) δ_t, blocks i, f, g, o
    grads = LSTMParams(w_x=x.T @ da, w_h=h_prev.T @ da, b=da.sum(0))  # (LSTM10)
    dh_prev = da @ p.w_h.T  # (LSTM11)
    dc_prev = dc * f  # (LSTM12) the cell-state path
    return (dh_prev, dc_prev), grads, {"δ_o": d_o, "dc_t": dc, "δ_i": d_i, "δ_f": d_f, "δ_g": d_g}


# ============================================================================= GRU step
class GRUStepCache(NamedTuple):
    x: Array  # [N, D] x_t
    h_prev: Array  # [N, H] h_{t−1}
    z: Array  # [N, H] update gate
    r: Array  # [N, H] reset gate
    n: Array  # [N, H] candidate


def _gru_blocks(p: GRUParams):
    """The weights by role: ((W_x^zr, W_x^n), (U_zr, U_n), (b^zr, b^n))."""
    two_h = 2 * p.w_h.shape[0]
    return ((p.w_x[:, :two_h], p.w_x[:, two_h:]), (p.w_h[:, :two_h], p.w_h[:, two_h:]),
            (p.b[:two_h], p.b[two_h:]))


def gru_step_forward(p: GRUParams, h_prev: Array, x_t: Array) -> tuple[Array, GRUStepCache]:
    """h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n <float>[N, H]; the cache keeps z, r, n."""
    (w_xzr, w_xn), (u_zr, u_n), (b_zr, b_n) = _gru_blocks(p)
    a_z, a_r = jnp.split(x_t @ w_xzr + h_prev @ u_zr + b_zr, 2, axis=-1)  # (GRU1)
    z, r = jax.nn.sigmoid(a_z), jax.nn.sigmoid(a_r)  # (GRU2)
    a_n = x_t @ w_xn + (r * h_prev) @ u_n + b_n  # (GRU3)
    n = jnp.tanh(a_n)  # (GRU4)
    h = z * h_prev + (1.0 - z) * n  # (GRU5)
    return h, GRUStepCache(x_t, h_prev, z, r, n)


def gru_step_backward(p: GRUParams, dh: Array, cache: GRUStepCache) -> tuple[Array, GRUParams, dict]:
    """(dh_{t−1}, this step's gradients, {δ_n, δ_z, δ_r}) from dh_t; the reset gate sits
    inside the candidate's matmul, so its gradient passes back through U_n first (GRU8)."""
    x, h_prev, z, r, n = cache
    _, (u_zr, u_n), _ = _gru_blocks(p)
    d_n = dh * (1.0 - z) * (1.0 - n * n)  # (GRU6)
    d_z = dh * (h_prev - n) * z * (1.0 - z)  # (GRU7)
    d_rh = d_n @ u_n.T  # (GRU8) gradient of r ⊙ h_{t−1}
    d_r = d_rh * h_prev * r * (1.0 - r)  # (GRU9)
    d_zr = jnp.concatenate([d_z, d_r], axis=-1)
    da = jnp.concatenate([d_zr, d_n], axis=-1)  # δ_t, blocks z, r, n
    grads = GRUParams(w_x=x.T @ da,  # (GRU10)
                      w_h=jnp.concatenate([h_prev.T @ d_zr, (r * h_prev).T @ d_n], axis=-1),
                      b=da.sum(0))
    dh_prev = dh * z + d_rh * r + d_zr @ u_zr.T  # (GRU11)
    return dh_prev, grads, {"δ_n": d_n, "δ_z": d_z, "δ_r": d_r}


# ============================================================================= sequences
#: The named deltas each cell's step backward returns, in the order the backward computes them.
STEP_DELTAS = {"rnn": ("δ_t",), "lstm": ("δ_o", "dc_t", "δ_i", "δ_f", "δ_g"), "gru": ("δ_n", "δ_z", "δ_r")}


def step_functions(kind: str):
    """(step forward, step backward) of a cell, looked up when called: a learner's or a
    bug zoo's replacement of ``lstm_step_backward`` (a module attribute) is the one used."""
    return {"rnn": (rnn_step_forward, rnn_step_backward), "lstm": (lstm_step_forward, lstm_step_backward),
            "gru": (gru_step_forward, gru_step_backward)}[kind]


def _hidden(state):
    """h_t from a cell state (h_t, or (h_t, c_t) for the LSTM)."""
    return state[0] if isinstance(state, tuple) else state


def _zero_state(kind: str, h: Array):
    """A zero state (or state gradient) shaped like h <[N, H]>."""
    zeros = jnp.zeros_like(h)
    return (zeros, zeros) if kind == "lstm" else zeros


def encode_forward(cell: CellParams, x: Array):
    """Run the cell over x <float>[N, T, D] from a zero state.

    x is cast to the parameters' dtype. Returns h_T <float>[N, H] and the step caches, each
    field stacked over time (time-major, [T, N, ·]).
    """
    kind = cell_name(cell)
    step_forward, _ = step_functions(kind)
    xs = jnp.swapaxes(x, 0, 1).astype(cell.w_h.dtype)  # [T, N, D]: the scan runs over axis 0
    state0 = _zero_state(kind, jnp.zeros((x.shape[0], cell.w_h.shape[0]), cell.w_h.dtype))

    def step(state, x_t):
        return step_forward(cell, state, x_t)

    state_t, caches = jax.lax.scan(step, state0, xs)
    return _hidden(state_t), caches


def encode_backward(cell: CellParams, caches, dh_last: Array):
    """Backpropagation through time from dL/dh_T <float>[N, H].

    Returns the cell's gradients and the named gradients of every step, each stacked over
    time <float>[T, N, ·] (t = 1 … T): "dh_t" (dL/dh_t) and the cell's deltas
    (:data:`STEP_DELTAS`).
    """
    kind = cell_name(cell)
    _, step_backward = step_functions(kind)
    dstate = (dh_last, jnp.zeros_like(dh_last)) if kind == "lstm" else dh_last  # (BPTT1)

    def step(carry, cache):
        dstate, total = carry
        dstate_prev, grads, deltas = step_backward(cell, dstate, cache)
        total = jax.tree.map(jnp.add, total, grads)  # (BPTT2) weights shared over time
        return (dstate_prev, total), {"dh_t": _hidden(dstate), **deltas}

    zero_grads = jax.tree.map(jnp.zeros_like, cell)
    (_, grads), per_step = jax.lax.scan(step, (dstate, zero_grads), caches, reverse=True)
    return grads, per_step


# ============================================================================= classifier
def head_forward(params: ClassifierParams, h_last: Array):
    """Logits z <float>[N, C] from h_T <float>[N, H] (HEAD1-HEAD2), and the cache."""
    a, c1 = layers.linear_forward(h_last, params.w_mlp, params.b_mlp)
    u, c2 = layers.relu_forward(a)  # (HEAD1)
    z, c3 = layers.linear_forward(u, params.w_out, params.b_out)  # (HEAD2)
    return z, (c1, c2, c3)


def head_backward(head_cache, dz: Array):
    """(dL/dh_T, (dW_mlp, db_mlp, dW_out, db_out), da) from dL/dz; da <float>[N, M] is
    the gradient of the ReLU layer's pre-activation (HEAD6)."""
    c1, c2, c3 = head_cache
    du, dw_out, db_out = layers.linear_backward(dz, c3)  # (HEAD5)
    da = layers.relu_backward(du, c2)  # (HEAD6)
    dh_last, dw_mlp, db_mlp = layers.linear_backward(da, c1)  # (HEAD6)
    return dh_last, (dw_mlp, db_mlp, dw_out, db_out), da


def forward(params: ClassifierParams, x: Array):
    """Logits <float>[N, C] for x <float>[N, T, D], and the cache for :func:`backward`."""
    h_last, step_caches = encode_forward(params.cell, x)
    z, head_cache = head_forward(params, h_last)
    return z, (step_caches, head_cache)


def _backward_with_states(params: ClassifierParams, cache, dz: Array):
    step_caches, head_cache = cache
    dh_last, head_grads, da = head_backward(head_cache, dz)
    cell_grads, per_step = encode_backward(params.cell, step_caches, dh_last)
    return ClassifierParams(cell_grads, *head_grads), {"da": da, **per_step}


def backward(params: ClassifierParams, cache, dz: Array) -> ClassifierParams:
    """All gradients from dL/dz <float>[N, C]: the head first, then BPTT from dL/dh_T."""
    return _backward_with_states(params, cache, dz)[0]


def _cross_entropy(z: Array, y: Array) -> tuple[Array, Array]:
    """(mean cross-entropy (HEAD3), dL/dz (HEAD4))."""
    value, ce_cache = layers.softmax_cross_entropy_forward(z, y)
    return value, layers.softmax_cross_entropy_backward(jnp.ones((), z.dtype), ce_cache)


def loss_and_grad(params: ClassifierParams, batch):
    """Manual forward and BPTT: (mean cross-entropy, ClassifierParams of gradients).

    batch: (x <float>[N, T, D], y <int>[N]).
    """
    x, y = batch
    z, cache = forward(params, x)
    value, dz = _cross_entropy(z, y)
    return value, backward(params, cache, dz)


def loss_grad_and_intermediates(params: ClassifierParams, batch):
    """(loss, gradients, named intermediate gradients) of the manual backward.

    The intermediates, as docs/recurrent.md names them: "dz" <[N, C]> (HEAD4), "da"
    <[N, M]> (HEAD6), and per step, stacked over time <[T, N, H]>, "dh_t" and the cell's
    deltas (:data:`STEP_DELTAS`).
    """
    x, y = batch
    z, cache = forward(params, x)
    value, dz = _cross_entropy(z, y)
    grads, named = _backward_with_states(params, cache, dz)
    return value, grads, {"dz": dz, **named}


def hidden_state_grads(params: ClassifierParams, batch) -> Array:
    """dL/dh_t <float>[T, N, H] for t = 1 … T, from the manual BPTT (BPTT3: how the
    gradient reaching early steps shrinks or grows)."""
    return loss_grad_and_intermediates(params, batch)[2]["dh_t"]


def logits(params: ClassifierParams, x: Array) -> Array:
    """<float>[N, C]."""
    return forward(params, x)[0]


def predict(params: ClassifierParams, x: Array) -> Array:
    """Predicted class <int32>[N]."""
    return jnp.argmax(logits(params, x), axis=-1).astype(jnp.int32)


def metrics(params: ClassifierParams, batch) -> dict:
    """{"loss": mean cross-entropy, "accuracy": fraction correct} of a batch."""
    x, y = batch
    z = logits(params, x)
    value, _ = layers.softmax_cross_entropy_forward(z, y)
    return {"loss": value, "accuracy": jnp.mean((jnp.argmax(z, -1) == y).astype(z.dtype))}
