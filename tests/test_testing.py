"""The gradient-check helper itself: it must catch a wrong backward and name the leaf."""
import jax.numpy as jnp
import pytest

from mp_jax.testing import assert_grads_match


def loss(p, b):
    return jnp.sum(p["a"] ** 2 * b) + jnp.sum(jnp.sin(p["c"]))


def good(p, b):
    return loss(p, b), {"a": 2 * p["a"] * b, "c": jnp.cos(p["c"])}


def bad(p, b):  # 1e-6 relative error in leaf "c": fine in float32, caught in float64
    return loss(p, b), {"a": 2 * p["a"] * b, "c": jnp.cos(p["c"]) * (1 + 1e-6)}


PARAMS = {"a": jnp.arange(1.0, 4.0), "c": jnp.linspace(0.1, 1.0, 4)}
BATCH = jnp.array([0.5, -1.0, 2.0])


def test_accepts_correct_gradients():
    reports = assert_grads_match(loss, good, PARAMS, BATCH)
    assert set(reports) == {"float64", "float32"}
    assert max(reports["float64"]["leaves"].values()) < 1e-12


def test_names_the_worst_leaf():
    with pytest.raises(AssertionError, match=r"float64.*worst leaf \['c'\]"):
        assert_grads_match(loss, bad, PARAMS, BATCH)


def test_rejects_a_wrong_loss_value():
    with pytest.raises(AssertionError, match="loss mismatch"):
        assert_grads_match(loss, lambda p, b: (loss(p, b) + 1.0, good(p, b)[1]), PARAMS, BATCH)
