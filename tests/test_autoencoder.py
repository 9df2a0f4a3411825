"""Sparse autoencoder: manual gradients vs jax.grad (tied and untied), cost terms, init."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.models import autoencoder as ae
from mp_jax.testing import assert_grads_match


def jitted(hp):
    """The reference and the manual function, each compiled once (eager op-by-op dispatch
    would compile every primitive for every shape and dtype)."""
    return jax.jit(functools.partial(ae.loss, hp=hp)), jax.jit(functools.partial(ae.loss_and_grad, hp=hp))


def batch(key, n, d=256):
    return jax.random.uniform(key, (n, d), minval=0.1, maxval=0.9)


def np_case(seed, n, d, h, tied):
    """Parameters (as init_params draws them) and a batch, in numpy float64: the gradient
    check casts them without compiling anything."""
    rng = np.random.default_rng(seed)
    w0 = np.sqrt(6 / (d + h))
    params = ae.AEParams(rng.uniform(-w0, w0, (d, h)), rng.uniform(-w0, w0, h), rng.uniform(-w0, w0, d),
                         None if tied else rng.uniform(-w0, w0, (h, d)))
    return params, rng.uniform(0.1, 0.9, (n, d))


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("n,d,h", [(1, 256, 1), (33, 256, 25), (16, 64, 100)])
def test_gradients_match_autodiff(tied, n, d, h):
    params, x = np_case(n * 100 + h, n, d, h, tied)
    hp = ae.AEHyper(lam=1e-3, beta=3.0, rho=0.05)
    assert_grads_match(*jitted(hp), params, x)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("bias,rho", [(-7.0, 0.05), (7.0, 0.05)])
def test_gradients_match_with_saturated_mean_activation(tied, bias, rho):
    """ρ̂ near 0 (≈1e-3) and near 1 (≈0.999): the KL term and its gradient are large."""
    params, x = np_case(1, 12, 256, 9, tied)
    params = params._replace(w_enc=0.01 * params.w_enc, b_hid=np.full(9, bias))
    rho_hat = 1 / (1 + np.exp(-(x @ params.w_enc + params.b_hid))).mean(axis=0)
    assert (rho_hat < 2e-3).all() if bias < 0 else (rho_hat > 0.998).all()
    hp = ae.AEHyper(lam=5e-4, beta=2.2, rho=rho)
    rep = assert_grads_match(*jitted(hp), params, x)
    assert rep["float64"]["loss_ref"] > 1.0  # the sparsity term dominates, so it was really exercised


def test_loss_is_the_sum_of_its_terms_and_matches_the_reference():
    k1, k2 = jax.random.split(jax.random.PRNGKey(2))
    x = batch(k2, 20)
    hp = ae.AEHyper(lam=1e-3, beta=2.0, rho=0.1)
    for tied in (True, False):
        p = ae.init_params(k1, 16, tied=tied)
        terms = ae.cost_terms(p, x, hp)
        value, _ = ae.loss_and_grad(p, x, hp=hp)
        np.testing.assert_allclose(float(sum(terms.values())), float(value), rtol=1e-6)
        np.testing.assert_allclose(float(value), float(ae.loss(p, x, hp=hp)), rtol=1e-5)
        w2 = p.w_enc.T if tied else p.w_dec
        np.testing.assert_allclose(float(terms["weight_decay"]),
                                   0.5 * 1e-3 * float(jnp.sum(p.w_enc ** 2) + jnp.sum(w2 ** 2)), rtol=1e-6)
        o = ae.reconstruct(p, x)
        np.testing.assert_allclose(float(terms["reconstruction"]), float(jnp.sum((x - o) ** 2) / 40), rtol=1e-6)


def test_tied_weight_decay_is_lambda_times_norm():
    p = ae.init_params(jax.random.PRNGKey(3), 8)
    x = batch(jax.random.PRNGKey(4), 5)
    terms = ae.cost_terms(p, x, ae.AEHyper(lam=0.01))
    np.testing.assert_allclose(float(terms["weight_decay"]), 0.01 * float(jnp.sum(p.w_enc ** 2)), rtol=1e-6)


def test_sparsity_term_is_zero_at_target():
    p = ae.init_params(jax.random.PRNGKey(5), 4)
    x = batch(jax.random.PRNGKey(6), 10)
    rho = float(jnp.mean(ae.mean_hidden_activation(p, x)))
    p = p._replace(w_enc=jnp.zeros_like(p.w_enc), b_hid=jnp.full((4,), np.log(rho / (1 - rho))))
    np.testing.assert_allclose(float(ae.cost_terms(p, x, ae.AEHyper(rho=rho))["sparsity"]), 0.0, atol=1e-6)


def test_init_shapes_and_bounds():
    for tied in (True, False):
        p = ae.init_params(jax.random.PRNGKey(0), 64, tied=tied)
        w0 = np.sqrt(6 / (256 + 64))
        assert p.w_enc.shape == (256, 64) and p.b_hid.shape == (64,) and p.b_out.shape == (256,)
        assert p.tied == tied and (p.w_dec is None) == tied
        if not tied:
            assert p.w_dec.shape == (64, 256)
        for leaf in jax.tree.leaves(p):
            assert np.abs(np.asarray(leaf)).max() <= w0
            assert np.abs(np.asarray(leaf)).max() > 0.9 * w0  # uniform over the whole interval


def test_forward_shapes_and_mean_activation():
    p = ae.init_params(jax.random.PRNGKey(0), 10)
    x = batch(jax.random.PRNGKey(1), 6)
    o, cache = ae.forward(p, x)
    assert o.shape == (6, 256) and cache.h.shape == (6, 10)
    assert ((o > 0) & (o < 1)).all()
    np.testing.assert_allclose(np.asarray(ae.mean_hidden_activation(p, x)), np.asarray(cache.h.mean(0)), rtol=1e-6)


def test_hyperparameters_are_traced_arguments():
    """One compilation serves several (λ, β, ρ): the hyperparameters are data, not constants."""
    p = ae.init_params(jax.random.PRNGKey(0), 6)
    x = batch(jax.random.PRNGKey(1), 8)
    f = jax.jit(ae.loss_and_grad)
    a = f(p, x, hp=ae.AEHyper(1e-3, 2.0, 0.05))
    b = f(p, x, hp=ae.AEHyper(5e-4, 10.0, 0.2))
    assert f._cache_size() == 1
    assert float(a[0]) != float(b[0])
    np.testing.assert_allclose(float(b[0]), float(ae.loss(p, x, hp=ae.AEHyper(5e-4, 10.0, 0.2))), rtol=1e-5)
