"""Q1 experiment end to end (--quick, building the stand-in in tmp_path), its quality
measures, and issue 3 point 5: training on the manual gradients and on jax.grad gives
the same parameters (float64)."""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import q1_autoencoder as q1
from mp_jax import lbfgs, train
from mp_jax.models import autoencoder as ae

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("patches_rgb.png", "patches_preprocessed.png", "features.png", "features_optimizers.png",
           "optimizer_curves.png", "features_beta_rho.png", "features_sweep.png", "reconstructions.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("q1run")
    argv = ["--quick", "--data-dir", str(root / "data"), "--results-dir", str(root / "results"), "--no-progress"]
    assert q1.main(argv) == 0
    return root


@pytest.fixture(scope="module")
def quick_run_sequential(quick_run):
    """The same quick run with --no-vmap (reusing the stand-in built by ``quick_run``)."""
    argv = ["--quick", "--no-vmap", "--data-dir", str(quick_run / "data"), "--results-dir",
            str(quick_run / "results_sequential"), "--no-progress"]
    assert q1.main(argv) == 0
    return quick_run / "results_sequential"


def test_vmapped_and_sequential_members_agree(quick_run, quick_run_sequential):
    """Issue 8: the (β, ρ) study and the sweep trained as vmapped programs (the default)
    give each member the same run as training it alone (--no-vmap), to float32 round-off."""
    v = json.loads((quick_run / "results" / "q1" / "metrics.json").read_text())
    q = json.loads((quick_run_sequential / "q1" / "metrics.json").read_text())
    assert v["sweep_timing"]["mode"] == "vmap" and q["sweep_timing"]["mode"] == "sequential"
    assert v["sweep_timing"]["beta_rho"]["programs"] == 1 and v["sweep_timing"]["sweep"]["programs"] == 3
    assert v["sweep_timing"]["beta_rho"]["vmapped_seconds"] > 0 and q["sweep_timing"]["sweep"]["sequential_seconds"] > 0
    assert set(v) == set(q)
    for study in ("beta_rho", "sweep"):
        assert len(v[study]) == len(q[study]) > 0
        for a, b in zip(v[study], q[study]):
            assert set(a) == set(b)
            assert a["name"] == b["name"] and a["iterations"] == b["iterations"] == 20, a["name"]
            # float32: 20 L-BFGS iterations amplify round-off (batched vs single matmuls) to ~1e-3 in J
            # and ~1e-2 in ρ̂; the exact equality (float64, 1e-10) is tested in tests/test_lbfgs.py
            assert a["final_cost"] == pytest.approx(b["final_cost"], rel=5e-3), a["name"]
            for k in ("heldout_reconstruction_mse", "mean_hidden_activation"):
                assert a[k] == pytest.approx(b[k], rel=3e-2), (a["name"], k)
            assert abs(a["duplicate_units"] - b["duplicate_units"]) <= 1
    # the vmapped member with the default setting is the default run itself
    first = v["beta_rho"][0]
    assert first["name"] == v["name"] and first["final_cost"] == pytest.approx(v["final_cost"], rel=5e-3)


def test_quick_run_builds_the_stand_in(quick_run):
    import h5py

    with h5py.File(quick_run / "data" / "data1.h5", "r") as f:
        assert f["data"].shape == (10240, 3, 16, 16) and f.attrs["source_kind"] == "stand-in"


def test_quick_run_metrics(quick_run):
    m = json.loads((quick_run / "results" / "q1" / "metrics.json").read_text())
    for key in ("final_cost", "cost_terms", "mean_hidden_activation", "rho", "heldout_reconstruction_mse",
                "heldout_mean_patch_mse", "duplicate_fraction", "optimizers", "beta_rho", "sweep"):
        assert key in m, key
    assert set(m["cost_terms"]) == {"reconstruction", "weight_decay", "sparsity"}
    assert m["final_cost"] == pytest.approx(sum(m["cost_terms"].values()), rel=1e-6)
    assert m["optimizer"] == "lbfgs" and set(m["optimizers"]) == {"lbfgs", "sgd"}
    s = q1.Settings(**q1.QUICK)
    assert [(r["hidden"], r["lam"]) for r in m["sweep"]] == [(h, lam) for h in s.sweep_hidden for lam in s.sweep_lam]
    assert [(r["beta"], r["rho"]) for r in m["beta_rho"]] == [tuple(map(float, br)) for br in s.beta_rho]
    for r in [m, *m["sweep"], *m["beta_rho"], *m["optimizers"].values()]:
        assert np.isfinite(r["final_cost"]) and 0 <= r["duplicate_fraction"] <= 1
        assert 0 < r["mean_hidden_activation"] < 1
    # even 20 iterations learn something: better than predicting the mean patch
    assert m["heldout_reconstruction_mse"] < m["heldout_mean_patch_mse"]
    assert m["data"]["n_patches"] == 1200 and m["data"]["n_heldout"] == 120
    # the sparsity target is honoured where β is large
    big_beta = next(r for r in m["beta_rho"] if r["beta"] == 10.0)
    assert big_beta["mean_hidden_activation"] == pytest.approx(big_beta["rho"], abs=0.01)


def test_quick_run_figures(quick_run):
    for name in FIGURES:
        data = (quick_run / "results" / "q1" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name


def test_duplicate_fraction():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(256, 10))
    assert q1.duplicate_fraction(w) == 0.0
    w[:, 3] = 2.0 * w[:, 1] + 0.5  # same image, other contrast and offset
    w[:, 7] = w[:, 1] + 0.01 * rng.normal(size=256)
    assert q1.duplicate_fraction(w) == pytest.approx(0.3)
    w[:, 9] = -w[:, 0]  # an inverted copy is a different detector
    assert q1.duplicate_fraction(w) == pytest.approx(0.3)


def test_unit_images_and_mosaic():
    w = np.arange(256 * 3, dtype=float).reshape(256, 3)
    imgs = q1.unit_images(w)
    assert imgs.shape == (3, 16, 16) and imgs[1, 0, 1] == w[1, 1]
    m = q1.mosaic(imgs)
    assert m.shape == (2 * 17 + 1, 2 * 17 + 1)
    assert m.min() == -1.0 and m.max() == pytest.approx(1.0)


def test_short_source():
    assert q1.short_source({}) == "course file"
    assert q1.short_source({"source_kind": "stand-in", "source": "skimage/data/a.png (x); pkg/b/c.jpg (y (z))"}) == \
        "stand-in from a, c"


# ----------------------------------------------------------------------------- issue 3, point 5
def _rel(a, b) -> float:
    a, b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]), np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)])
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_manual_and_autodiff_training_agree_float64(tied=True):
    """300 SGD+momentum steps through the engine, manual gradients vs jax.grad: same parameters."""
    hp = ae.AEHyper(lam=5e-4, beta=2.2, rho=0.05)
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
        x = jax.random.uniform(k2, (64, 256), jnp.float64, 0.1, 0.9)
        p0 = ae.init_params(k1, 8, 256, tied=tied, dtype=jnp.float64)
        cfg = train.FitConfig(epochs=75, batch_size=16)  # 4 steps per epoch: 300 steps
        opt = train.sgd_momentum(0.075, 0.9)
        manual = train.fit(functools.partial(ae.loss_and_grad, hp=hp), opt, p0, x, cfg, key=k3, progress=False)
        auto = train.fit(jax.value_and_grad(functools.partial(ae.loss, hp=hp)), opt, p0, x, cfg, key=k3, progress=False)
        assert manual.last_params.w_enc.dtype == jnp.float64
        moved = _rel(manual.last_params, p0)
        err = _rel(manual.last_params, auto.last_params)
    assert moved > 1e-2  # training really changed the parameters
    assert err <= 1e-8, err
    np.testing.assert_allclose(manual.history["train_loss"], auto.history["train_loss"], rtol=1e-10)


def test_manual_and_autodiff_lbfgs_agree_float64():
    """40 full-batch L-BFGS iterations, manual gradients vs jax.grad: same parameters."""
    hp = ae.AEHyper(lam=5e-4, beta=2.2, rho=0.05)
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.PRNGKey(1))
        x = jax.random.uniform(k2, (64, 256), jnp.float64, 0.1, 0.9)
        p0 = ae.init_params(k1, 8, 256, dtype=jnp.float64)
        cfg = lbfgs.LbfgsConfig(max_iter=40, chunk=20, ftol=0.0, gtol=0.0)
        manual = lbfgs.minimize(ae.loss_and_grad, p0, x, cfg, fn_kwargs={"hp": hp}, progress=False)
        auto = lbfgs.minimize(jax.value_and_grad(ae.loss), p0, x, cfg, fn_kwargs={"hp": hp}, progress=False)
        moved = _rel(manual.params, p0)
        err = _rel(manual.params, auto.params)
    assert manual.iterations == auto.iterations == 40
    assert manual.history["value"][-1] < 0.5 * manual.history["value"][0]
    assert moved > 1e-2
    assert err <= 1e-8, err
