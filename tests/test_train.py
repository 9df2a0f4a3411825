"""The training engine: learning, remainder batches, early stopping, non-finite stops, tracing."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mp_jax.engine import train
from mp_jax.models import mlp


def blobs(n, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    y = jax.random.randint(k1, (n,), 0, 3)
    centers = jnp.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centers[y] + 0.5 * jax.random.normal(k2, (n, 2)), y


@pytest.mark.slow
def test_loss_falls_on_a_learnable_problem():
    data = blobs(500)
    params = mlp.init_params(jax.random.PRNGKey(1), 2, 16, 3)
    res = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9), params, data,
                    train.FitConfig(epochs=10, batch_size=32), key=jax.random.PRNGKey(2),
                    val_data=blobs(200, key=5), metrics_fn=mlp.metrics, progress=False)
    h = res.history
    assert h["train_loss"][-1] < 0.3 * h["train_loss"][0]
    assert h["val_accuracy"][-1] > 0.9
    assert len(h["train_loss"]) == len(h["val_loss"]) == len(h["epoch_seconds"]) == 10


def test_epoch_visits_the_remainder_batch():
    """With N = 10 and batch 4, the last 2 examples must be trained on too."""
    seen = []

    def loss_and_grad(p, batch):
        return jnp.sum(batch) * 0.0, jax.tree.map(lambda w: jnp.zeros_like(w) + jnp.sum(batch), p)

    epoch = train.make_epoch_fn(loss_and_grad, optax.sgd(1.0), batch_size=4)
    params = {"w": jnp.zeros(())}
    data = jnp.arange(10.0)
    params, _, _, _ = epoch(params, optax.sgd(1.0).init(params), jax.random.PRNGKey(0), data)
    # every example contributes exactly once: w = -sum(all batches' sums) = -45
    assert float(params["w"]) == pytest.approx(-45.0)


def test_eval_weights_by_batch_size():
    data = jnp.arange(10.0)
    ev = train.make_eval_fn(lambda p, b: {"loss": jnp.mean(b)}, batch_size=4)
    assert float(ev({}, data)["loss"]) == pytest.approx(4.5)


@pytest.mark.slow
def test_early_stopping_returns_the_best_epochs_parameters():
    """A learning rate that first helps then overfits a tiny training set."""
    x, y = blobs(40, key=3)
    y = jnp.where(jnp.arange(40) % 3 == 0, (y + 1) % 3, y)  # label noise to memorise
    val = blobs(400, key=4)
    params = mlp.init_params(jax.random.PRNGKey(0), 2, 64, 3)
    snapshots = {}
    res = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.2, 0.9), params, (x, y),
                    train.FitConfig(epochs=200, batch_size=8, patience=5), key=jax.random.PRNGKey(1),
                    val_data=val, metrics_fn=mlp.metrics, progress=False,
                    on_epoch_end=lambda s: snapshots.__setitem__(s.epoch, s.params))
    assert res.stopped_early and res.epochs_run < 200
    assert res.epochs_run == res.best_epoch + 5
    best = int(np.argmin(res.history["val_loss"])) + 1
    assert res.best_epoch == best
    chex.assert_trees_all_equal(res.params, snapshots[best])
    assert not jnp.allclose(res.last_params.w_in, res.params.w_in)


@pytest.mark.slow
def test_nan_in_the_data_stops_training_with_the_epoch():
    x, y = blobs(100)
    x = x.at[37, 1].set(jnp.nan)
    params = mlp.init_params(jax.random.PRNGKey(0), 2, 8, 3)
    with pytest.raises(train.NonFiniteError, match=r"non-finite at epoch 1 .*kept the parameters from the end of epoch 0") as e:
        train.fit(mlp.loss_and_grad, train.sgd_momentum(0.1, 0.9), params, (x, y),
                  train.FitConfig(epochs=3, batch_size=16), key=jax.random.PRNGKey(0), progress=False)
    assert e.value.epoch == 1
    chex.assert_trees_all_equal(e.value.last_good_params, params)


@pytest.mark.slow
def test_a_non_finite_epoch_names_its_step_and_the_last_finite_loss():
    """The diverged epoch is replayed step by step: the step is the minibatch that holds the
    NaN example (by the epoch's own permutation) and the last finite loss is the step before's."""
    x, y = blobs(100)
    x = x.at[37, 1].set(jnp.nan)
    params, key, bs = mlp.init_params(jax.random.PRNGKey(0), 2, 8, 3), jax.random.PRNGKey(3), 16
    opt = train.sgd_momentum(0.1, 0.9)
    perm = np.asarray(jax.random.permutation(jax.random.split(key)[1], 100))  # the first epoch's order
    expected = int(np.flatnonzero(perm == 37)[0]) // bs + 1
    assert expected > 1  # a step with a finite loss comes before it
    step, p, s, loss = jax.jit(train.make_train_step(mlp.loss_and_grad, opt)), params, opt.init(params), None
    for k in range(expected - 1):
        idx = perm[k * bs:(k + 1) * bs]
        p, s, loss = step(p, s, (x[idx], y[idx]))
    with pytest.raises(train.NonFiniteError) as e:
        train.fit(mlp.loss_and_grad, opt, params, (x, y), train.FitConfig(epochs=3, batch_size=bs), key=key,
                  progress=False)
    assert e.value.epoch == 1 and e.value.step == expected
    assert e.value.last_loss == pytest.approx(float(loss), rel=1e-6)
    assert f"at step {expected} of 7, last finite minibatch loss" in str(e.value)


def test_divergence_keeps_the_last_good_parameters():
    """A quadratic with a far too large step grows geometrically until it overflows."""
    def loss_and_grad(p, x):
        c = jnp.mean(x * x)
        return c * p["w"] ** 2, {"w": 2.0 * c * p["w"]}

    params = {"w": jnp.ones(())}
    seen = []
    with pytest.raises(train.NonFiniteError, match="became non-finite at epoch") as e:
        train.fit(loss_and_grad, optax.sgd(50.0), params, jnp.ones((64,)),
                  train.FitConfig(epochs=200, batch_size=16), key=jax.random.PRNGKey(0), progress=False,
                  on_epoch_end=seen.append)
    assert 1 < e.value.epoch < 200 and e.value.epoch == len(seen) + 1
    chex.assert_trees_all_equal(e.value.last_good_params, seen[-1].params)
    chex.assert_tree_all_finite(e.value.last_good_params)


def test_the_epoch_is_traced_once():
    """Several epochs through fit compile the epoch once: the loss is traced once for the
    scanned full batches and once for the remainder batch, and never again."""
    x, y = blobs(100)  # 100 = 3 * 32 + 4: full batches and a remainder
    counted = chex.assert_max_traces(mlp.loss_and_grad, n=2)
    params = mlp.init_params(jax.random.PRNGKey(0), 2, 8, 3)
    chex.clear_trace_counter()
    res = train.fit(counted, train.sgd_momentum(0.1, 0.9), params, (x, y),
                    train.FitConfig(epochs=6, batch_size=32), key=jax.random.PRNGKey(0),
                    metrics_fn=mlp.metrics, val_data=blobs(50, 9), progress=False)
    assert res.epochs_run == 6


@pytest.mark.slow
def test_resuming_from_a_state_continues_identically():
    data = blobs(300)
    params = mlp.init_params(jax.random.PRNGKey(1), 2, 16, 3)
    opt = train.sgd_momentum(0.05, 0.9)
    cfg = train.FitConfig(epochs=6, batch_size=32)
    full = train.fit(mlp.loss_and_grad, opt, params, data, cfg, key=jax.random.PRNGKey(2), progress=False)
    states = []
    train.fit(mlp.loss_and_grad, opt, params, data, train.FitConfig(epochs=3, batch_size=32),
              key=jax.random.PRNGKey(2), progress=False, on_epoch_end=states.append)
    resumed = train.fit(mlp.loss_and_grad, opt, params, data, cfg, key=jax.random.PRNGKey(99),
                        state=states[-1], progress=False)
    chex.assert_trees_all_equal(resumed.last_params, full.last_params)
    assert resumed.history["train_loss"] == full.history["train_loss"]


def test_clipping_bounds_the_update():
    opt = train.sgd_momentum(1.0, 0.0, clip_norm=1.0)
    g = {"a": jnp.full((4,), 100.0)}
    updates, _ = opt.update(g, opt.init(g))
    assert math.isclose(float(optax.tree.norm(updates)), 1.0, rel_tol=1e-5)


def test_epoch_mean_loss_is_summed_in_the_parameters_dtype():
    """float64 parameters: the epoch's mean loss keeps float64 precision (a float32 sum would
    round 1 + k·1e-12 to 1)."""
    def loss_and_grad(p, batch):
        return p["w"] + jnp.sum(batch), {"w": jnp.zeros_like(p["w"])}

    data = jnp.arange(12.0) * 1e-12
    with jax.enable_x64(True):
        params = {"w": jnp.ones((), jnp.float64)}
        epoch = train.make_epoch_fn(loss_and_grad, optax.sgd(0.0), batch_size=4)
        _, _, mean, _ = epoch(params, optax.sgd(0.0).init(params), jax.random.PRNGKey(0), data.astype(jnp.float64))
        assert mean.dtype == jnp.float64
        # every example in exactly one batch of 4: mean = 1 + 4 · mean(data) (the remainder: none)
        assert float(mean) - 1.0 == pytest.approx(4 * float(jnp.mean(data.astype(jnp.float64))), rel=1e-9)
        res = train.fit(loss_and_grad, optax.sgd(0.0), params, data.astype(jnp.float64),
                        train.FitConfig(epochs=1, batch_size=5), key=jax.random.PRNGKey(0), progress=False)
        assert res.history["train_loss"][0] != 1.0  # 10 examples in batches of 5 and one of 2
    f32 = train.make_epoch_fn(loss_and_grad, optax.sgd(0.0), batch_size=4)
    p32 = {"w": jnp.ones((), jnp.float32)}
    assert f32(p32, optax.sgd(0.0).init(p32), jax.random.PRNGKey(0), data)[2].dtype == jnp.float32


def test_early_stopping_rule_for_a_run_and_for_members():
    es = train.EarlyStopping(patience=2)
    improved, best, bad = es.update(1.0, np.inf, 0)
    assert improved is True and best == 1.0 and bad == 0
    improved, best, bad = es.update(1.0, best, bad)  # not strictly lower
    assert improved is False and best == 1.0 and bad == 1 and not es.exhausted(bad)
    _, _, bad = es.update(2.0, best, bad)
    assert es.exhausted(bad) is True
    # members: the same rule per member; an inactive member keeps its count
    improved, best, bad = es.update(np.array([0.5, 3.0, 0.1]), np.array([1.0, 1.0, 1.0]), np.array([1, 1, 1]),
                                    active=np.array([True, True, False]))
    np.testing.assert_array_equal(improved, [True, False, False])
    np.testing.assert_array_equal(best, [0.5, 1.0, 1.0])
    np.testing.assert_array_equal(bad, [0, 2, 1])
    np.testing.assert_array_equal(es.exhausted(bad), [False, True, False])
    never = train.EarlyStopping(None)
    assert never.exhausted(1000) is False and not never.exhausted(np.array([5, 9])).any()


@pytest.mark.slow
def test_keep_last_returns_the_last_iterate_and_loads_the_same():
    x, y = blobs(40, key=3)
    y = jnp.where(jnp.arange(40) % 3 == 0, (y + 1) % 3, y)
    params = mlp.init_params(jax.random.PRNGKey(0), 2, 64, 3)
    cfg = train.FitConfig(epochs=30, batch_size=8, keep="last")
    res = train.fit(mlp.loss_and_grad, train.sgd_momentum(0.2, 0.9), params, (x, y), cfg,
                    key=jax.random.PRNGKey(1), val_data=blobs(400, key=4), metrics_fn=mlp.metrics, progress=False)
    assert res.best_epoch < 30  # the validation loss was lowest before the end ...
    chex.assert_trees_all_equal(res.params, res.last_params)  # ... and the last iterate is kept anyway
    chex.assert_trees_all_equal(cfg.kept(res.state), res.last_params)
    with pytest.raises(ValueError, match="keep"):
        train.FitConfig(epochs=1, batch_size=1, keep="first")


def test_augment_transforms_the_training_set_afresh_every_epoch():
    seen = []

    class Record:  # an "augmentation" that adds a key-dependent constant and records it
        def __call__(self, key, data):
            shift = jax.random.uniform(key, ())
            jax.debug.callback(lambda s: seen.append(float(s)), shift)
            return data + shift

    def loss_and_grad(p, batch):
        return jnp.mean(batch), jax.tree.map(jnp.zeros_like, p)

    data = jnp.zeros(12)
    res = train.fit(loss_and_grad, optax.sgd(0.1), {"w": jnp.zeros(())}, data,
                    train.FitConfig(epochs=3, batch_size=4, augment=Record()), key=jax.random.PRNGKey(0),
                    progress=False)
    assert len(seen) == 3 and len(set(seen)) == 3  # a new draw each epoch ...
    np.testing.assert_allclose(res.history["train_loss"], seen, rtol=1e-6)  # ... that the epoch trained on
    # the draws come from the epoch keys: the same key, the same draws
    seen_first = list(seen)
    seen.clear()
    train.fit(loss_and_grad, optax.sgd(0.1), {"w": jnp.zeros(())}, data,
              train.FitConfig(epochs=3, batch_size=4, augment=Record()), key=jax.random.PRNGKey(0), progress=False)
    assert seen == seen_first


def test_warmup_cosine_schedule():
    assert train.steps_per_epoch(100, 32) == 4 and train.steps_per_epoch(96, 32) == 3 and train.steps_per_epoch(5, 32) == 1
    lr = train.warmup_cosine(0.1, steps_per_epoch=10, epochs=5, warmup_epochs=1)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.05)  # the linear warm-up over 10 steps
    assert float(lr(10)) == pytest.approx(0.1)  # the peak after one epoch
    assert float(lr(30)) == pytest.approx(0.05)  # cosine: half-way through the 40 decay steps
    assert float(lr(50)) == pytest.approx(0.0, abs=1e-9)  # 0 at the end
    # fed to the optimizer: an SGD step uses the scheduled rate
    opt = train.sgd_momentum(lr, 0.0)
    p = {"a": jnp.zeros(())}
    s = opt.init(p)
    for _ in range(10):
        u, s = opt.update({"a": jnp.ones(())}, s, p)
    u, s = opt.update({"a": jnp.ones(())}, s, p)
    assert float(u["a"]) == pytest.approx(-0.1)


def test_a_carrying_loss_and_grad_threads_its_carry_through_the_full_minibatches():
    """A train.Carrying gets its carry made once per epoch and handed from one full
    minibatch to the next; the remainder batch calls it as a plain loss_and_grad."""

    class Counting:  # loss = how many minibatches the carry has seen (the engine's protocol, no base class)
        batch_axis = 0

        def init(self, params, batch):
            return jnp.zeros(())

        def step(self, params, batch, carry):
            return (carry, jax.tree.map(jnp.zeros_like, params)), carry + 1

        def __call__(self, params, batch):
            return self.step(params, batch, self.init(params, batch))[0]

    assert isinstance(Counting(), train.Carrying) and not isinstance(mlp.loss_and_grad, train.Carrying)
    epoch = train.make_epoch_fn(Counting(), optax.sgd(0.1), batch_size=4)
    params = {"w": jnp.zeros(())}
    _, _, mean_loss, _ = epoch(params, optax.sgd(0.1).init(params), jax.random.PRNGKey(0), jnp.arange(14.0))
    # three full minibatches see 0, 1, 2; the remainder (2 examples) a fresh carry: 0
    assert float(mean_loss) == pytest.approx((0 + 1 + 2) * 4 / 14)


def test_the_engine_and_the_runtime_do_not_import_each_other_nor_any_model():
    import ast
    from pathlib import Path

    root = Path(train.__file__).parent

    def imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mp_jax"):
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        return found

    for engine in ("train", "parallel", "sweep"):
        assert not {m for m in imports(engine) if "models" in m or "distributed" in m or "reuse" in m}, engine
    assert not {m for m in imports("distributed") if m.endswith((".train", ".parallel", ".sweep"))}
    assert not {m for m in imports("parallel") if m.endswith(".train")}  # train imports parallel
    assert not (root / "reuse.py").exists()
