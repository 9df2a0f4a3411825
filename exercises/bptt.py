"""Exercise 7: the reverse scan through time that calls a step backward at t = T, …, 1.

Check it:  python -m mp_jax.gradcheck --backward exercises/bptt.py
It is swapped in for ``mp_jax.models.recurrent.encode_backward``: checked first alone (a random
LSTM and a random dL/dh_T, N = 5, T = 6, D = 3, H = 4), then inside the ``lstm`` model. It works
for every cell: put ``rnn`` or ``gru`` before ``--backward`` to check it on those.

Forward (docs/recurrent.md, section "Through time" and each cell's "Forward"):
``recurrent.encode_forward`` runs the cell's step from h_0 = 0 (and c_0 = 0) over t = 1, …, T,
the same weights at every step, and stacks each step's cache; only h_T reaches the head.

Derive the reverse scan on paper first: "Through time" in docs/recurrent.md derives what reaches
each step and what becomes of the weights' gradients. Stuck? ``--hint`` climbs one rung at a time.

Tools: ``jax.lax.scan(step, init, caches, reverse=True)`` hands ``step`` one step's cache at a
time, t = T first, and returns the per-step outputs it stacks in time order t = 1 … T.
"""
import jax
import jax.numpy as jnp

from mp_jax.models import recurrent

TARGET = "mp_jax.models.recurrent:encode_backward"
MODEL = "lstm"


def encode_backward(cell, caches, dh_last):
    """Returns (grads, per_step):

      grads: the cell's gradients, a parameter tuple of the cell's type (RNNParams, LSTMParams or
        GRUParams) with the shapes of ``cell``;
      per_step: a dict of arrays stacked over time <float>[T, N, ·] (t = 1 … T): "dh_t", the
        gradient that reaches h_t, and every entry of the dict the step backward returns.

    Args:
      cell: RNNParams, LSTMParams or GRUParams; ``recurrent.cell_name(cell)`` tells which.
      caches: the forward's step caches, stacked over time.
      dh_last: dL/dh_T <float>[N, H] from the head.

    The step backward: ``step_backward(cell, dstate, cache) -> (dstate_prev, grads, deltas)``,
    its dstate dh <[N, H]> for the RNN and the GRU, the pair (dh, dc) for the LSTM (exercises 4-6).
    """
    kind = recurrent.cell_name(cell)
    _, step_backward = recurrent.step_functions(kind)
    raise NotImplementedError("encode_backward: not written yet")
