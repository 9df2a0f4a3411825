"""Exercise 6: one step of backpropagation through a GRU cell (reset gate inside the matmul).

Check it:  python -m mp_jax.gradcheck --backward exercises/gru_step.py
It is swapped in for ``mp_jax.models.recurrent.gru_step_backward``: checked first alone (one step
with a random dL/dh_t, N = 5, D = 3, H = 4), then inside the ``gru`` model.

Forward (docs/recurrent.md, section "GRU › Forward", GRU1-GRU5), with W_x <[D, 3H]>,
W_h = [U_z U_r U_n] <[H, 3H]> and b <[3H]> in column blocks z, r, n:
  z = σ(x_t W_x^z + h_{t−1} U_z + b^z);  r = σ(x_t W_x^r + h_{t−1} U_r + b^r)
  n = tanh(x_t W_x^n + (r ⊙ h_{t−1}) U_n + b^n);  h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n

Derive the step's backward on paper first: docs/recurrent.md derives it in the section
"GRU › Backward, one step"; count every place h_{t−1} enters the forward. Stuck? ``--hint``
climbs one rung at a time.
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import GRUParams

TARGET = "mp_jax.models.recurrent:gru_step_backward"
MODEL = "gru"


def gru_step_backward(p, dh, cache):
    """Returns (dh_prev, grads, deltas):

      dh_prev: dL/dh_{t−1} <float>[N, H];
      grads: GRUParams(w_x <[D, 3H]>, w_h <[H, 3H]>, b <[3H]>), THIS step's share of each
        gradient, blocks z, r, n;
      deltas: {"δ_n", "δ_z", "δ_r"}: the gradients at the pre-activations a_n, a_z, a_r, each
        <float>[N, H], keyed by the symbols of docs/ (Greek δ).

    Args:
      p: GRUParams(w_x, w_h, b) as above.
      dh: dL/dh_t <float>[N, H], everything that reaches h_t.
      cache: ``(x, h_prev, z, r, n)``: x_t <[N, D]>, h_{t−1}, z, r, n <[N, H]>.
    Every array keeps the dtype of the arguments.
    """
    x, h_prev, z, r, n = cache
    raise NotImplementedError("gru_step_backward: not written yet")
