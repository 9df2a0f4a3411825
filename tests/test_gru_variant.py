"""Which GRU this is: the reset gate before the candidate's matrix product (docs/recurrent.md,
"Which GRU").

The code's candidate (GRU3) is a_n = x W_x^n + (r ⊙ h) U_n + b^n, the form of Cho et al.
(2014). PyTorch's ``torch.nn.GRU`` and cuDNN apply the gate after the product:
n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)). Column j of the two pre-activations is
Σ_k r_k h_k U_kj against r_j Σ_k h_k U_kj: different functions, even with b_hn = 0, and equal
for every h exactly when r_k = r_j wherever U_kj ≠ 0 (r the same in every unit, r = 1 among
them; U_n diagonal). These tests show each statement numerically on the code's own step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.models import recurrent

N, D, H = 5, 3, 4


def _after_reset_step(p: recurrent.GRUParams, h_prev, x_t, b_hn):
    """One step of the PyTorch/cuDNN GRU with the code's parameter layout: the gates and the
    update as (GRU1), (GRU2), (GRU5); the candidate n = tanh(x W_x^n + b^n + r ⊙ (h U_n + b_hn))."""
    two_h = 2 * H
    a_z, a_r = jnp.split(x_t @ p.w_x[:, :two_h] + h_prev @ p.w_h[:, :two_h] + p.b[:two_h], 2, axis=-1)
    z, r = jax.nn.sigmoid(a_z), jax.nn.sigmoid(a_r)
    n = jnp.tanh(x_t @ p.w_x[:, two_h:] + p.b[two_h:] + r * (h_prev @ p.w_h[:, two_h:] + b_hn))
    return (1.0 - z) * n + z * h_prev  # PyTorch's h' = (1 − z) ⊙ n + z ⊙ h, which is (GRU5)


def _random(seed: int):
    """GRU parameters, h_{t−1} and x_t in float64, with biases away from zero."""
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    p = recurrent.GRUParams(jax.random.normal(ks[0], (D, 3 * H), jnp.float64),
                            jax.random.normal(ks[1], (H, 3 * H), jnp.float64),
                            0.5 * jax.random.normal(ks[2], (3 * H,), jnp.float64))
    return p, jax.random.normal(ks[3], (N, H), jnp.float64), jax.random.normal(ks[4], (N, D), jnp.float64)


def _with(p: recurrent.GRUParams, *, w_x=None, w_h=None, b=None) -> recurrent.GRUParams:
    return recurrent.GRUParams(p.w_x if w_x is None else w_x, p.w_h if w_h is None else w_h, p.b if b is None else b)


def _constant_reset(p: recurrent.GRUParams, value: float) -> recurrent.GRUParams:
    """r = σ(value) in every unit and every row: the r block of W_x and U zero, its bias ``value``."""
    r = slice(H, 2 * H)
    return _with(p, w_x=p.w_x.at[:, r].set(0.0), w_h=p.w_h.at[:, r].set(0.0), b=p.b.at[r].set(value))


def _diagonal_candidate(p: recurrent.GRUParams) -> recurrent.GRUParams:
    n = slice(2 * H, 3 * H)
    return _with(p, w_h=p.w_h.at[:, n].set(jnp.diag(jnp.diag(p.w_h[:, n]))))


def _both(p, h, x, b_hn=0.0):
    with_code = recurrent.gru_step_forward(p, h, x)[0]
    return np.asarray(with_code), np.asarray(_after_reset_step(p, h, x, b_hn))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_two_forms_differ_on_random_weights_even_with_b_hn_zero(seed):
    with jax.enable_x64(True):
        p, h, x = _random(seed)
        before, after = _both(p, h, x, b_hn=0.0)
        assert np.max(np.abs(before - after)) > 1e-2, "the reset-before and reset-after GRUs should differ"
        # the difference is r ⊙ (h U_n) against (r ⊙ h) U_n, nothing else
        r = jax.nn.sigmoid(x @ p.w_x[:, H:2 * H] + h @ p.w_h[:, H:2 * H] + p.b[H:2 * H])
        u_n = p.w_h[:, 2 * H:]
        assert np.max(np.abs(np.asarray(r * (h @ u_n) - (r * h) @ u_n))) > 1e-2


@pytest.mark.parametrize("seed", [0, 1])
def test_they_agree_when_the_reset_gate_is_all_ones(seed):
    with jax.enable_x64(True):
        p, h, x = _random(seed)
        p = _constant_reset(p, 50.0)  # σ(50) is 1.0 in float64
        before, after = _both(p, h, x, b_hn=0.0)
        np.testing.assert_allclose(before, after, rtol=0, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_they_agree_when_the_reset_gate_is_the_same_in_every_unit(seed):
    with jax.enable_x64(True):
        p, h, x = _random(seed)
        p = _constant_reset(p, -0.7)  # r = σ(−0.7) ≈ 0.33 everywhere: a scalar commutes with U_n
        before, after = _both(p, h, x, b_hn=0.0)
        np.testing.assert_allclose(before, after, rtol=0, atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_they_agree_when_u_n_is_diagonal(seed):
    with jax.enable_x64(True):
        p, h, x = _random(seed)
        p = _diagonal_candidate(p)  # unit j's candidate reads only h_j, scaled by r_j in both forms
        before, after = _both(p, h, x, b_hn=0.0)
        np.testing.assert_allclose(before, after, rtol=0, atol=1e-13)


def test_a_nonzero_b_hn_is_gated_too():
    """With b_hn ≠ 0 the after form adds r ⊙ b_hn: a diagonal U_n no longer makes the two equal,
    r = 1 with b^n_code = b_in + b_hn does."""
    with jax.enable_x64(True):
        p, h, x = _random(3)
        b_hn = 0.8 * jnp.ones(H, jnp.float64)
        before, after = _both(_diagonal_candidate(p), h, x, b_hn=b_hn)
        assert np.max(np.abs(before - after)) > 1e-3
        q = _constant_reset(p, 50.0)
        after = np.asarray(_after_reset_step(q, h, x, b_hn))
        before = np.asarray(recurrent.gru_step_forward(_with(q, b=q.b.at[2 * H:].add(b_hn)), h, x)[0])
        np.testing.assert_allclose(before, after, rtol=0, atol=1e-13)
