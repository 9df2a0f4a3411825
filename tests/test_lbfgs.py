"""Full-batch L-BFGS on manual gradients: it converges, it uses the manual gradient, it
reuses one compilation across hyperparameters, and it stops on non-finite values."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax import lbfgs
from mp_jax.train import NonFiniteError

A = jnp.array([[3.0, 0.5], [0.5, 1.0]])


def quadratic(params, batch, scale=1.0):
    """J = ½ (p − b)ᵀ A (p − b) · scale, with its manual gradient."""
    r = params["p"] - batch
    return 0.5 * scale * r @ A @ r, {"p": scale * A @ r}


def test_minimises_a_quadratic():
    target = jnp.array([1.0, -2.0])
    res = lbfgs.minimize(quadratic, {"p": jnp.zeros(2)}, target, lbfgs.LbfgsConfig(max_iter=30, chunk=10), progress=False)
    np.testing.assert_allclose(np.asarray(res.params["p"]), np.asarray(target), atol=1e-5)
    assert res.converged and res.iterations <= 30
    assert res.history["value"][0] > res.history["value"][-1]
    assert len(res.history["grad_norm"]) == res.iterations


def test_line_search_sees_the_manual_gradient():
    def doubled(params, batch):  # a deliberately different "manual" gradient
        v, g = quadratic(params, batch)
        return v, {"p": 2.0 * g["p"]}

    value_fn = lbfgs.manual_value_fn(doubled, jnp.array([1.0, 1.0]))
    p = {"p": jnp.array([0.0, 3.0])}
    g_auto = jax.grad(lambda q: quadratic(q, jnp.array([1.0, 1.0]))[0])(p)
    np.testing.assert_allclose(np.asarray(jax.grad(value_fn)(p)["p"]), 2.0 * np.asarray(g_auto["p"]), rtol=1e-6)


def test_keyword_arguments_are_traced_not_recompiled():
    cfg = lbfgs.LbfgsConfig(max_iter=5, chunk=5, memory_size=7)
    fn = lbfgs.make_chunk_fn(quadratic, cfg)
    before = fn._cache_size()
    a = lbfgs.minimize(quadratic, {"p": jnp.zeros(2)}, jnp.ones(2), cfg, fn_kwargs={"scale": 1.0}, progress=False)
    b = lbfgs.minimize(quadratic, {"p": jnp.zeros(2)}, jnp.ones(2), cfg._replace(max_iter=10), fn_kwargs={"scale": 3.0},
                       progress=False)
    assert fn._cache_size() - before == 1
    assert a.history["value"][0] * 3.0 == pytest.approx(b.history["value"][0])


def test_non_finite_value_stops_with_a_clear_error():
    def blows_up(params, batch):
        return jnp.sum(jnp.exp(params["p"] * batch)), {"p": -jnp.exp(params["p"] * batch) * jnp.inf}

    with pytest.raises(NonFiniteError, match="non-finite"):
        lbfgs.minimize(blows_up, {"p": jnp.zeros(2)}, jnp.ones(2), lbfgs.LbfgsConfig(max_iter=4, chunk=2), progress=False)
