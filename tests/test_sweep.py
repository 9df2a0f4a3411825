"""vmapped sweeps: every member equals the same run trained alone."""
import functools
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import pytest

from mp_jax.engine import sweep, train
from mp_jax.models import mlp

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)


class HP(NamedTuple):
    lam: jax.Array


def loss_and_grad(params, batch, hp):
    value, g = mlp.loss_and_grad(params, batch)
    value = value + 0.5 * hp.lam * jnp.sum(params.w_in ** 2)
    return value, g._replace(w_in=g.w_in + hp.lam * params.w_in)


def metrics(params, batch, hp):
    return {"loss": loss_and_grad(params, batch, hp)[0]}


def blobs(n, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    y = jax.random.randint(k1, (n,), 0, 3)
    c = jnp.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return c[y] + 0.9 * jax.random.normal(k2, (n, 2)), y


@pytest.mark.slow
@pytest.mark.parametrize("patience", [None, 2])
def test_each_member_equals_its_run_alone(patience):
    with jax.enable_x64(True):
        data = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, blobs(90))
        val = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, blobs(60, 5))
        lams = jnp.array([0.0, 1e-2, 3e-1])
        inits = [jax.tree.map(lambda a: a.astype(jnp.float64), mlp.init_params(jax.random.PRNGKey(i), 2, 8, 3))
                 for i in range(3)]
        keys = jnp.stack([jax.random.PRNGKey(10 + i) for i in range(3)])
        cfg = train.FitConfig(epochs=8, batch_size=16, patience=patience)
        opt = train.sgd_momentum(0.3, 0.9)
        res = sweep.fit_sweep(loss_and_grad, opt, sweep.stack(inits), data, cfg, keys=keys, hps=HP(lams),
                              val_data=val, metrics_fn=metrics, progress=False)
        for i in range(3):
            hp = HP(lams[i])
            alone = train.fit(functools.partial(loss_and_grad, hp=hp), opt, inits[i], data, cfg, key=keys[i],
                              val_data=val, metrics_fn=functools.partial(metrics, hp=hp), progress=False)
            chex.assert_trees_all_close(sweep.unstack(res.params, i), alone.params, rtol=1e-10, atol=1e-12)
            chex.assert_trees_all_close(sweep.unstack(res.last_params, i), alone.last_params, rtol=1e-10, atol=1e-12)
            assert res.best_epochs[i] == alone.best_epoch and res.epochs_run[i] == alone.epochs_run
            assert res.stopped_early[i] == alone.stopped_early
            assert jnp.allclose(jnp.array(res.histories[i]["val_loss"]), jnp.array(alone.history["val_loss"]), rtol=1e-10)
        if patience:
            assert min(res.epochs_run) < 8 and any(res.stopped_early)  # at least one member actually stopped early
        assert res.seconds >= res.compile_seconds > 0


@pytest.mark.slow
def test_seed_sweep_without_hyperparameters():
    data = blobs(64)
    inits = [mlp.init_params(jax.random.PRNGKey(i), 2, 8, 3) for i in range(2)]
    keys = jnp.stack([jax.random.PRNGKey(i) for i in range(2)])
    cfg = train.FitConfig(epochs=3, batch_size=16)
    res = sweep.fit_sweep(mlp.loss_and_grad, train.sgd_momentum(0.1, 0.9), sweep.stack(inits), data, cfg,
                          keys=keys, progress=False)
    alone = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.1, 0.9), inits[1], data, cfg, key=keys[1], progress=False)
    chex.assert_trees_all_close(sweep.unstack(res.last_params, 1), alone.last_params, rtol=1e-5, atol=1e-6)
    assert len(res.histories) == 2 and len(res.histories[0]["train_loss"]) == 3
