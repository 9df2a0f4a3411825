"""Q1 experiment end to end (--quick, building the stand-in in tmp_path): the default run
reused by both studies, vmapped and one-after-another studies agreeing, figures, and
training on the manual gradients and on jax.grad giving the same parameters (float64)."""
from __future__ import annotations

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import plotting
from experiments import q1_autoencoder as q1
from mp_jax.engine import lbfgs, train
from mp_jax.models import autoencoder as ae

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = ("patches_rgb.png", "patches_preprocessed.png", "features.png", "features_optimizers.png",
           "optimizer_curves.png", "features_beta_rho.png", "features_sweep.png", "reconstructions.png")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick run as the main job runs it on a CPU (studies one run after another),
    then the same command again (every run loaded from its checkpoint)."""
    root = tmp_path_factory.mktemp("q1run")
    argv = ["--quick", "--no-vmap", "--data-dir", str(root / "data"), "--results-dir", str(root / "results"),
            "--no-progress"]
    assert q1.main(argv) == 0
    first = json.loads((root / "results" / "q1_quick_no-vmap" / "metrics.json").read_text())
    assert q1.main(argv) == 0
    return root, first


@pytest.fixture(scope="module")
def quick_run_vmapped(quick_run):
    """The same quick run with --vmap (reusing the stand-in built by ``quick_run``)."""
    root, _ = quick_run
    argv = ["--quick", "--vmap", "--data-dir", str(root / "data"), "--results-dir", str(root / "results_vmap"),
            "--no-progress"]
    assert q1.main(argv) == 0
    return json.loads((root / "results_vmap" / "q1_quick_vmap" / "metrics.json").read_text())


def test_the_default_run_is_trained_once_and_reused(quick_run):
    _, m = quick_run
    c = q1.Q1Config.quick()
    distinct = {(r["hidden"], r["lam"], r["beta"], r["rho"]) for r in [*m["beta_rho"], *m["sweep"]]}
    # L-BFGS: the default, 4 more (β, ρ), 8 more (L_hid, λ); and the SGD comparison run
    assert len(distinct) == 1 + (len(c.beta_rho) - 1) + (len(c.sweep_hidden) * len(c.sweep_lam) - 1) == 13
    assert m["training"]["trained"] == 14 and m["training"]["loaded"] == 0
    default = [r for r in [*m["beta_rho"], *m["sweep"]] if r["name"] == m["name"]]
    assert len(default) == 2  # in the (β, ρ) table and in the sweep
    for r in default:  # the same run: the same numbers and the same recorded time
        assert r["final_cost"] == m["final_cost"] and r["seconds"] == m["seconds"]


def test_a_second_call_loads_every_run_with_its_recorded_time(quick_run):
    root, first = quick_run
    again = json.loads((root / "results" / "q1_quick_no-vmap" / "metrics.json").read_text())
    assert again["training"]["trained"] == 0 and again["training"]["loaded"] == 14
    assert again["training"]["train_seconds"] == pytest.approx(first["training"]["train_seconds"])
    for a, b in zip([again, *again["beta_rho"], *again["sweep"], *again["optimizers"].values()],
                    [first, *first["beta_rho"], *first["sweep"], *first["optimizers"].values()]):
        assert a["name"] == b["name"] and a["final_cost"] == b["final_cost"]
        assert a["loaded"] and not b["loaded"] and a["seconds"] == pytest.approx(b["seconds"]) and a["seconds"] > 0


def test_vmapped_and_sequential_members_agree(quick_run, quick_run_vmapped):
    """The studies trained as vmapped programs give each member the run trained alone, to
    float32 round-off (the exact equality, in float64, is tested in tests/test_lbfgs.py)."""
    _, q = quick_run
    v = quick_run_vmapped
    assert v["sweep_timing"]["mode"] == "vmap" and q["sweep_timing"]["mode"] == "sequential"
    assert set(v) == set(q)
    for study in ("beta_rho", "sweep"):
        assert len(v[study]) == len(q[study]) > 0
        for a, b in zip(v[study], q[study]):
            assert set(a) == set(b)
            assert a["name"] == b["name"] and a["iterations"] == b["iterations"] == 20, a["name"]
            # float32: 20 L-BFGS iterations amplify round-off (batched vs single matmuls) to ~1e-3 in J
            assert a["final_cost"] == pytest.approx(b["final_cost"], rel=5e-3), a["name"]
            for k in ("heldout_reconstruction_mse", "mean_hidden_activation"):
                assert a[k] == pytest.approx(b[k], rel=3e-2), (a["name"], k)
            for k in ("duplicate_units", "noise_units", "dead_units", "distinct_structured_units"):
                assert abs(a[k] - b[k]) <= 1, (a["name"], k)
    # vmapped too, the default run is reused (trained alone once): 12 members in 4 programs
    assert v["beta_rho"][0]["final_cost"] == v["final_cost"] and v["training"]["trained"] == 2 + 4


def test_quick_run_builds_the_stand_in(quick_run):
    import h5py

    root, _ = quick_run
    with h5py.File(root / "data" / "data1.h5", "r") as f:
        assert f["data"].shape == (10240, 3, 16, 16) and f.attrs["source_kind"] == "stand-in"


def test_quick_run_metrics(quick_run):
    _, m = quick_run
    for key in ("final_cost", "cost_terms", "mean_hidden_activation", "rho", "heldout_reconstruction_mse",
                "heldout_mean_patch_mse", "duplicate_fraction", "optimizers", "beta_rho", "sweep"):
        assert key in m, key
    assert set(m["cost_terms"]) == {"reconstruction", "weight_decay", "sparsity"}
    assert m["final_cost"] == pytest.approx(sum(m["cost_terms"].values()), rel=1e-6)
    assert m["optimizer"] == "lbfgs" and set(m["optimizers"]) == {"lbfgs", "sgd"}
    c = q1.Q1Config.quick()
    assert [(r["hidden"], r["lam"]) for r in m["sweep"]] == [(h, lam) for h in c.sweep_hidden for lam in c.sweep_lam]
    assert [(r["beta"], r["rho"]) for r in m["beta_rho"]] == [tuple(map(float, br)) for br in c.beta_rho]
    for r in [m, *m["sweep"], *m["beta_rho"], *m["optimizers"].values()]:
        assert np.isfinite(r["final_cost"]) and 0 <= r["duplicate_fraction"] <= 1
        assert 0 < r["mean_hidden_activation"] < 1
    for r in [m, *m["sweep"], *m["beta_rho"]]:  # L-BFGS: iterations counted, and why it stopped
        assert r["iterations"] <= c.lbfgs_iters and r["stop_reason"] in lbfgs.STOP_REASONS
        assert r["converged"] == (r["stop_reason"] != "max_iter")
    # even 20 iterations learn something: better than predicting the mean patch
    assert m["heldout_reconstruction_mse"] < m["heldout_mean_patch_mse"]
    assert m["data"]["n_patches"] == 1200 and m["data"]["n_heldout"] == 120
    # the sparsity target is honoured where β is large
    big_beta = next(r for r in m["beta_rho"] if r["beta"] == 10.0)
    assert big_beta["mean_hidden_activation"] == pytest.approx(big_beta["rho"], abs=0.01)


def test_quick_run_counts_units_and_chooses_settings(quick_run):
    from mp_jax.models import autoencoder_measures as measures

    _, m = quick_run
    for r in [m, *m["sweep"], *m["beta_rho"], *m["optimizers"].values()]:
        h = r["hidden"]
        assert 0 <= r["noise_units"] <= h and 0 <= r["dead_units"] <= h and -1 <= r["mean_smoothness"] <= 1
        assert r["structured_units"] == h - r["noise_units"]
        useful = r["distinct_structured_units"] + r["structured_duplicate_units"]  # structured and alive
        assert h - r["noise_units"] - r["dead_units"] <= useful <= h - max(r["noise_units"], r["dead_units"])
    # ρ = 0.001 leaves most units never responding; the default setting keeps most of them
    tiny_rho = next(r for r in m["beta_rho"] if r["rho"] == 0.001)
    assert tiny_rho["dead_units"] >= tiny_rho["hidden"] / 2
    assert m["distinct_structured_units"] >= m["hidden"] / 2 and m["dead_units"] < m["hidden"] / 2
    # each choice is the rule applied to its study's records, and names one of them
    st = m["settings"]
    for key, study, keys, limit, smooth in (("beta_rho_choice", "beta_rho", ("beta", "rho"), st["sparse_code_max"], None),
                                            ("sweep_choice", "sweep", ("hidden", "lam"), None, st["smooth_units_min"])):
        choice = m[key]
        assert choice == measures.choose_setting(m[study], keys, max_mean_activation=limit, min_smoothness=smooth)
        useful = [r for r in m[study] if r["heldout_mse_ratio"] < 1] or m[study]
        sparse = [r for r in useful if (limit is None or r["mean_hidden_activation"] <= limit)
                  and (smooth is None or r["mean_smoothness"] >= smooth)] or useful
        best = max(r["distinct_structured_units"] for r in sparse)
        chosen = next(r for r in m[study] if r["name"] == choice["name"])
        assert chosen["distinct_structured_units"] == best and {k: chosen[k] for k in keys} == choice["setting"]
        assert len(choice["candidates"]) == len(m[study]) and choice["rule"]
    assert set(m["unit_census"]) == {"noise", "dead", "distinct_structured"}


def test_quick_run_figures(quick_run):
    root, _ = quick_run
    for name in FIGURES:
        data = (root / "results" / "q1_quick_no-vmap" / name).read_bytes()
        assert data[:8] == PNG and len(data) > 5000, name


def test_config_from_arguments():
    import argparse

    args = argparse.Namespace(quick=True, seed=3, optimizer="sgd", lbfgs_iters=None, sgd_epochs=7, vmap=None)
    c = q1.Q1Config.from_args(args)
    assert c.is_quick and c.hidden == 16 and c.seed == 3 and c.optimizer == "sgd" and c.sgd_epochs == 7
    assert c.lbfgs_iters == q1.Q1Config.quick().lbfgs_iters  # not given: the quick value
    assert q1.Q1Config().hidden == 64 and not q1.Q1Config().is_quick
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden = 5


def test_mosaic():
    from mp_jax.models.autoencoder_measures import unit_images

    w = np.arange(256 * 3, dtype=float).reshape(256, 3)
    m = plotting.mosaic(unit_images(w))
    assert m.shape == (2 * 17 + 1, 2 * 17 + 1)
    assert m.min() == -1.0 and m.max() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- manual gradients vs jax.grad
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


def test_the_handouts_strongest_sparsity_trains_alike_in_float32_and_float64(tmp_path):
    """The handout's β = 10 member (SGD, momentum 0.9, rate 0.075, batch 32, the run's own
    initial parameters and shuffling) over its first epoch on the stand-in patches. In float64
    some unit's largest pre-activation on a batch falls below −87.3, where float32's σ(a) is 0
    on the whole batch: the textbook s·h(1 − h) of (AE12)-(AE13) is −∞ · 0 there (NaN, the
    float32 run's end before the log domain). With (AE18)-(AE22) the engine's float32 run
    follows the float64 one: its mean loss within 1e-4 relative and every unit's ρ̂ over the
    training set within 5 % (measured 6e-6 and 1.4 %), everything finite."""
    c = q1.Q1Config.make(recipe="handout", data_dir=tmp_path)
    assert c.optimizer == "sgd" and (10.0, 0.026) in c.beta_rho  # the handout's member, its own settings
    data = q1.load(c)
    hp = c.hp._replace(beta=10.0, rho=0.026)
    key_init, key_fit = jax.random.split(jax.random.PRNGKey(c.seed))  # as q1.Trainer
    p0 = q1._init(key_init, c.hidden)
    opt, fit_config = c.sgd_config()
    fit_config = dataclasses.replace(fit_config, epochs=1)
    step = functools.partial(ae.loss_and_grad, hp=hp)
    run32 = train.fit(step, opt, p0, data.x_train, fit_config, key=key_fit, progress=False)
    with jax.enable_x64(True):
        # the same epoch in float64, step by step in the engine's order (its permutation of the
        # epoch's key), recording how low each step's pre-activations go
        x64 = jnp.asarray(data.x_train, jnp.float64)
        n, bs = x64.shape[0], fit_config.batch_size
        order = jax.random.permutation(jax.random.split(key_fit)[1], n)[: n // bs * bs].reshape(-1, bs)

        def body(carry, idx):
            p, s = carry
            a = x64[idx] @ p.w_enc + p.b_hid
            loss, g = step(p, x64[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), (loss, jnp.min(jnp.max(a, axis=0)))

        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), p0)
        (p_end, _), (losses, lowest) = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), order))(p64)
        assert n % bs == 0 and float(jnp.min(lowest)) < -87.3  # some unit's σ(a) is 0 in float32 on a whole batch
        rho64, rho32 = (np.asarray(ae.mean_hidden_activation(jax.tree.map(lambda a: a.astype(jnp.float64), p), x64))
                        for p in (p_end, run32.last_params))
        loss64 = float(jnp.mean(losses))
    assert jax.tree.leaves(run32.last_params)[0].dtype == jnp.float32
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(run32.last_params))
    loss32 = run32.history["train_loss"][0]
    assert np.isfinite(loss32) and abs(loss32 - loss64) <= 1e-4 * abs(loss64)
    assert np.max(np.abs(rho32 - rho64) / rho64) <= 0.05


def _tiny_q1(monkeypatch, **changes):
    """Q1's --quick shrunk further (400 patches, one epoch, one sweep member), with ``changes``."""
    quick = q1.Q1Config.quick.__func__

    def tiny(cls, **more):
        return quick(cls, **{**dict(n_patches=400, sgd_epochs=1, lbfgs_iters=10, lbfgs_chunk=10, sweep_hidden=(4,),
                                    sweep_lam=(5e-4,)), **changes, **more})
    monkeypatch.setattr(q1.Q1Config, "quick", classmethod(tiny))


def test_a_study_member_that_diverges_is_a_result(tmp_path, monkeypatch, caplog):
    """β = 1e30 makes one member of an SGD (β, ρ) study overflow at its second step. A vmapped
    study that diverges is trained again one member after another (here the vmapped program is
    made to fail at once); the member's record, its figure panel and the report's table say
    where it diverged (epoch, step, last finite minibatch J), the choice passes it over, and
    the study returns every member."""
    from experiments import report
    from mp_jax.protocols import runs

    c = q1.Q1Config.quick(optimizer="sgd", vmap=True, n_patches=400, sgd_epochs=1, data_dir=tmp_path, progress=False)
    trainer = q1.Trainer(c, q1.load(c), runs.RunContext(progress=False))

    def vmapped_fails(*args, **kwargs):
        raise FloatingPointError("4 × ae_sgd_H16 (vmapped): member(s) [1] became non-finite at epoch 1")

    monkeypatch.setattr(q1.sweep, "fit_sweep", vmapped_fails)
    hps = [c.hp, c.hp._replace(beta=1e30)]
    with caplog.at_level("WARNING"):
        out = trainer.study(c.hidden, hps)
    assert "training the members one after another instead" in caplog.text
    (good, kept), (bad, rec) = out
    assert "diverged" not in kept and rec["beta"] == 1e30
    d = rec["diverged"]
    assert d["epoch"] == 1 and d["step"] == 2 and np.isfinite(d["last_finite_loss"]) and d["last_finite_loss"] > 1e29
    assert d["reason"] == f"non-finite at epoch 1, step 2, last finite minibatch J {d['last_finite_loss']:.4g}; " \
                          "weights from the end of epoch 0"
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(bad))  # the last finite weights, shown
    assert json.loads(json.dumps(rec))["diverged"] == d
    assert plotting.feature_title(rec).endswith("DIVERGED: non-finite at epoch 1, step 2, last finite minibatch J "
                                                f"{d['last_finite_loss']:.4g}\nweights from the end of epoch 0")
    choice = q1.measures.choose_setting([kept, rec], ("beta", "rho"))
    assert choice["setting"]["beta"] == c.hp.beta
    lines = []
    report._unit_table(lines, [kept, rec], (("β", "beta"), ("ρ", "rho"), ("mean ρ̂", "mean_hidden_activation")))
    assert lines[-2] == f"| 1e+30 | 0.026 | – | diverged: {d['reason']} | – | – | – |"
    assert "diverged" not in lines[-3]


def test_a_main_model_that_diverges_stops_the_question(tmp_path, monkeypatch, capsys):
    from mp_jax.runtime import cli

    _tiny_q1(monkeypatch, hp=ae.AEHyper(lam=5e-4, beta=1e30, rho=0.026))
    status = cli.run_main(q1.main, ["--quick", "--optimizer", "sgd", "--data-dir", str(tmp_path / "data"),
                                    "--results-dir", str(tmp_path / "results"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith("error: training diverged: ae_sgd_H16_lam0.0005_beta1e+30_rho0.026: the training loss "
                          "became non-finite at epoch 1 (at step 2 of")
    assert not (tmp_path / "results" / "q1" / "metrics.json").exists()
