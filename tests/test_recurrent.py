import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax import train
from mp_jax.models import recurrent as R
from mp_jax.testing import assert_grads_match


@pytest.fixture
def fast_compile():
    """These tests run tiny programs once: XLA's optimization passes cost more than they
    save, so they are switched off for the test (numerics are unchanged) and restored."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def _params(cell, d, h, m, c, seed=0) -> R.ClassifierParams:
    """Random parameters made with numpy (no per-shape compiles of jax.random), with
    non-zero biases so that their gradients and the gates' offsets are exercised."""
    rng = np.random.default_rng(seed)
    g = R.N_BLOCKS[cell]
    cell_p = R._PARAM_TYPES[cell](rng.normal(0, 0.6, (d, g * h)), rng.normal(0, 0.6, (h, g * h)),
                                  rng.normal(0, 0.3, g * h))
    p = R.ClassifierParams(cell_p, rng.normal(0, 0.6, (h, m)), rng.normal(0, 0.1, m),
                           rng.normal(0, 0.6, (m, c)), rng.normal(0, 0.1, c))
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)


def _batch(n, t, d, c, seed=1):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=(n, t, d)), jnp.float32),
            jnp.asarray(rng.integers(0, c, n), jnp.int32))


# ----------------------------------------------------------------------------- whole model
_LOSS_AND_GRAD = jax.jit(R.loss_and_grad)


@pytest.mark.parametrize("cell", R.CELLS)
@pytest.mark.parametrize("t", [1, 2, 7, 150])
def test_manual_bptt_matches_jax_grad(cell, t, fast_compile):
    # tiny batch and hidden size for T = 150: the check is about the recurrence, not width
    n, d, h, m, c = (3, 3, 4, 5, 6) if t < 150 else (2, 3, 3, 4, 6)
    params = _params(cell, d, h, m, c, seed=t)
    batch = _batch(n, t, d, c, seed=t + 1)
    # jitted: a few compiles per case instead of op-by-op dispatch of the scans
    reports = assert_grads_match(jax.jit(R.loss), _LOSS_AND_GRAD, params, batch)
    assert reports["float64"]["leaves"][".cell.w_h"] < 1e-8
    # the weights really receive gradient (BPTT did run through the steps)
    _, g = _LOSS_AND_GRAD(params, batch)
    assert np.abs(np.asarray(g.cell.w_x)).max() > 0
    if t > 1:
        assert np.abs(np.asarray(g.cell.w_h)).max() > 0


@pytest.mark.parametrize("cell", R.CELLS)
@pytest.mark.parametrize("d", [1, R.SMALL_INPUT + 4])
def test_both_input_projections_match_jax_grad(cell, d, fast_compile):
    """D ≤ SMALL_INPUT projects x_t inside each step (D multiply-adds); wider inputs by one
    matmul before the scan. Both paths, and inference (encode), against the reference."""
    params = _params(cell, d, 4, 5, 6, seed=d)
    batch = _batch(3, 5, d, 6, seed=d + 1)
    assert_grads_match(jax.jit(R.loss), _LOSS_AND_GRAD, params, batch)
    h_t, _ = jax.jit(R.encode_forward)(params.cell, batch[0])
    np.testing.assert_allclose(jax.jit(R.encode)(params.cell, batch[0]), h_t, rtol=1e-6, atol=1e-7)


