"""Q2's tuned network: dropout on the hidden layer (LM11-LM14). The gradients are the gradient
table's (registry "lm-dropout"); here, what the mask is and what training does with it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import train
from mp_jax.models import language_model as lm
from mp_jax.models import language_model_dropout as lmd


def _batch(n=6, v=12, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.integers(0, v, (n, 3)), jnp.int32), jnp.asarray(rng.integers(0, v, n), jnp.int32),
            jnp.asarray(rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)))


def test_the_mask_keeps_one_minus_q_of_the_units_and_each_row_follows_its_own_seed(fast_compile):
    seeds = jnp.arange(4000, dtype=jnp.uint32)
    m = np.asarray(lmd.keep_mask(seeds, 64, 0.4))
    assert m.shape == (4000, 64) and set(np.unique(m)) == {0.0, 1.0}
    assert abs(m.mean() - 0.6) < 0.01  # 256,000 draws: the standard error is 0.001
    # a row is its seed's alone: the same seed in another place of another batch draws the same row
    again = np.asarray(lmd.keep_mask(seeds[::-1][:10], 64, 0.4))
    np.testing.assert_array_equal(again, m[::-1][:10])
    assert not np.array_equal(m[0], m[1])
    assert np.all(np.asarray(lmd.keep_mask(seeds[:5], 8, 0.0)) == 1.0)


def test_at_rate_zero_the_loss_and_gradients_are_the_plain_networks(fast_compile):
    with jax.enable_x64(True):
        params = lm.init_params(jax.random.PRNGKey(0), 12, 4, 8, std=0.5, dtype=jnp.float64)
        ids, y, seeds = _batch()
        value, grads = jax.jit(lambda p, b: lmd.loss_and_grad(p, b, rate=0.0))(params, (ids, y, seeds))
        ref_value, ref_grads = jax.jit(lm.loss_and_grad)(params, (ids, y))
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    for a, b in zip(grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_a_dropped_unit_gets_no_output_weight_gradient_and_passes_none_back(fast_compile):
    with jax.enable_x64(True):
        params = lm.init_params(jax.random.PRNGKey(1), 12, 4, 8, std=0.5, dtype=jnp.float64)
        ids, y, seeds = _batch(n=1)
        _, grads, named = jax.jit(lambda p, b: lmd.loss_grad_and_intermediates(p, b, rate=0.5))(params, (ids, y, seeds))
        m = np.asarray(lmd.keep_mask(seeds, 8, 0.5))[0]
    assert 0 < m.sum() < 8  # this seed drops some units and keeps others
    dropped = m == 0
    assert np.all(np.asarray(grads.w_out)[dropped] == 0) and np.all(np.asarray(named["dh"])[0, dropped] == 0)
    assert np.all(np.asarray(grads.b_hid)[dropped] == 0)
    assert np.all(np.abs(np.asarray(grads.w_out)[~dropped]).sum(axis=1) > 0)


def test_fresh_seeds_redraw_the_masks_every_epoch_and_keep_the_examples():
    ids, y, seeds = _batch(n=50)
    a = lmd.FreshSeeds()(jax.random.PRNGKey(0), (ids, y, seeds))
    b = lmd.FreshSeeds()(jax.random.PRNGKey(1), (ids, y, seeds))
    assert a[0] is ids and a[1] is y and a[2].dtype == jnp.uint32 and a[2].shape == seeds.shape
    assert not np.array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[2], lmd.FreshSeeds()(jax.random.PRNGKey(0), (ids, y, seeds))[2])
    ids2, y2, s2 = lmd.with_seeds(ids, y)
    assert ids2 is ids and s2.dtype == jnp.uint32 and not np.any(np.asarray(s2))


@pytest.mark.slow
def test_training_with_dropout_lowers_the_clean_validation_loss(fast_compile):
    """The engine with the dropout gradient and FreshSeeds: the plain network it trains improves."""
    import functools

    rng = np.random.default_rng(0)
    v = 20
    ids = rng.integers(0, v, (600, 3))
    y = (ids[:, 2] + 1) % v  # the next word follows from the last one
    data = lmd.with_seeds(jnp.asarray(ids, jnp.int32), jnp.asarray(y, jnp.int32))
    val = (jnp.asarray(ids[:200], jnp.int32), jnp.asarray(y[:200], jnp.int32))
    params = lm.init_params(jax.random.PRNGKey(0), v, 4, 16, std=0.1)
    before = float(lm.metrics(params, val)["loss"])
    res = train.fit(functools.partial(lmd.loss_and_grad, rate=0.3), train.sgd_momentum(0.5, 0.9), params, data,
                    train.FitConfig(epochs=8, batch_size=50, augment=lmd.FreshSeeds()), key=jax.random.PRNGKey(1),
                    val_data=val, metrics_fn=lm.metrics)
    assert res.history["val_loss"][-1] < 0.5 * before
