"""Pytree helpers: per-member select, all-finite (whole tree and per member), stacking."""
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import trees


def test_select_takes_new_where_the_mask_is_true():
    new = {"a": jnp.arange(6.0).reshape(3, 2), "b": jnp.array([1, 2, 3])}
    old = {"a": -jnp.ones((3, 2)), "b": jnp.zeros(3, jnp.int32)}
    out = trees.select(np.array([True, False, True]), new, old)
    np.testing.assert_array_equal(out["a"], [[0, 1], [-1, -1], [4, 5]])
    np.testing.assert_array_equal(out["b"], [1, 0, 3])
    assert trees.select(np.ones(3, bool), new, old) is new  # all members: no work
    np.testing.assert_array_equal(trees.select(jnp.array([False, False, True]), new, old)["b"], [0, 0, 3])


def test_all_finite():
    tree = {"w": jnp.ones((2, 3)), "n": jnp.array([7]), "b": jnp.zeros(2)}
    assert bool(trees.all_finite(tree))
    bad = dict(tree, w=tree["w"].at[1, 2].set(jnp.nan))
    assert not bool(trees.all_finite(bad))
    np.testing.assert_array_equal(trees.all_finite(bad, per_member=True), [True, False])
    assert bool(trees.all_finite({"count": jnp.array([1, 2])}))  # integers only: finite
    with pytest.raises(ValueError, match="floating-point leaf"):
        trees.all_finite({"count": jnp.array([1, 2])}, per_member=True)


def test_stack_unstack_and_difference():
    a, b = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.5, 2.0])}
    s = trees.stack([a, b])
    assert s["w"].shape == (2, 2)
    np.testing.assert_array_equal(trees.unstack(s, 1)["w"], b["w"])
    assert trees.max_abs_difference([a], [b]) == pytest.approx(0.5)
