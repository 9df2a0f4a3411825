"""Exercise 7: the reverse scan through time that calls a step backward at t = T, …, 1.

Check it:  python -m mp_jax.gradcheck lstm --backward exercises/bptt.py
(swapped in for ``mp_jax.models.recurrent.encode_backward``; it works for every cell: try rnn
and gru too).

BPTT (docs/recurrent.md, BPTT1-BPTT3): the gradient enters at h_T from the head; each step's
backward turns the gradient reaching its state into the gradient reaching the previous state
and adds its share to the weight gradients, which are SUMMED over steps (one W serves every
step). For the LSTM the state is (h_t, c_t) and the gradient entering at T is (dh_T, 0).

Use ``jax.lax.scan(step, init, caches, reverse=True)``: ``caches`` is the forward's per-step
caches stacked over time (the scan hands ``step`` one step's cache at a time, t = T first), and
the per-step outputs it stacks come back in time order t = 1 … T.
"""
import jax
import jax.numpy as jnp

from mp_jax.models import recurrent

TARGET = "mp_jax.models.recurrent:encode_backward"
MODEL = "lstm"


def encode_backward(cell, caches, dh_last):
    """Returns (the cell's gradients, a dict of per-step gradients stacked over time [T, N, ·]).

    Args:
      cell: RNNParams, LSTMParams or GRUParams; ``recurrent.cell_name(cell)`` tells which.
      caches: the forward's step caches, stacked over time.
      dh_last: dL/dh_T <float>[N, H] from the head.

    Per-step outputs: "dh_t" (the gradient reaching h_t) and every entry of the dict the step
    backward returns. ``_, step_backward = recurrent.step_functions(kind)`` gives the step
    backward: ``step_backward(cell, dstate, cache) -> (dstate_prev, grads, deltas)``.
    """
    kind = recurrent.cell_name(cell)
    _, step_backward = recurrent.step_functions(kind)
    raise NotImplementedError("encode_backward: a reverse lax.scan carrying the state gradient and the summed weight gradients")
