"""Sparse autoencoder: manual gradients vs jax.grad (tied and untied), cost terms, init."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.models import autoencoder as ae


def batch(key, n, d=256):
    return jax.random.uniform(key, (n, d), minval=0.1, maxval=0.9)


@pytest.mark.slow
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


@pytest.mark.slow
def test_tied_weight_decay_is_lambda_times_norm():
    p = ae.init_params(jax.random.PRNGKey(3), 8)
    x = batch(jax.random.PRNGKey(4), 5)
    terms = ae.cost_terms(p, x, ae.AEHyper(lam=0.01))
    np.testing.assert_allclose(float(terms["weight_decay"]), 0.01 * float(jnp.sum(p.w_enc ** 2)), rtol=1e-6)


@pytest.mark.slow
def test_sparsity_term_is_zero_at_target():
    p = ae.init_params(jax.random.PRNGKey(5), 4)
    x = batch(jax.random.PRNGKey(6), 10)
    rho = float(jnp.mean(ae.mean_hidden_activation(p, x)))
    p = p._replace(w_enc=jnp.zeros_like(p.w_enc), b_hid=jnp.full((4,), np.log(rho / (1 - rho))))
    np.testing.assert_allclose(float(ae.cost_terms(p, x, ae.AEHyper(rho=rho))["sparsity"]), 0.0, atol=1e-6)


@pytest.mark.slow
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


@pytest.mark.slow
def test_forward_shapes_and_mean_activation():
    p = ae.init_params(jax.random.PRNGKey(0), 10)
    x = batch(jax.random.PRNGKey(1), 6)
    o, cache = ae.forward(p, x)
    assert o.shape == (6, 256) and cache.h.shape == (6, 10)
    assert ((o > 0) & (o < 1)).all()
    np.testing.assert_allclose(np.asarray(ae.mean_hidden_activation(p, x)), np.asarray(cache.h.mean(0)), rtol=1e-6)


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- saturation, exactly
def _decimal_loss(theta: list, x: list, n_hid: int, tied: bool, hp: tuple):
    """J of docs/autoencoder.md in 60-digit decimal arithmetic, the parameters flattened as
    (W1, b1, b2[, W2]) row-major: an independent, extended-precision reference."""
    from decimal import Decimal

    one = Decimal(1)
    n, d = len(x), len(x[0])
    it = iter(theta)
    w1 = [[next(it) for _ in range(n_hid)] for _ in range(d)]
    b1 = [next(it) for _ in range(n_hid)]
    b2 = [next(it) for _ in range(d)]
    w2 = [[w1[i][b] for i in range(d)] for b in range(n_hid)] if tied else \
        [[next(it) for _ in range(d)] for _ in range(n_hid)]
    recon, h_sum, hc_sum = Decimal(0), [Decimal(0)] * n_hid, [Decimal(0)] * n_hid
    for xn in x:
        e = [(-(sum(xn[i] * w1[i][b] for i in range(d)) + b1[b])).exp() for b in range(n_hid)]
        h = [one / (one + eb) for eb in e]
        h_sum = [s + hb for s, hb in zip(h_sum, h)]
        hc_sum = [s + eb / (one + eb) for s, eb in zip(hc_sum, e)]
        for i in range(d):
            o = one / (one + (-(sum(h[b] * w2[b][i] for b in range(n_hid)) + b2[i])).exp())
            recon += (xn[i] - o) ** 2
    lam, beta, rho = (Decimal(v) for v in hp)
    sq = sum(w * w for row in w1 + w2 for w in row)
    kl = sum(rho * (rho / (hs / n)).ln() + (one - rho) * ((one - rho) / (hcs / n)).ln()
             for hs, hcs in zip(h_sum, hc_sum))
    return recon / (2 * n) + lam / 2 * sq + beta * kl


def _decimal_grad(params: ae.AEParams, x: np.ndarray, hp: tuple) -> list:
    """dJ/dθ by central differences in 60-digit arithmetic (step 1e-20: truncation ~1e-40,
    rounding ~1e-40), as float64 arrays shaped like (W1, b1, b2[, W2])."""
    import decimal
    from decimal import Decimal

    leaves = [np.asarray(v) for v in (params.w_enc, params.b_hid, params.b_out, params.w_dec) if v is not None]
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        theta = [Decimal(float(v)) for leaf in leaves for v in leaf.ravel()]  # exact: floats are binary
        xd = [[Decimal(float(v)) for v in row] for row in x]
        step = Decimal("1e-20")
        grad = []
        for k in range(len(theta)):
            up, down = list(theta), list(theta)
            up[k] += step
            down[k] -= step
            f = functools.partial(_decimal_loss, x=xd, n_hid=params.w_enc.shape[1], tied=params.tied, hp=hp)
            grad.append(float((f(up) - f(down)) / (2 * step)))
    out, i = [], 0
    for leaf in leaves:
        out.append(np.array(grad[i:i + leaf.size]).reshape(leaf.shape))
        i += leaf.size
    return out


def _leaves(g: ae.AEParams) -> list:
    return [np.asarray(v, np.float64) for v in (g.w_enc, g.b_hid, g.b_out, g.w_dec) if v is not None]


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False])
def test_gradients_at_saturation_match_an_extended_precision_reference(tied):
    """Hidden units saturated near 1 (pre-activations 14 to 20, 1 − ρ̂ down to 2e-9): the
    float64 gradients, manual and reference, within 1e-12 of a 60-digit one; float32 finite
    and within 1e-5. With 1 − ρ̂ and h(1 − h) by subtraction the float64 gradient of W1 is
    off by ~5e-8 there, and in float32 1 − ρ̂ is 0 (a NaN gradient)."""
    rng = np.random.default_rng(11)
    n, d, n_hid = 6, 5, 3
    x = rng.uniform(0.1, 0.9, (n, d))
    params = ae.AEParams(rng.uniform(-0.5, 0.5, (d, n_hid)), np.array([14.0, 17.0, 20.0]), rng.uniform(-0.5, 0.5, d),
                         None if tied else rng.uniform(-0.5, 0.5, (n_hid, d)))
    hp_values = (5e-4, 2.2, 0.05)
    hp = ae.AEHyper(*hp_values)
    exact = _decimal_grad(params, x, hp_values)

    with jax.enable_x64(True):
        a = np.asarray(x) @ params.w_enc + params.b_hid
        one_minus_rho_hat = (1 / (1 + np.exp(a))).mean(axis=0)
        naive = 1 - (1 / (1 + np.exp(-a))).mean(axis=0)
        # the regime is real: subtraction keeps < 9 correct digits of 1 − ρ̂ for the last unit
        assert np.abs(naive - one_minus_rho_hat)[-1] / one_minus_rho_hat[-1] > 1e-9
        p64 = jax.tree.map(jnp.asarray, params)
        _, manual = jax.jit(functools.partial(ae.loss_and_grad, hp=hp))(p64, jnp.asarray(x))
        reference = jax.jit(jax.grad(functools.partial(ae.loss, hp=hp)))(p64, jnp.asarray(x))
        assert manual.w_enc.dtype == jnp.float64
    for label, got in (("manual", manual), ("jax.grad of ae.loss", reference)):
        for name, g, e in zip(("w_enc", "b_hid", "b_out", "w_dec"), _leaves(got), exact):
            err = np.max(np.abs(g - e)) / np.max(np.abs(e))
            assert err <= 1e-12, f"{label} {name}: relative error {err:.2e} against the 60-digit gradient"

    p32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    _, g32 = jax.jit(functools.partial(ae.loss_and_grad, hp=hp))(p32, jnp.asarray(x, jnp.float32))
    for name, g, e in zip(("w_enc", "b_hid", "b_out", "w_dec"), _leaves(g32), exact):
        err = np.max(np.abs(g - e)) / np.max(np.abs(e))
        assert np.isfinite(g).all() and err <= 1e-5, f"float32 {name}: relative error {err:.2e}"


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False])
def test_value_and_gradients_where_the_sigmoid_underflows(tied):
    """Hidden pre-activations near −150, −100 and −20: in float32 σ(a) is exactly 0 for the
    first two units on every example (below about −87.3), so ρ̂ = 0, the textbook s of (AE12)
    is −∞ and h(1 − h) is 0: their product in (AE13) is NaN, and log ρ̂ in (AE9) is −∞. In the
    log domain (AE18-AE22) the cost and the gradients, manual and reference, are finite: in
    float64 within 1e-12 of a 60-digit reference, in float32 within 1e-5."""
    rng = np.random.default_rng(12)
    n, d, n_hid = 6, 5, 3
    x = rng.uniform(0.1, 0.9, (n, d))
    params = ae.AEParams(rng.uniform(-0.5, 0.5, (d, n_hid)), np.array([-150.0, -100.0, -20.0]),
                         rng.uniform(-0.5, 0.5, d), None if tied else rng.uniform(-0.5, 0.5, (n_hid, d)))
    hp_values = (5e-4, 10.0, 0.026)
    hp = ae.AEHyper(*hp_values)
    exact = _decimal_grad(params, x, hp_values)

    p32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    x32 = jnp.asarray(x, jnp.float32)
    h32 = jax.nn.sigmoid(x32 @ p32.w_enc + p32.b_hid)
    assert (np.asarray(h32)[:, :2] == 0).all()  # the regime is real: σ(a) underflows on the whole batch
    with jax.enable_x64(True):
        p64, x64 = jax.tree.map(jnp.asarray, params), jnp.asarray(x)
        value64, manual = jax.jit(functools.partial(ae.loss_and_grad, hp=hp))(p64, x64)
        reference = jax.jit(jax.grad(functools.partial(ae.loss, hp=hp)))(p64, x64)
        assert manual.w_enc.dtype == jnp.float64
    for label, got in (("manual", manual), ("jax.grad of ae.loss", reference)):
        for name, g, e in zip(("w_enc", "b_hid", "b_out", "w_dec"), _leaves(got), exact):
            err = np.max(np.abs(g - e)) / np.max(np.abs(e))
            assert err <= 1e-12, f"{label} {name}: relative error {err:.2e} against the 60-digit gradient"

    value32, g32 = jax.jit(functools.partial(ae.loss_and_grad, hp=hp))(p32, x32)
    ref32 = jax.jit(jax.value_and_grad(functools.partial(ae.loss, hp=hp)))(p32, x32)
    for v in (value32, ref32[0]):
        assert np.isfinite(float(v)) and float(v) == pytest.approx(float(value64), rel=1e-6)
    for label, got in (("manual", g32), ("jax.grad of ae.loss", ref32[1])):
        for name, g, e in zip(("w_enc", "b_hid", "b_out", "w_dec"), _leaves(got), exact):
            err = np.max(np.abs(g - e)) / np.max(np.abs(e))
            assert np.isfinite(g).all() and err <= 1e-5, f"float32 {label} {name}: relative error {err:.2e}"
