"""Every layer primitive's backward against jax.grad (float64 and float32)."""
import jax
import jax.numpy as jnp
import pytest

from mp_jax import layers
from mp_jax.checks.testing import assert_grads_match


def _keys(n):
    return jax.random.split(jax.random.PRNGKey(0), n)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 3, 2), (5, 4, 7), (2, 3, 4, 5)])
def test_linear(shape):
    *lead, d_in, d_out = shape
    k = _keys(4)
    params = {"w": jax.random.normal(k[0], (d_in, d_out)), "b": jax.random.normal(k[1], (d_out,))}
    batch = {"x": jax.random.normal(k[2], (*lead, d_in)), "r": jax.random.normal(k[3], (*lead, d_out))}

    def loss(p, b):
        return jnp.sum((b["x"] @ p["w"] + p["b"]) * b["r"])

    def loss_and_grad(p, b):
        y, cache = layers.linear_forward(b["x"], p["w"], p["b"])
        _, dw, db = layers.linear_backward(b["r"], cache)
        return jnp.sum(y * b["r"]), {"b": db, "w": dw}

    assert_grads_match(loss, loss_and_grad, params, batch)


def test_linear_input_gradient():
    k = _keys(4)
    w, b = jax.random.normal(k[0], (4, 3)), jax.random.normal(k[1], (3,))
    x, r = jax.random.normal(k[2], (6, 4)), jax.random.normal(k[3], (6, 3))
    y, cache = layers.linear_forward(x, w, b)
    dx, _, _ = layers.linear_backward(r, cache)
    ref = jax.grad(lambda x_: jnp.sum((x_ @ w + b) * r))(x)
    assert jnp.allclose(dx, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,fn",
    [("sigmoid", jax.nn.sigmoid), ("tanh", jnp.tanh), ("relu", jax.nn.relu)],
)
def test_activation(name, fn):
    fwd = getattr(layers, f"{name}_forward")
    bwd = getattr(layers, f"{name}_backward")
    k = _keys(2)
    params = {"x": 3.0 * jax.random.normal(k[0], (7, 5))}
    batch = {"r": jax.random.normal(k[1], (7, 5))}

    def loss(p, b):
        return jnp.sum(fn(p["x"]) * b["r"])

    def loss_and_grad(p, b):
        y, cache = fwd(p["x"])
        return jnp.sum(y * b["r"]), {"x": bwd(b["r"], cache)}

    assert_grads_match(loss, loss_and_grad, params, batch)


@pytest.mark.slow
@pytest.mark.parametrize("n,c", [(1, 2), (9, 6), (32, 250)])
def test_softmax_cross_entropy(n, c):
    k = _keys(2)
    params = {"z": 4.0 * jax.random.normal(k[0], (n, c))}
    batch = {"y": jax.random.randint(k[1], (n,), 0, c)}

    def loss(p, b):
        return -jnp.mean(jax.nn.log_softmax(p["z"])[jnp.arange(n), b["y"]])

    def loss_and_grad(p, b):
        value, cache = layers.softmax_cross_entropy_forward(p["z"], b["y"])
        return value, {"z": layers.softmax_cross_entropy_backward(jnp.ones((), p["z"].dtype), cache)}

    assert_grads_match(loss, loss_and_grad, params, batch)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    z = jnp.array([[1e4, 0.0, -1e4]])
    value, _ = layers.softmax_cross_entropy_forward(z, jnp.array([1]))
    assert jnp.isfinite(value) and value == pytest.approx(1e4, rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("ids", [[[0, 1, 2], [3, 4, 0]], [[2, 2, 2]], [[1, 0, 1], [1, 1, 1], [4, 3, 2]]])
def test_embedding_scatter_add_with_repeated_ids(ids):
    ids = jnp.array(ids)
    k = _keys(2)
    params = {"emb": jax.random.normal(k[0], (5, 3))}
    batch = {"ids": ids, "r": jax.random.normal(k[1], (*ids.shape, 3))}

    def loss(p, b):
        return jnp.sum(p["emb"][b["ids"]] * b["r"])

    def loss_and_grad(p, b):
        out, cache = layers.embedding_forward(b["ids"], p["emb"])
        return jnp.sum(out * b["r"]), {"emb": layers.embedding_backward(b["r"], cache)}

    assert_grads_match(loss, loss_and_grad, params, batch)


@pytest.mark.slow
def test_float64_input_with_float32_weights_stays_float32():
    # e.g. numpy float64 data under jax_enable_x64: every model computes in its weights' dtype
    import numpy as np

    from mp_jax.models import autoencoder as ae
    from mp_jax.models import logistic, mlp

    rng = np.random.default_rng(0)
    x64 = rng.uniform(0.1, 0.9, (6, 256))
    y = jnp.asarray(rng.integers(0, 3, 6), jnp.int32)
    cases = [
        (ae.loss_and_grad, ae.init_params(jax.random.PRNGKey(0), 8), lambda x: x),
        (mlp.loss_and_grad, mlp.init_params(jax.random.PRNGKey(0), 256, 5, 3), lambda x: (x, y)),
        (logistic.loss_and_grad, jax.tree.map(lambda a: a + 0.01, logistic.init_params(None, 256, 3)),
         lambda x: (x, y)),
    ]
    with jax.enable_x64(True):
        for loss_and_grad, params, batch in cases:
            l64, g64 = loss_and_grad(params, batch(jnp.asarray(x64, jnp.float64)))
            l32, g32 = loss_and_grad(params, batch(jnp.asarray(x64, jnp.float32)))
            assert l64.dtype == jnp.float32, loss_and_grad.__module__
            for a, b in zip(jax.tree.leaves(g64), jax.tree.leaves(g32)):
                assert a.dtype == jnp.float32, loss_and_grad.__module__
                assert jnp.array_equal(a, b), loss_and_grad.__module__
