"""Exercise 4: one step of backpropagation through a tanh RNN.

Check it:  python -m mp_jax.gradcheck rnn --backward exercises/rnn_step.py
(swapped in for ``mp_jax.models.recurrent.rnn_step_backward``; the reverse scan calls it at
t = T, T − 1, …, 1 and sums the weight gradients).

Forward (docs/recurrent.md, RNN1-RNN2): a_t = x_t W_x + h_{t−1} W_h + b; h_t = tanh(a_t).

Implement, given dh = dL/dh_t <float>[N, H]:
  δ_t = dh ⊙ (1 − h_t ⊙ h_t)                                  (RNN3)
  dW_x = x_tᵀ δ_t,  dW_h = h_{t−1}ᵀ δ_t,  db = Σ_n δ_t          (RNN4: this step's share)
  dh_{t−1} = δ_t W_hᵀ                                           (RNN5)
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import RNNParams

TARGET = "mp_jax.models.recurrent:rnn_step_backward"
MODEL = "rnn"


def rnn_step_backward(p, dh, cache):
    """Returns (dh_{t−1} <[N, H]>, RNNParams(w_x <[D, H]>, w_h <[H, H]>, b <[H]>), {"δ_t": δ_t}).

    Args:
      p: RNNParams(w_x <[D, H]>, w_h <[H, H]>, b <[H]>).
      dh: dL/dh_t <float>[N, H], everything that reaches h_t (from the head or from step t + 1).
      cache: ``(x, h_prev, h)``: x_t <[N, D]>, h_{t−1} <[N, H]>, h_t <[N, H]>.
    The dict names δ_t so that the checker can compare it with jax.grad, tensor by tensor.
    """
    x, h_prev, h = cache
    raise NotImplementedError("rnn_step_backward: write (RNN3)-(RNN5)")
