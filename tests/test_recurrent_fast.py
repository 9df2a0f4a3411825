"""The fast path computes the reference's function: same loss and gradients, every layout choice exact."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.engine import train
from mp_jax.models import recurrent as R
from mp_jax.models import recurrent_fast as F
from recurrent_cases import random_batch as _batch, random_params as _params


# ----------------------------------------------------------------------------- same function as the reference
_REF = jax.jit(R.loss_and_grad)
_FAST = jax.jit(F.loss_and_grad)


def _max_relative_difference(a_tree, b_tree) -> float:
    """max over leaves of max|a − b| / max|b| (the reference b's scale)."""
    return max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))
               for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)))


@pytest.mark.slow
@pytest.mark.parametrize("cell", R.CELLS)
@pytest.mark.parametrize("d", [1, F.SMALL_INPUT + 4])
def test_both_input_projections_equal_the_reference(cell, d, fast_compile):
    """D ≤ SMALL_INPUT projects x_t inside each step (D multiply-adds); wider inputs by one
    matmul before the scan. Both paths, and inference (encode), against the reference."""
    params = _params(cell, d, 4, 5, 6, seed=d)
    batch = _batch(3, 5, d, 6, seed=d + 1)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        b64 = (batch[0].astype(jnp.float64), batch[1])
        assert _max_relative_difference(_FAST(p64, b64)[1], _REF(p64, b64)[1]) <= 1e-12
        h_ref, _ = jax.jit(R.encode_forward)(p64.cell, b64[0])
        np.testing.assert_allclose(jax.jit(F.encode)(p64.cell, b64[0]), h_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(jax.jit(F.logits)(p64, b64[0]), jax.jit(R.logits)(p64, b64[0]),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", R.CELLS)
def test_metrics_and_predictions_equal_the_reference(cell, fast_compile):
    params = _params(cell, 3, 8, 5, 6)
    x, y = _batch(6, 9, 3, 6)
    np.testing.assert_array_equal(np.asarray(jax.jit(F.predict)(params, x)), np.asarray(jax.jit(R.predict)(params, x)))
    mf, mr = jax.jit(F.metrics)(params, (x, y)), jax.jit(R.metrics)(params, (x, y))
    assert set(mf) == set(mr) == {"loss", "accuracy"}
    np.testing.assert_allclose(float(mf["loss"]), float(mr["loss"]), rtol=1e-5)
    assert float(mf["accuracy"]) == float(mr["accuracy"])


def test_the_fast_path_shares_the_reference_parameters():
    assert F.ClassifierParams is R.ClassifierParams and F.LSTMParams is R.LSTMParams
    assert F.init_params is R.init_params and F.loss is R.loss


def test_gru_forward_writes_its_weight_gradient_operand_in_place(fast_compile):
    """GRUCache.h_aug is [h_{t−1}, x_t, 1] for every step: h_0 = 0, then each h_t of the
    recurrence (from the cache's own gates and candidates), the raw input, a ones column."""
    params = _params("gru", 3, 4, 5, 6)
    x, _ = _batch(2, 6, 3, 6)
    h_t, cache = jax.jit(F.encode_forward)(params.cell, x)
    aug, us, ns = (np.asarray(a, np.float64) for a in (cache.h_aug, cache.us, cache.ns))
    assert aug.shape == (6, 2, 4 + 3 + 1)
    np.testing.assert_array_equal(aug[:, :, 4:7], np.swapaxes(np.asarray(x), 0, 1))
    np.testing.assert_array_equal(aug[:, :, 7], 1.0)
    np.testing.assert_array_equal(aug[0, :, :4], 0.0)
    z = 0.5 * us[:, :, :4] + 0.5
    h_next = ns + z * (aug[:, :, :4] - ns)  # h_t from h_{t−1}
    np.testing.assert_allclose(aug[1:, :, :4], h_next[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(h_t), h_next[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell", R.CELLS)
def test_float64_input_with_float32_weights_trains_in_float32(cell, fast_compile):
    # e.g. numpy float64 data under jax_enable_x64: cast once, not a dtype error in a scan
    params = _params(cell, 3, 8, 5, 6)
    x, y = _batch(4, 9, 3, 6)
    with jax.enable_x64(True):
        l64, g64 = jax.jit(F.loss_and_grad)(params, (jnp.asarray(np.asarray(x), jnp.float64), y))
        l32, g32 = jax.jit(F.loss_and_grad)(params, (x, y))
        h = F.encode(params.cell, jnp.asarray(np.asarray(x), jnp.float64))
    assert l64.dtype == jnp.float32 and h.dtype == jnp.float32
    for a, b in zip(jax.tree.leaves(g64), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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
        h, cache = F.rnn_step_forward(xw, h_prev, w_h)
        np.testing.assert_allclose(h, jnp.tanh(xw + h_prev @ w_h), rtol=1e-14)
        _, vjp = jax.vjp(lambda a, b: F.rnn_step_forward(a, b, w_h)[0], xw, h_prev)
        d_xw, d_h = vjp(dh)
        delta, dh_prev = F.rnn_step_backward(dh, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)


def test_lstm_step_backward_matches_vjp():
    with jax.enable_x64(True):
        xw, h_prev, c_prev, w_h, dh, dc = (jnp.asarray(a, jnp.float64) for a in _step_case("lstm"))
        h, c, cache = F.lstm_step_forward(xw, h_prev, c_prev, w_h)
        # against the textbook equations with separate activations
        ai, af, ag, ao = jnp.split(xw + h_prev @ w_h, 4, axis=-1)
        c_ref = jax.nn.sigmoid(af) * c_prev + jax.nn.sigmoid(ai) * jnp.tanh(ag)
        np.testing.assert_allclose(c, c_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h, jax.nn.sigmoid(ao) * jnp.tanh(c_ref), rtol=1e-12, atol=1e-14)
        _, vjp = jax.vjp(lambda a, b, cc: F.lstm_step_forward(a, b, cc, w_h)[:2], xw, h_prev, c_prev)
        d_xw, d_h, d_c = vjp((dh, dc))
        delta, dh_prev, dc_prev, _ = F.lstm_step_backward(dh, dc, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dc_prev, d_c, rtol=1e-12, atol=1e-14)


def test_gru_step_backward_matches_vjp():
    with jax.enable_x64(True):
        xw, h_prev, _, w_h, dh, _ = (jnp.asarray(a, jnp.float64) for a in _step_case("gru"))
        h, cache = F.gru_step_forward(xw, h_prev, w_h)
        xz, xr, xn = jnp.split(xw, 3, axis=-1)
        uz, ur, un = jnp.split(w_h, 3, axis=-1)
        z = jax.nn.sigmoid(xz + h_prev @ uz)
        r = jax.nn.sigmoid(xr + h_prev @ ur)
        n = jnp.tanh(xn + (r * h_prev) @ un)
        np.testing.assert_allclose(h, z * h_prev + (1 - z) * n, rtol=1e-12, atol=1e-14)
        _, vjp = jax.vjp(lambda a, b: F.gru_step_forward(a, b, w_h)[0], xw, h_prev)
        d_xw, d_h = vjp(dh)
        delta, dh_prev = F.gru_step_backward(dh, cache, w_h.T)
        np.testing.assert_allclose(delta, d_xw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dh_prev, d_h, rtol=1e-12, atol=1e-14)


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
        want = jax.jit(F.loss_and_grad)(params, batch)
        fresh = jax.jit(F.loss_and_grad_reusing.__call__)(params, batch)
        buffers = F.scan_buffers(params, batch)
        if cell == "gru":
            assert isinstance(buffers, F.GRUBuffers)
            hx = 6 + 3  # H + D: every column but the ones
            nan = jnp.nan
            buffers = F.GRUBuffers(buffers.h_aug.at[..., :hx].set(nan), jnp.full_like(buffers.us, nan),
                                   jnp.full_like(buffers.ns, nan), buffers.rh_aug.at[..., :hx].set(nan))
        elif cell == "lstm":
            assert isinstance(buffers, F.LSTMBuffers)
            buffers = jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), buffers)
        else:
            assert buffers == ()
        got, out = jax.jit(F.loss_and_grad_step)(params, batch, buffers)
        for a, b, c in zip(jax.tree.leaves(want), jax.tree.leaves(fresh), jax.tree.leaves(got)):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
            np.testing.assert_array_equal(np.asarray(c), np.asarray(a))
        assert jax.tree.map(lambda a: (a.shape, a.dtype), out) == jax.tree.map(lambda a: (a.shape, a.dtype), buffers)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_an_epoch_reusing_buffers_trains_exactly_as_one_that_does_not(cell, fast_compile):
    # 20 examples in batches of 8: two full minibatches carry the buffers, the remainder of 4
    # is a plain call
    params = _params(cell, 3, 6, 5, 4, seed=7)
    x, y = _batch(20, 9, 3, 4, seed=8)
    opt = train.sgd_momentum(0.1, 0.9, clip_norm=1.0)
    out = {}
    for name, lg in (("plain", F.loss_and_grad), ("reusing", F.loss_and_grad_reusing)):
        p, s = params, opt.init(params)
        epoch = train.make_epoch_fn(lg, opt, 8)
        for e in range(2):
            p, s, loss, finite = epoch(p, s, jax.random.PRNGKey(e), (x, y))
        out[name] = (p, float(loss))
    assert out["reusing"][1] == out["plain"][1]
    for a, b in zip(jax.tree.leaves(out["reusing"][0]), jax.tree.leaves(out["plain"][0])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(out["plain"][0]), jax.tree.leaves(params))) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("cell", R.CELLS)
def test_unrolled_scans_give_the_same_gradients(cell, fast_compile):
    # unroll > 1 is slower (the GRU's in-place writes then copy their buffers) but exact
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(cell, 3, 6, 5, 4, seed=9))
        x, y = _batch(4, 7, 3, 4, seed=10)
        batch = (x.astype(jnp.float64), y)
        _, g1 = F.loss_and_grad(params, batch)
        _, g3 = F.loss_and_grad(params, batch, unroll=3)
        for a, b in zip(jax.tree.leaves(g3), jax.tree.leaves(g1)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)
