"""Q2 neural language model: manual gradients against jax.grad, repeated words, metrics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import train
from mp_jax.models import language_model as lm


# Jitted once per module: the gradient check then compiles four programs per shape
# instead of dispatching (and compiling) dozens of eager ops.
LOSS = jax.jit(lm.loss)
PREDICT = jax.jit(lm.predict_proba)
METRICS = jax.jit(lm.metrics)


def make_params(key, v, d, p, std=0.3):
    # Larger than the N(0, 0.01²) init so that every gradient term is far from zero.
    return lm.init_params(key, v, d, p, std=std)


def make_batch(key, n, v):
    k1, k2 = jax.random.split(key)
    return jax.random.randint(k1, (n, 3), 0, v), jax.random.randint(k2, (n,), 0, v)


def test_init_is_normal_with_std_001():
    params = lm.init_params(jax.random.PRNGKey(0), 250, 32, 256)
    assert [a.shape for a in params] == [(250, 32), (96, 256), (256,), (256, 250), (250,)]
    big = np.concatenate([np.ravel(a) for a in params])
    assert abs(big.std() - 0.01) < 5e-4 and abs(big.mean()) < 5e-4
    assert all(np.ravel(a).std() > 0.005 for a in params)  # biases too


@pytest.mark.slow
def test_zero_params_give_uniform_predictions():
    params = jax.tree.map(jnp.zeros_like, lm.init_params(jax.random.PRNGKey(0), 7, 2, 3))
    batch = make_batch(jax.random.PRNGKey(1), 4, 7)
    np.testing.assert_allclose(LOSS(params, batch), np.log(7), rtol=1e-6)
    np.testing.assert_allclose(PREDICT(params, batch[0]), np.full((4, 7), 1 / 7), rtol=1e-6)


@pytest.mark.slow
def test_predict_proba_and_metrics_agree():
    v = 30
    params = make_params(jax.random.PRNGKey(5), v, 4, 8, std=1.0)
    x, y = make_batch(jax.random.PRNGKey(6), 200, v)
    probs = np.asarray(PREDICT(params, x))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    m = METRICS(params, (x, y))
    np.testing.assert_allclose(m["loss"], LOSS(params, (x, y)), rtol=1e-6)
    np.testing.assert_allclose(m["loss"], -np.mean(np.log(probs[np.arange(200), y])), rtol=1e-5)
    assert float(m["top1"]) == pytest.approx(np.mean(probs.argmax(1) == np.asarray(y)))
    top10 = np.argsort(-probs, axis=1)[:, :10]
    assert float(m["top10"]) == pytest.approx(np.mean((top10 == np.asarray(y)[:, None]).any(1)))
    assert 0.0 < float(m["top1"]) < float(m["top10"]) < 1.0


@pytest.mark.slow
def test_training_with_the_engine_learns_a_deterministic_rule():
    """w4 = (w1 + 2 w2 + w3) mod V is learnable from the three embeddings; the unigram
    loss is log V, and training with the manual gradients must go far below it."""
    v = 12
    rng = np.random.default_rng(0)
    x = rng.integers(0, v, (3000, 3))
    y = (x[:, 0] + 2 * x[:, 1] + x[:, 2]) % v
    data = (jnp.asarray(x[:2500]), jnp.asarray(y[:2500]))
    val = (jnp.asarray(x[2500:]), jnp.asarray(y[2500:]))
    params = lm.init_params(jax.random.PRNGKey(0), v, 8, 64, std=0.1)
    res = train.fit(lm.loss_and_grad, train.sgd_momentum(0.5, 0.9), params, data,
                    train.FitConfig(epochs=40, batch_size=50), key=jax.random.PRNGKey(1), val_data=val,
                    metrics_fn=lm.metrics, progress=False)
    assert res.history["train_loss"][-1] < 0.5 * np.log(v)
    assert res.history["val_top1"][-1] > 0.5


# ----------------------------------------------------------------------------- the fast path
def test_fast_path_shares_the_reference_parameters_and_backward():
    """language_model_fast differs only in its forward's σ; its equality with the reference
    (float64, 1e-12) is a row of tests/test_gradient_table.py."""
    from mp_jax.models import language_model_fast as lm_fast

    assert lm_fast.LMParams is lm.LMParams and lm_fast.backward_with_intermediates is lm.backward_with_intermediates


def test_the_reference_hidden_layer_is_the_plain_sigmoid():
    import inspect

    assert "jnp.tanh" not in inspect.getsource(lm.forward)
    assert "sigmoid_forward" in inspect.getsource(lm.forward)
