"""The benchmark's numpy references are right: their hand gradients against jax.grad (float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import numpy_impl as bn

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

RNG = np.random.default_rng(0)


def grads_close(loss_fn, np_fn, p, *data, rtol=1e-7):
    with jax.enable_x64(True):
        ref_loss, ref = jax.value_and_grad(loss_fn)({k: jnp.asarray(v) for k, v in p.items()}, *data)
    loss, g = np_fn({k: v.copy() for k, v in p.items()}, *data)
    assert loss == pytest.approx(float(ref_loss), rel=1e-10)
    for k in p:
        np.testing.assert_allclose(g[k], np.asarray(ref[k]), rtol=rtol, atol=1e-12, err_msg=k)


def test_autoencoder():
    h = 5
    p = {"W": RNG.normal(0, 0.3, (256, h)), "b1": RNG.normal(0, 0.1, h), "b2": RNG.normal(0, 0.1, 256)}
    x = RNG.uniform(0.1, 0.9, (7, 256))

    def loss(p, x):
        hid = jax.nn.sigmoid(x @ p["W"] + p["b1"])
        o = jax.nn.sigmoid(hid @ p["W"].T + p["b2"])
        rh = hid.mean(0)
        kl = jnp.sum(0.03 * jnp.log(0.03 / rh) + 0.97 * jnp.log(0.97 / (1 - rh)))
        return 0.5 / 7 * jnp.sum((x - o) ** 2) + 1e-3 * jnp.sum(p["W"] ** 2) + 2.0 * kl

    grads_close(loss, lambda p, x: bn.ae_loss_and_grad(p, x, 1e-3, 2.0, 0.03), p, x)


def test_language_model_with_repeated_words():
    v, d, P = 11, 4, 6
    p = {"R": RNG.normal(size=(v, d)), "W1": RNG.normal(size=(3 * d, P)), "b1": RNG.normal(size=P),
         "W2": RNG.normal(size=(P, v)), "b2": RNG.normal(size=v)}
    x = np.array([[1, 1, 1], [2, 3, 2], [4, 5, 6], [0, 10, 0]])
    y = np.array([1, 2, 3, 10])

    def loss(p, x, y):
        e = p["R"][x].reshape(len(x), -1)
        z = jax.nn.sigmoid(e @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
        return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(len(y)), y])

    grads_close(loss, bn.lm_loss_and_grad, p, x, y)


def _head(p, hT, y):
    a = jax.nn.relu(hT @ p["W3"] + p["b3"])
    z = a @ p["W4"] + p["b4"]
    return -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(len(y)), y])


def _ref_recurrent(cell, H):
    def loss(p, x, y):
        h = jnp.zeros((x.shape[0], H))
        c = jnp.zeros_like(h)
        for t in range(x.shape[1]):
            a = x[:, t] @ p["Wx"] + p["b"]
            if cell == "rnn":
                h = jnp.tanh(a + h @ p["Wh"])
            elif cell == "lstm":
                a = a + h @ p["Wh"]
                i, f, g, o = jnp.split(a, 4, axis=1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
            else:
                z = jax.nn.sigmoid(a[:, :H] + h @ p["Wh"][:, :H])
                r = jax.nn.sigmoid(a[:, H:2 * H] + h @ p["Wh"][:, H:2 * H])
                hh = jnp.tanh(a[:, 2 * H:] + (r * h) @ p["Wh"][:, 2 * H:])
                h = z * h + (1 - z) * hh
        return _head(p, h, y)
    return loss


@pytest.mark.parametrize("cell,g", [("rnn", 1), ("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("t_len", [1, 5])
def test_recurrent(cell, g, t_len):
    H, M, C, n = 4, 5, 6, 3
    p = {"Wx": RNG.normal(0, 0.5, (3, g * H)), "Wh": RNG.normal(0, 0.5, (H, g * H)), "b": RNG.normal(0, 0.1, g * H),
         "W3": RNG.normal(0, 0.5, (H, M)), "b3": RNG.normal(0, 0.1, M), "W4": RNG.normal(0, 0.5, (M, C)),
         "b4": RNG.normal(0, 0.1, C)}
    x = RNG.normal(size=(n, t_len, 3))
    y = np.array([0, 5, 2])
    grads_close(_ref_recurrent(cell, H), bn.RECURRENT[cell], p, x, y)
