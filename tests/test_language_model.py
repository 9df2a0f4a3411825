"""Q2 neural language model: manual gradients against jax.grad, repeated words, metrics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax import train
from mp_jax.models import language_model as lm
from mp_jax.testing import assert_grads_match


# Jitted once per module: the gradient check then compiles four programs per shape
# instead of dispatching (and compiling) dozens of eager ops.
LOSS = jax.jit(lm.loss)
LOSS_AND_GRAD = jax.jit(lm.loss_and_grad)
PREDICT = jax.jit(lm.predict_proba)
METRICS = jax.jit(lm.metrics)


def make_params(key, v, d, p, std=0.3):
    # Larger than the N(0, 0.01²) init so that every gradient term is far from zero.
    return lm.init_params(key, v, d, p, std=std)


def make_batch(key, n, v):
    k1, k2 = jax.random.split(key)
    return jax.random.randint(k1, (n, 3), 0, v), jax.random.randint(k2, (n,), 0, v)


# (3, 6, 3, 5) is also the shape of the repeated-word tests below (their compiles are shared).
@pytest.mark.parametrize("n,v,d,p", [(1, 5, 2, 1), (3, 6, 3, 5), (64, 50, 8, 16)])
def test_gradients_match_autodiff(n, v, d, p):
    k1, k2 = jax.random.split(jax.random.PRNGKey(n + v))
    assert_grads_match(LOSS, LOSS_AND_GRAD, make_params(k1, v, d, p), make_batch(k2, n, v))


@pytest.mark.parametrize("ids", [
    [[2, 2, 2], [2, 2, 2], [2, 2, 2]],  # one word everywhere: its row collects all nine blocks
    [[1, 3, 1], [3, 3, 0], [5, 4, 5]],  # a word at two positions
    [[4, 4, 1], [1, 4, 4], [0, 0, 0]],
])
def test_gradients_with_repeated_words_in_a_trigram(ids):
    params = make_params(jax.random.PRNGKey(1), 6, 3, 5)
    batch = (jnp.array(ids), jnp.arange(len(ids)) % 6)
    assert_grads_match(LOSS, LOSS_AND_GRAD, params, batch)


def test_repeated_word_gradient_against_finite_differences():
    """Independent of jax.grad: central differences in float64 on the rows of a word that
    fills two or three positions of a trigram (a scatter that overwrites would fail)."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: a.astype(jnp.float64), make_params(jax.random.PRNGKey(3), 6, 3, 5))
        batch = (jnp.array([[1, 1, 1], [2, 0, 2], [3, 4, 0]], jnp.int32), jnp.array([0, 3, 5], jnp.int32))
        _, grads = LOSS_AND_GRAD(params, batch)
        eps = 1e-6
        for row in (1, 2, 0):
            for col in range(3):
                def at(delta):
                    emb = params.emb.at[row, col].add(delta)
                    return float(LOSS(params._replace(emb=emb), batch))
                fd = (at(eps) - at(-eps)) / (2 * eps)
                np.testing.assert_allclose(float(grads.emb[row, col]), fd, rtol=1e-6, atol=1e-10)
        # The row of word 1 is the sum of its three blocks of δ_h W1ᵀ for the first trigram.
        z, cache = lm.forward(params, batch[0])
        p = jax.nn.softmax(z)
        dz = (p - jax.nn.one_hot(batch[1], 6)) / 3
        dh = dz @ params.w_out.T * cache.sig * (1 - cache.sig)
        de = (dh @ params.w_hid.T)[0].reshape(3, 3)
        np.testing.assert_allclose(grads.emb[1], de.sum(0), rtol=1e-10)


def test_init_is_normal_with_std_001():
    params = lm.init_params(jax.random.PRNGKey(0), 250, 32, 256)
    assert [a.shape for a in params] == [(250, 32), (96, 256), (256,), (256, 250), (250,)]
    big = np.concatenate([np.ravel(a) for a in params])
    assert abs(big.std() - 0.01) < 5e-4 and abs(big.mean()) < 5e-4
    assert all(np.ravel(a).std() > 0.005 for a in params)  # biases too


def test_zero_params_give_uniform_predictions():
    params = jax.tree.map(jnp.zeros_like, lm.init_params(jax.random.PRNGKey(0), 7, 2, 3))
    batch = make_batch(jax.random.PRNGKey(1), 4, 7)
    np.testing.assert_allclose(LOSS(params, batch), np.log(7), rtol=1e-6)
    np.testing.assert_allclose(PREDICT(params, batch[0]), np.full((4, 7), 1 / 7), rtol=1e-6)


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
@pytest.mark.parametrize("n,v,d,p", [(1, 5, 2, 1), (64, 50, 8, 16)])
def test_fast_path_equals_the_reference(n, v, d, p):
    """language_model_fast (σ through tanh) computes the reference's loss and gradients:
    float64 to 1e-12 relative, and against jax.grad in float32 and float64."""
    from mp_jax.models import language_model_fast as lm_fast

    k1, k2 = jax.random.split(jax.random.PRNGKey(3 * n + v))
    params, batch = make_params(k1, v, d, p), make_batch(k2, n, v)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        l_ref, g_ref = jax.jit(lm.loss_and_grad)(p64, batch)
        l_fast, g_fast = jax.jit(lm_fast.loss_and_grad)(p64, batch)
        assert abs(float(l_fast - l_ref)) <= 1e-12 * abs(float(l_ref))
        for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)):
            assert a.dtype == jnp.float64
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-12 * float(jnp.max(jnp.abs(b)))
    assert_grads_match(LOSS, jax.jit(lm_fast.loss_and_grad), params, batch)
    assert lm_fast.LMParams is lm.LMParams and lm_fast.backward is lm.backward


def test_the_reference_hidden_layer_is_the_plain_sigmoid():
    import inspect

    assert "jnp.tanh" not in inspect.getsource(lm.forward)
    assert "sigmoid_forward" in inspect.getsource(lm.forward)
