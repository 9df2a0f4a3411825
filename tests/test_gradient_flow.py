"""The gradient flow's slope predicted from the forward pass (docs/recurrent.md, "Predicting the
slope of the gradient flow": RNN8, BPTT7, BPTT8), checked on cells whose factor per step is known
in closed form, and the LSTM's forget-gate bias at initialisation."""
import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import q3_activity as q3
from experiments.q3_activity import Q3Config
from mp_jax.models import recurrent
from mp_jax.protocols import activity

D, H, M, C, N, T = 3, 4, 5, 3, 6, 30
FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _classifier(cell, **cell_fields):
    """A float64 classifier whose cell is ``cell`` with ``cell_fields`` replaced, the head's
    ReLU layer open (b_mlp = 1: with h_T = 0 every unit passes the gradient)."""
    p = recurrent.init_params(jax.random.PRNGKey(3), cell, D, H, M, C, jnp.float64)
    return p._replace(cell=p.cell._replace(**cell_fields), b_mlp=jnp.ones(M))


def _zero_windows():
    """x = 0: with zero biases for the candidate the state stays 0, so every step's Jacobian is
    the same and the factor per step is known exactly."""
    return np.zeros((N, T, D)), np.arange(N) % C


def _predict(params):
    data = _zero_windows()
    g = activity.gradient_flow(params, data)
    return g, activity.gradient_prediction(params, data, g)


@pytest.mark.slow  # the LSTM's case below stays in the fast tier
def test_rnn_factor_is_the_spectral_radius_of_a_scaled_orthogonal_w_h():
    # h_t = 0, tanh' = 1: each step multiplies dh by a Q^T, so ||dh_t|| = a^(T-t) ||dh_T|| exactly
    a = 0.8
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(H, H)))
    with jax.enable_x64(True):
        g, p = _predict(_classifier("rnn", w_h=jnp.asarray(a * q), b=jnp.zeros(H)))
    np.testing.assert_allclose(np.asarray(g[:-1]) / np.asarray(g[1:]), a, rtol=1e-9)  # g_{t-1} = a g_t
    assert p["mean_tanh_prime"] == pytest.approx(1.0) and p["w_h_spectral_radius"] == pytest.approx(a)
    for key in ("factor_measured", "factor_path", "factor_whole"):
        assert p[key] == pytest.approx(a, rel=1e-6), key
    assert p["fit_steps"] == [1, T - 1]


@pytest.mark.slow
def test_gru_path_alone_is_z_and_the_whole_step_adds_the_candidate_path():
    # h_t = 0, n = 0: dh_{t-1} = dh (z + (1 - z) w r) (GRU11 with U_n = w I); the direct path alone gives z
    bz, w = 0.8, 0.5
    z, r = _sigmoid(bz), 0.5
    u = np.concatenate([np.random.default_rng(1).normal(size=(H, 2 * H)), w * np.eye(H)], axis=1)
    with jax.enable_x64(True):
        g, p = _predict(_classifier("gru", w_h=jnp.asarray(u), b=jnp.zeros(3 * H).at[:H].set(bz)))
    whole = z + (1 - z) * w * r
    assert p["mean_gate"] == pytest.approx(z)
    assert p["factor_path"] == pytest.approx(z, rel=1e-6)
    assert p["factor_measured"] == pytest.approx(whole, rel=1e-6)
    assert p["factor_whole"] == pytest.approx(whole, rel=1e-6)


def test_lstm_path_alone_is_f_and_the_whole_step_adds_the_path_through_w_h():
    # g = 0 keeps c = h = 0; with W_h = [0, 0, w I, 0] the pair (dh, dc) goes back through the rank-one map
    # dh_{t-1} = w i (dc_t + o dh_t), dc_{t-1} = f (dc_t + o dh_t): its factor is f + o i w; the cell path alone f
    bi, bf, bo, w = 0.3, -0.2, 0.6, 0.7
    i, f, o = _sigmoid(bi), _sigmoid(bf), _sigmoid(bo)
    w_h = np.zeros((H, 4 * H))
    w_h[:, 2 * H:3 * H] = w * np.eye(H)
    b = np.concatenate([np.full(H, bi), np.full(H, bf), np.zeros(H), np.full(H, bo)])
    with jax.enable_x64(True):
        g, p = _predict(_classifier("lstm", w_h=jnp.asarray(w_h), b=jnp.asarray(b)))
    assert p["mean_gate"] == pytest.approx(f)
    assert p["factor_path"] == pytest.approx(f, rel=1e-6)
    assert p["factor_measured"] == pytest.approx(f + o * i * w, rel=1e-6)
    assert p["factor_whole"] == pytest.approx(f + o * i * w, rel=1e-6)
    # the predicted curves are anchored at the measured g_T
    assert p["log10_predicted"][-1] == pytest.approx(np.log10(g[-1])) == p["log10_whole"][-1]


def test_a_gradient_whose_squares_underflow_is_not_read_as_zero():
    dh = jnp.full((2, 1, 8), 1e-25, jnp.float32)  # each square, 1e-50, is below float32's range
    assert float(jnp.linalg.norm(dh[0, 0])) == 0.0
    np.testing.assert_allclose(np.asarray(activity._norms(dh)), 1e-25 * np.sqrt(8), rtol=1e-5)
    assert float(activity._norms(jnp.zeros((1, 3)))[0]) == 0.0


def test_the_forget_bias_sets_the_lstm_forget_block_only():
    key = jax.random.PRNGKey(0)
    p0 = recurrent.init_params(key, "lstm", D, H, M, C)
    p1 = recurrent.init_params(key, "lstm", D, H, M, C, forget_bias=1.0)
    np.testing.assert_array_equal(np.asarray(p1.cell.b), np.repeat([0.0, 1.0, 0.0, 0.0], H))
    np.testing.assert_array_equal(np.asarray(p1.cell.w_h), np.asarray(p0.cell.w_h))  # the same weights
    with pytest.raises(ValueError, match="no forget gate"):
        recurrent.init_params(key, "gru", D, H, M, C, forget_bias=1.0)
    c = dataclasses.replace(Q3Config(hidden=H, mlp=M), forget_bias=1.0)
    lstm, _ = activity.member_init("lstm", activity.member_key(0, "lstm"), D, c, C)
    gru, _ = activity.member_init("gru", activity.member_key(0, "gru"), D, c, C)  # the bias is the LSTM's alone
    assert float(lstm.cell.b[H]) == 1.0 and not np.any(np.asarray(gru.cell.b))


def test_the_ablation_is_named_apart_and_checked_against_the_seeds():
    assert activity.ablation_name(1.0) == "lstm_forget_bias_1"
    assert activity.ablation_name(0.5) == "lstm_forget_bias_0p5"
    assert Q3Config().ablation_seeds == 1 and Q3Config().forget_bias == 0.0
    assert any("--ablation-seeds" in e for e in Q3Config(seeds=1, ablation_seeds=2).usage_errors())
    assert not Q3Config(seeds=3, ablation_seeds=3).usage_errors()
    assert any("--ablation-seeds" in e for e in Q3Config(refit=False, seeds=1).usage_errors())
    c = Q3Config.from_args(argparse.Namespace(quick=False, forget_bias=q3.parse_bias("0.5"), ablation_seeds=0))
    assert (c.forget_bias, c.ablation_seeds, c.ablation_forget_bias) == (0.5, 0, 1.0)
    with pytest.raises(argparse.ArgumentTypeError, match="--forget-bias"):
        q3.parse_bias("nan")
