"""Exercise 5: one step of backpropagation through an LSTM cell.

Check it:  python -m mp_jax.gradcheck lstm --backward exercises/lstm_step.py
(swapped in for ``mp_jax.models.recurrent.lstm_step_backward``).

Forward (docs/recurrent.md, LSTM1-LSTM4): [a_i, a_f, a_g, a_o] = x_t W_x + h_{t−1} W_h + b;
i, f, o = σ(a_i), σ(a_f), σ(a_o); g = tanh(a_g); c_t = f ⊙ c_{t−1} + i ⊙ g; h_t = o ⊙ tanh(c_t).

Implement, given (dh, dc): dh = dL/dh_t, dc = the part of dL/dc_t that comes from step t + 1
(zero at t = T):
  δ_o = dh ⊙ tanh(c_t) ⊙ o(1 − o)                              (LSTM5)
  dc ← dc + dh ⊙ o ⊙ (1 − tanh²(c_t))   (now the whole dL/dc_t) (LSTM6)
  δ_i = dc ⊙ g ⊙ i(1 − i);  δ_f = dc ⊙ c_{t−1} ⊙ f(1 − f);  δ_g = dc ⊙ i ⊙ (1 − g²)  (LSTM7-9)
  δ_t = [δ_i, δ_f, δ_g, δ_o];  dW_x = x_tᵀ δ_t, dW_h = h_{t−1}ᵀ δ_t, db = Σ_n δ_t     (LSTM10)
  dh_{t−1} = δ_t W_hᵀ;  dc_{t−1} = dc ⊙ f                                            (LSTM11-12)
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import LSTMParams

TARGET = "mp_jax.models.recurrent:lstm_step_backward"
MODEL = "lstm"


def lstm_step_backward(p, dstate, cache):
    """Returns ((dh_{t−1}, dc_{t−1}), LSTMParams(w_x, w_h, b), {"δ_o", "dc_t", "δ_i", "δ_f", "δ_g"}).

    Args:
      p: LSTMParams(w_x <[D, 4H]>, w_h <[H, 4H]>, b <[4H]>), column blocks i, f, g, o.
      dstate: (dh <[N, H]>, dc <[N, H]>) as described above.
      cache: ``(x, h_prev, c_prev, i, f, g, o, c)``: x_t <[N, D]>, h_{t−1}, c_{t−1}, the four
        gates after their activations and c_t, each <[N, H]>.
    The dict holds δ_o, the whole dL/dc_t (after LSTM6) as "dc_t", δ_i, δ_f and δ_g, each [N, H].
    """
    dh, dc = dstate
    x, h_prev, c_prev, i, f, g, o, c = cache
    raise NotImplementedError("lstm_step_backward: write (LSTM5)-(LSTM12)")
