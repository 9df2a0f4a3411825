"""Exercise 6: one step of backpropagation through a GRU cell (reset gate inside the matmul).

Check it:  python -m mp_jax.gradcheck gru --backward exercises/gru_step.py
(swapped in for ``mp_jax.models.recurrent.gru_step_backward``).

Forward (docs/recurrent.md, GRU1-GRU5), W_h = [U_z U_r U_n]:
  z = σ(x_t W_x^z + h_{t−1} U_z + b^z);  r = σ(x_t W_x^r + h_{t−1} U_r + b^r)
  n = tanh(x_t W_x^n + (r ⊙ h_{t−1}) U_n + b^n);  h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n

Implement, given dh = dL/dh_t:
  δ_n = dh ⊙ (1 − z) ⊙ (1 − n²)                (GRU6)
  δ_z = dh ⊙ (h_{t−1} − n) ⊙ z(1 − z)           (GRU7)
  d(r⊙h) = δ_n U_nᵀ;  δ_r = d(r⊙h) ⊙ h_{t−1} ⊙ r(1 − r)                          (GRU8-9)
  dW_x = x_tᵀ [δ_z, δ_r, δ_n]; d[U_z U_r] = h_{t−1}ᵀ [δ_z, δ_r]; dU_n = (r ⊙ h_{t−1})ᵀ δ_n;
  db = Σ_n [δ_z, δ_r, δ_n]                                                       (GRU10)
  dh_{t−1} = dh ⊙ z + d(r⊙h) ⊙ r + [δ_z, δ_r] [U_z U_r]ᵀ                          (GRU11)
"""
import jax.numpy as jnp

from mp_jax.models.recurrent import GRUParams

TARGET = "mp_jax.models.recurrent:gru_step_backward"
MODEL = "gru"


def gru_step_backward(p, dh, cache):
    """Returns (dh_{t−1} <[N, H]>, GRUParams(w_x <[D, 3H]>, w_h <[H, 3H]>, b <[3H]>),
    {"δ_n", "δ_z", "δ_r"}).

    Args:
      p: GRUParams(w_x, w_h, b), column blocks z, r, n (H columns each).
      dh: dL/dh_t <float>[N, H].
      cache: ``(x, h_prev, z, r, n)``: x_t <[N, D]>, h_{t−1}, z, r, n <[N, H]>.
    """
    x, h_prev, z, r, n = cache
    raise NotImplementedError("gru_step_backward: write (GRU6)-(GRU11)")