def test_gru_forward_writes_its_weight_gradient_operand_in_place(fast_compile):
    """GRUCache.h_aug is [h_{t−1}, x_t, 1] for every step: h_0 = 0, then each h_t of the
    recurrence (from the cache's own gates and candidates), the raw input, a ones column."""
    params = _params("gru", 3, 4, 5, 6)
    x, _ = _batch(2, 6, 3, 6)
    h_t, cache = jax.jit(R.encode_forward)(params.cell, x)
    aug, us, ns = (np.asarray(a, np.float64) for a in (cache.h_aug, cache.us, cache.ns))
    assert aug.shape == (6, 2, 4 + 3 + 1)
    np.testing.assert_array_equal(aug[:, :, 4:7], np.swapaxes(np.asarray(x), 0, 1))
    np.testing.assert_array_equal(aug[:, :, 7], 1.0)
    np.testing.assert_array_equal(aug[0, :, :4], 0.0)
    z = 0.5 * us[:, :, :4] + 0.5
    h_next = ns + z * (aug[:, :, :4] - ns)  # h_t from h_{t−1}
    np.testing.assert_allclose(aug[1:, :, :4], h_next[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(h_t), h_next[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", R.CELLS)
def test_float64_input_with_float32_weights_trains_in_float32(cell, fast_compile):
    # e.g. numpy float64 data under jax_enable_x64: cast once, not a dtype error in a scan
    params = _params(cell, 3, 8, 5, 6)
    x, y = _batch(4, 9, 3, 6)
    with jax.enable_x64(True):
        l64, g64 = jax.jit(R.loss_and_grad)(params, (jnp.asarray(np.asarray(x), jnp.float64), y))
        l32, g32 = jax.jit(R.loss_and_grad)(params, (x, y))
        h = R.encode(params.cell, jnp.asarray(np.asarray(x), jnp.float64))
    assert l64.dtype == jnp.float32 and h.dtype == jnp.float32
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
        h_t, _ = R.encode_forward(p.cell, x)
        return dict(z=z, logits=R.logits(p, x), h_t=h_t, enc=R.encode(p.cell, x), pred=R.predict(p, x),
                    metrics=R.metrics(p, (x, y)), loss=R.loss(p, (x, y)), z_perm=R.logits(p, x[perm]))

    o = jax.tree.map(np.asarray, everything(params, x, y))
    assert o["z"].shape == (4, 6)
    np.testing.assert_allclose(o["logits"], o["z"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o["enc"], o["h_t"], rtol=1e-5, atol=1e-6)
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


def test_xavier_limits():
    p = R.init_params(jax.random.PRNGKey(0), "lstm", 3, 64, 32, 6)
    lim_x, lim_h = (6 / (3 + 64)) ** 0.5, (6 / (64 + 64)) ** 0.5
    assert float(jnp.max(jnp.abs(p.cell.w_x))) <= lim_x
    assert float(jnp.max(jnp.abs(p.cell.w_x))) > 0.8 * lim_x
    assert float(jnp.max(jnp.abs(p.cell.w_h))) <= lim_h
    assert float(jnp.max(jnp.abs(p.cell.b))) == 0.0 and p.cell.w_x.dtype == jnp.float32


# ----------------------------------------------------------------------------- single steps
def _step_case(cell, n=3, h=4, seed=0):
    rng = np.random.default_rng(seed)
    g = R.N_BLOCKS[cell]
    xw, h_prev, c_prev = rng.normal(size=(n, g * h)), rng.normal(size=(n, h)), rng.normal(size=(n, h))
    w_h = 0.5 * rng.normal(size=(h, g * h))
    dh, dc = rng.normal(size=(n, h)), rng.normal(size=(n, h))
    return xw, h_prev, c_prev, w_h, dh, dc


def test_rnn_step_backward_matches_vjp():
    with jax.enable_x64(True):
        xw, h_prev, _, w_h, dh, _ = (jnp.asarray(a, jnp.float64) for a in _step_case("rnn"))
        h, cache = R.rnn_step_forward(xw, h_prev, w_h)
        np.testing.assert_allclose(h, jnp.tanh(xw + h_prev @ w_h), rtol=1e-14)
        _, vjp = jax.vjp(lambda a, b: R.rnn_step_forward(a, b, w_h)[0], xw, h_prev)
        d_xw, d_h = vjp(dh)
        delta, dh_prev = R.rnn_step_backward(dh, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)


def test_lstm_step_backward_matches_vjp():
    with jax.enable_x64(True):
        xw, h_prev, c_prev, w_h, dh, dc = (jnp.asarray(a, jnp.float64) for a in _step_case("lstm"))
        h, c, cache = R.lstm_step_forward(xw, h_prev, c_prev, w_h)
        # against the textbook equations with separate activations
        ai, af, ag, ao = jnp.split(xw + h_prev @ w_h, 4, axis=-1)
        c_ref = jax.nn.sigmoid(af) * c_prev + jax.nn.sigmoid(ai) * jnp.tanh(ag)
        np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h, jax.nn.sigmoid(ao) * jnp.tanh(c_ref), rtol=1e-12, atol=1e-14)
        _, vjp = jax.vjp(lambda a, b, cc: R.lstm_step_forward(a, b, cc, w_h)[:2], xw, h_prev, c_prev)
        d_xw, d_h, d_c = vjp((dh, dc))
        delta, dh_prev, dc_prev = R.lstm_step_backward(dh, dc, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dc_prev, d_c, rtol=1e-12, atol=1e-14)


def test_gru_step_backward_matches_vjp():
    with jax.enable_x64(True):
        xw, h_prev, _, w_h, dh, _ = (jnp.asarray(a, jnp.float64) for a in _step_case("gru"))
        h, cache = R.gru_step_forward(xw, h_prev, w_h)
        xz, xr, xn = jnp.split(xw, 3, axis=-1)
        uz, ur, un = jnp.split(w_h, 3, axis=-1)
        z = jax.nn.sigmoid(xz + h_prev @ uz)
        r = jax.nn.sigmoid(xr + h_prev @ ur)
        n = jnp.tanh(xn + (r * h_prev) @ un)
        np.testing.assert_allclose(h, z * h_prev + (1 - z) * n, rtol=1e-12, atol=1e-14)
        _, vjp = jax.vjp(lambda a, b: R.gru_step_forward(a, b, w_h)[0], xw, h_prev)
        d_xw, d_h = vjp(dh)
        delta, dh_prev = R.gru_step_backward(dh, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- training
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


# ----------------------------------------------------------------------------- buffer reuse
@pytest.mark.parametrize("cell", R.CELLS)
def test_reusing_buffers_whatever_they_hold_gives_the_same_gradients(cell, fast_compile):
    """loss_and_grad_reusing as a plain call, and its step with buffers that hold NaN
    everywhere but the operands' ones column (what a previous minibatch may leave), equal
    loss_and_grad exactly (float64): the scans overwrite everything they read."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(cell, 3, 6, 5, 4, seed=5))
        x, y = _batch(5, 7, 3, 4, seed=6)
        batch = (x.astype(jnp.float64), y)
        want = jax.jit(R.loss_and_grad)(params, batch)
        fresh = jax.jit(R.loss_and_grad_reusing.__call__)(params, batch)
        buffers = R.scan_buffers(params, batch)
        if cell == "gru":
            assert isinstance(buffers, R.GRUBuffers)
            hx = 6 + 3  # H + D: every column but the ones
            nan = jnp.nan
            buffers = R.GRUBuffers(buffers.h_aug.at[..., :hx].set(nan), jnp.full_like(buffers.us, nan),
                                   jnp.full_like(buffers.ns, nan), buffers.rh_aug.at[..., :hx].set(nan))
        elif cell == "lstm":
            assert isinstance(buffers, R.LSTMBuffers)
            buffers = jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), buffers)
        else:
            assert buffers == ()
        got, out = jax.jit(R.loss_and_grad_step)(params, batch, buffers)
        for a, b, c in zip(jax.tree.leaves(want), jax.tree.leaves(fresh), jax.tree.leaves(got)):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
            np.testing.assert_array_equal(np.asarray(c), np.asarray(a))
        assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(lambda a: (a.shape, a.dtype), buffers)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_epoch_reusing_buffers_trains_exactly_as_one_that_does_not(cell, fast_compile):
    # 20 examples in batches of 8: two full minibatches carry the buffers, the remainder of 4
    # is a plain call
    params = _params(cell, 3, 6, 5, 4, seed=7)
    x, y = _batch(20, 9, 3, 4, seed=8)
    opt = train.sgd_momentum(0.1, 0.9, clip_norm=1.0)
    out = {}
    for name, lg in (("plain", R.loss_and_grad), ("reusing", R.loss_and_grad_reusing)):
        p, s = params, opt.init(params)
        epoch = train.make_epoch_fn(lg, opt, 8)
        for e in range(2):
            p, s, loss, finite = epoch(p, s, jax.random.PRNGKey(e), (x, y))
        out[name] = (p, float(loss))
    assert out["reusing"][1] == out["plain"][1]
    for a, b in zip(jax.tree.leaves(out["reusing"][0]), jax.tree.leaves(out["plain"][0])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(out["plain"][0]), jax.tree.leaves(params))) > 1e-3


@pytest.mark.parametrize("cell", R.CELLS)
def test_unrolled_scans_give_the_same_gradients(cell, fast_compile):
    # unroll > 1 is slower (the GRU's in-place writes then copy their buffers) but exact
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(cell, 3, 6, 5, 4, seed=9))
        x, y = _batch(4, 7, 3, 4, seed=10)
        batch = (x.astype(jnp.float64), y)
        _, g1 = R.loss_and_grad(params, batch)
        _, g3 = R.loss_and_grad(params, batch, unroll=3)
        for a, b in zip(jax.tree.leaves(g3), jax.tree.leaves(g1)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
