"""Exercise 5: one step of backpropagation through an LSTM cell.

Check it:  python -m mp_jax.gradcheck --backward exercises/lstm_step.py
It is swapped in for ``mp_jax.models.recurrent.lstm_step_backward``: checked first alone (one
step with random dL/dh_t AND a random gradient from step t + 1 at c_t, N = 5, D = 3, H = 4), then
inside the ``lstm`` model.

Forward (docs/recurrent.md, section "LSTM › Forward", LSTM1-LSTM4), with W_x <[D, 4H]>,
W_h <[H, 4H]> and b <[4H]> fused in column blocks i, f, g, o:
  [a_i, a_f, a_g, a_o] = x_t W_x + h_{t−1} W_h + b
  i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
  c_t = f ⊙ c_{t−1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)

Derive the step's backward on paper first: docs/recurrent.md derives it in the section
"LSTM › Backward, one step" (and "Through time" says which gradients reach a step). Stuck?
``--hint`` climbs one rung at a time.
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import LSTMParams

TARGET = "mp_jax.models.recurrent:lstm_step_backward"
MODEL = "lstm"


def lstm_step_backward(p, dstate, cache):
    """Returns ((dh_prev, dc_prev), grads, deltas):

      dh_prev: dL/dh_{t−1} <float>[N, H];
      dc_prev: the gradient that reaches c_{t−1} through step t (the dc of step t − 1's dstate)
        <float>[N, H];
      grads: LSTMParams(w_x <[D, 4H]>, w_h <[H, 4H]>, b <[4H]>), THIS step's share of each
        gradient, blocks i, f, g, o;
      deltas: a dict of five <float>[N, H] arrays keyed by the symbols of docs/ (Greek δ):
        "δ_i", "δ_f", "δ_g", "δ_o", the gradients at the pre-activations a_i, a_f, a_g, a_o, and
        "dc_t", the WHOLE dL/dc_t (every path from c_t to the loss).

    Args:
      p: LSTMParams(w_x, w_h, b) as above.
      dstate: ``(dh, dc)``: dh = dL/dh_t <float>[N, H] (from the head at t = T, else from step
        t + 1); dc <float>[N, H] = the gradient that reaches c_t through step t + 1 (zero at t = T).
      cache: ``(x, h_prev, c_prev, i, f, g, o, c)``: x_t <[N, D]>, h_{t−1}, c_{t−1}, the four gates
        after their activations and c_t, each <[N, H]>.
    Every array keeps the dtype of the arguments.
    """
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    raise NotImplementedError("lstm_step_backward: not written yet")
