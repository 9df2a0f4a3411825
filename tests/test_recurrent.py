"""The readable reference: manual BPTT against jax.grad, each step against its VJP, dL/dh_t."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import train
from mp_jax.models import recurrent as R
from recurrent_cases import random_batch as _batch, random_params as _params


# ----------------------------------------------------------------------------- whole model
_LOSS_AND_GRAD = jax.jit(R.loss_and_grad)


@pytest.mark.parametrize("cell", R.CELLS)
def test_float64_input_with_float32_weights_trains_in_float32(cell, fast_compile):
    # e.g. numpy float64 data under jax_enable_x64: cast once, not a dtype error in a scan
    params = _params(cell, 3, 8, 5, 6)
    x, y = _batch(4, 9, 3, 6)
    with jax.enable_x64(True):
        l64, g64 = jax.jit(R.loss_and_grad)(params, (jnp.asarray(np.asarray(x), jnp.float64), y))
        l32, g32 = jax.jit(R.loss_and_grad)(params, (x, y))
    assert l64.dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(g64), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("cell", R.CELLS)
def test_shapes_and_api(cell, fast_compile):
    params = _params(cell, 3, 8, 5, 6)
    x, y = _batch(4, 9, 3, 6)
    g = R.N_BLOCKS[cell]
    assert params.cell.w_x.shape == (3, g * 8) and params.cell.w_h.shape == (8, g * 8)
    assert R.cell_name(params.cell) == cell
    perm = jnp.array([2, 0, 3, 1])

    @jax.jit
    def everything(p, x, y):
        z, _ = R.forward(p, x)
        h_t, caches = R.encode_forward(p.cell, x)
        return dict(z=z, logits=R.logits(p, x), h_t=h_t, caches=caches, pred=R.predict(p, x),
                    metrics=R.metrics(p, (x, y)), loss=R.loss(p, (x, y)), z_perm=R.logits(p, x[perm]))

    o = jax.tree.map(np.asarray, everything(params, x, y))
    assert o["z"].shape == (4, 6)
    np.testing.assert_allclose(o["logits"], o["z"], rtol=1e-5, atol=1e-6)
    assert o["h_t"].shape == (4, 8)
    # the caches are stacked over time: step t's input is x[:, t]
    np.testing.assert_array_equal(o["caches"].x, np.swapaxes(np.asarray(x), 0, 1))
    assert o["pred"].dtype == np.int32 and o["pred"].shape == (4,)
    np.testing.assert_array_equal(o["pred"], o["z"].argmax(-1))
    assert set(o["metrics"]) == {"loss", "accuracy"}
    np.testing.assert_allclose(o["metrics"]["loss"], o["loss"], rtol=1e-5)
    # batch-major at the API: permuting the batch permutes the outputs
    np.testing.assert_allclose(o["z_perm"], o["z"][np.asarray(perm)], rtol=1e-5, atol=1e-6)


def test_bad_cell_is_rejected():
    with pytest.raises(ValueError, match="cell must be one of"):
        R.init_params(jax.random.PRNGKey(0), "transformer", 3, 4, 4, 6)
    with pytest.raises(TypeError, match="RNNParams, LSTMParams or GRUParams"):
        R.cell_name((1, 2, 3))


@pytest.mark.slow
def test_xavier_limits():
    p = R.init_params(jax.random.PRNGKey(0), "lstm", 3, 64, 32, 6)
    lim_x, lim_h = (6 / (3 + 64)) ** 0.5, (6 / (64 + 64)) ** 0.5
    assert float(jnp.max(jnp.abs(p.cell.w_x))) <= lim_x
    assert float(jnp.max(jnp.abs(p.cell.w_x))) > 0.8 * lim_x
    assert float(jnp.max(jnp.abs(p.cell.w_h))) <= lim_h
    assert float(jnp.max(jnp.abs(p.cell.b))) == 0.0 and p.cell.w_x.dtype == jnp.float32


# ----------------------------------------------------------------------------- single steps
def _step_case(cell, n=3, d=2, h=4, seed=0):
    """float64 parameters of one cell, x_t, a previous state and a state gradient."""
    rng = np.random.default_rng(seed)
    g = R.N_BLOCKS[cell]
    p = R._PARAM_TYPES[cell](*(jnp.asarray(a, jnp.float64) for a in (
        0.6 * rng.normal(size=(d, g * h)), 0.6 * rng.normal(size=(h, g * h)), 0.3 * rng.normal(size=g * h))))
    x_t = jnp.asarray(rng.normal(size=(n, d)), jnp.float64)
    h_prev, c_prev, dh, dc = (jnp.asarray(rng.normal(size=(n, h)), jnp.float64) for _ in range(4))
    if cell == "lstm":
        return p, x_t, (h_prev, c_prev), (dh, dc)
    return p, x_t, h_prev, dh


@pytest.mark.parametrize("cell", R.CELLS)
def test_each_step_backward_is_the_vjp_of_its_forward(cell):
    """One step's backward (gradient to the previous state and to every weight) against
    jax.vjp of the step's forward, in float64."""
    with jax.enable_x64(True):
        p, x_t, state, dstate = _step_case(cell)
        step_forward, step_backward = R.step_functions(cell)
        _, cache = step_forward(p, state, x_t)
        _, vjp = jax.vjp(lambda p_, s_: step_forward(p_, s_, x_t)[0], p, state)
        want_dp, want_dstate = vjp(dstate)
        got_dstate, got_dp, _ = step_backward(p, dstate, cache)
        assert type(got_dp) is type(p)
        for a, b in zip(jax.tree.leaves((got_dp, got_dstate)), jax.tree.leaves((want_dp, want_dstate))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_each_step_forward_is_the_textbook_cell():
    """The gates named as in docs/recurrent.md, against one matrix per gate."""
    with jax.enable_x64(True):
        p, x_t, (h_prev, c_prev), _ = _step_case("lstm")
        wi, wf, wg, wo = jnp.split(p.w_x, 4, axis=1)
        ui, uf, ug, uo = jnp.split(p.w_h, 4, axis=1)
        bi, bf, bg, bo = jnp.split(p.b, 4)
        (h, c), cache = R.lstm_step_forward(p, (h_prev, c_prev), x_t)
        f = jax.nn.sigmoid(x_t @ wf + h_prev @ uf + bf)
        i = jax.nn.sigmoid(x_t @ wi + h_prev @ ui + bi)
        c_ref = f * c_prev + i * jnp.tanh(x_t @ wg + h_prev @ ug + bg)
        np.testing.assert_allclose(cache.f, f, rtol=1e-14)
        np.testing.assert_allclose(c, c_ref, rtol=1e-13)
        np.testing.assert_allclose(h, jax.nn.sigmoid(x_t @ wo + h_prev @ uo + bo) * jnp.tanh(c_ref), rtol=1e-13)
        p, x_t, h_prev, _ = _step_case("gru")
        wz, wr, wn = jnp.split(p.w_x, 3, axis=1)
        uz, ur, un = jnp.split(p.w_h, 3, axis=1)
        bz, br, bn = jnp.split(p.b, 3)
        h, cache = R.gru_step_forward(p, h_prev, x_t)
        z = jax.nn.sigmoid(x_t @ wz + h_prev @ uz + bz)
        r = jax.nn.sigmoid(x_t @ wr + h_prev @ ur + br)
        n = jnp.tanh(x_t @ wn + (r * h_prev) @ un + bn)
        np.testing.assert_allclose(h, z * h_prev + (1 - z) * n, rtol=1e-13)


def test_the_reference_has_no_layout_tricks():
    """The definition a learner reads: plain σ and tanh, no in-place writes, no barriers,
    no buffers carried between calls (those live in recurrent_fast)."""
    import inspect

    source = inspect.getsource(R)
    for trick in ("optimization_barrier", "dynamic_update_slice", "BufferReuse", "0.5 * jnp.tanh", "unroll"):
        assert trick not in source, trick
    for fn in (R.rnn_step_backward, R.lstm_step_backward, R.gru_step_backward):
        assert "# (" in inspect.getsource(fn)  # each cites its equations


# ----------------------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("cell", R.CELLS)
def test_manual_and_autodiff_training_agree(cell, fast_compile):
    """Same short run (SGD + momentum + clipping, shuffled minibatches) with the manual
    gradients and with jax.grad of the reference loss: parameters equal to 1e-8 (float64)."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(cell, 3, 6, 5, 4, seed=3))
        x, y = _batch(40, 12, 3, 4, seed=4)
        x = x.astype(jnp.float64)
        cfg = train.FitConfig(epochs=3, batch_size=8)
        opt = train.sgd_momentum(0.1, 0.85, clip_norm=1.0)
        runs = {}
        for name, lg in (("manual", R.loss_and_grad), ("autodiff", jax.value_and_grad(R.loss))):
            runs[name] = train.fit(lg, opt, params, (x, y), cfg, key=jax.random.PRNGKey(7), progress=False)
        p_man, p_ref = runs["manual"].last_params, runs["autodiff"].last_params
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(p_man)[0], jax.tree.leaves(p_ref)):
            assert a.dtype == jnp.float64
            scale = max(float(jnp.max(jnp.abs(b))), 1e-30)
            err = float(jnp.max(jnp.abs(a - b))) / scale
            assert err <= 1e-8, f"{cell} {jax.tree_util.keystr(path)}: relative difference {err:.2e}"
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p_man), jax.tree.leaves(params)))
        assert moved > 1e-3  # the run really trained
        losses = runs["manual"].history["train_loss"]
        assert losses[-1] < losses[0]
