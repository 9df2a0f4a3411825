"""Exercise 4: one step of backpropagation through a tanh RNN.

Check it:  python -m mp_jax.gradcheck --backward exercises/rnn_step.py
It is swapped in for ``mp_jax.models.recurrent.rnn_step_backward``: checked first alone (one step
with a random dL/dh_t, N = 5, D = 3, H = 4), then inside the ``rnn`` model, whose reverse scan
calls it at t = T, T − 1, …, 1 and adds up the weight gradients of the steps.

Forward (docs/recurrent.md, section "RNN › Forward", RNN1-RNN2), with W_x <[D, H]>, W_h <[H, H]>
and b <[H]>: a_t = x_t W_x + h_{t−1} W_h + b, then h_t = tanh(a_t).

Derive the step's backward on paper first: docs/recurrent.md derives it in the section
"RNN › Backward, one step" (and "Through time" says what reaches h_t). Stuck? ``--hint`` climbs
one rung at a time.
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import RNNParams

TARGET = "mp_jax.models.recurrent:rnn_step_backward"
MODEL = "rnn"


def rnn_step_backward(p, dh, cache):
    """Returns (dh_prev, grads, deltas):

      dh_prev: dL/dh_{t−1} <float>[N, H], what this step passes back;
      grads: RNNParams(w_x <[D, H]>, w_h <[H, H]>, b <[H]>), THIS step's share of each gradient;
      deltas: {"δ_t": dL/da_t <float>[N, H]}, the gradient at the pre-activation a_t (the key is
        the Greek δ, the symbol of docs/), so that the checker can compare it tensor by tensor.

    Args:
      p: RNNParams(w_x, w_h, b) as above.
      dh: dL/dh_t <float>[N, H], everything that reaches h_t (from the head at t = T, else from
        step t + 1).
      cache: ``(x, h_prev, h)``: x_t <[N, D]>, h_{t−1} <[N, H]>, h_t <[N, H]>.
    Every array keeps the dtype of the arguments.
    """
    x, h_prev, h = cache
    raise NotImplementedError("rnn_step_backward: not written yet")
