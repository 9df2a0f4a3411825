import argparse
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import q3_activity as q3, tables
from mp_jax.protocols import activity, runs
from q3_checks import PNG, check_quick_metrics

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)



@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_quick_end_to_end(tmp_path, capsys):
    # one recurrent model here; the main job's quick run (tests/test_main_job.py) checks all three
    res = tmp_path / "results"
    assert q3.main(["--quick", "--models", "rnn", "--data-dir", str(tmp_path / "data"), "--results-dir", str(res),
                    "--no-progress"]) == 0
    assert capsys.readouterr().out.count("q3 data:") == 1
    out = res / "q3_quick_models-rnn"
    check_quick_metrics(out, json.loads((out / "metrics.json").read_text()), models=("rnn",))


def test_flags_and_config():
    assert q3.parse_models("gru, rnn") == ("gru", "rnn")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown name"):
        q3.parse_models("rnn,cnn")
    lrs = q3.parse_lrs("all=0.05,gru=0.2")
    assert dict(lrs) == {"rnn": 0.05, "lstm": 0.05, "gru": 0.2}
    with pytest.raises(argparse.ArgumentTypeError, match="--lr"):
        q3.parse_lrs("gru")
    p = argparse.Namespace(quick=True, models=("lstm",), learning_rates=lrs, epochs=None, seeds=3, impl="reference")
    c = q3.Q3Config.from_args(p)
    assert c.is_quick and c.hidden == 16 and c.models == ("lstm",) and c.seeds == 3 and c.lr("gru") == 0.2
    assert c.epochs == q3.Q3Config.quick().epochs  # not given: the quick value
    d = q3.Q3Config()
    assert d.lr("rnn") == 0.01 and d.seeds == 3 and d.augment and d.keep == "last" and d.patience is None
    assert (d.n_epochs("rnn"), d.n_epochs("lstm"), d.n_epochs("gru")) == (30, 60, 30)
    full = q3.Q3Config.from_args(argparse.Namespace(quick=False, epochs=5, augment=False))
    assert {full.n_epochs(m) for m in q3.MODELS} == {5} and not full.augment  # --epochs N: every model's
    assert q3.Q3Config.from_args(argparse.Namespace(quick=False)).n_epochs("lstm") == 60


def test_impl_names_the_gradients_and_keys_the_checkpoint():
    from mp_jax.models import recurrent, recurrent_fast

    assert activity.gradients("fast") == (recurrent_fast.loss_and_grad_reusing, recurrent_fast.loss_and_grad)
    assert activity.gradients("reference") == (recurrent.loss_and_grad, recurrent.loss_and_grad)
    with pytest.raises(ValueError, match="--impl"):
        activity.gradients("slow")
    fast, ref = q3.Q3Config(), q3.Q3Config(impl="reference")
    key = lambda c, *a: c.cell_run_key("data", "split", "gru", *a)  # noqa: E731
    assert key(fast, 0)["config"]["impl"] == "fast" and key(ref, 0)["config"]["impl"] == "reference"
    assert key(fast, 0) != key(ref, 0)
    assert key(fast, 1, 0)["run"]["data_seed"] == 0 and "data_seed" not in key(fast, 0, 0)["run"]


# ----------------------------------------------------------------------------- repeated seeds
def _tiny_problem():
    """64 training and 24 validation windows of T = 5 steps, 3 channels, 3 classes (float64)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(88, 5, 3))
    y = rng.integers(0, 3, 88)
    x[np.arange(88), :, 0] += y[:, None]  # something to learn
    return (jnp.asarray(x[:64]), jnp.asarray(y[:64])), (jnp.asarray(x[64:]), jnp.asarray(y[64:]))


def test_each_seed_sweep_member_equals_that_seed_trained_alone():
    import chex

    from mp_jax.models import recurrent

    # peak lr 5 without warm-up, patience 1: the members stop early, at different epochs (2, 5, 4 of at most 6)
    c = q3.Q3Config(hidden=8, mlp=8, batch_size=16, epochs=6, patience=1, keep="best", warmup_epochs=0.0,
                    progress=False, learning_rates=(("lstm", 5.0),))
    seeds, ctx = [0, 1, 2], runs.RunContext(progress=False)
    with jax.enable_x64(True):
        tr, va = _tiny_problem()
        # one after another: each member is mp_jax.engine.train.fit of that seed alone
        alone = activity.train_seeds(ctx, "lstm", seeds, tr, va, c, 3, vmap=False)
        vmapped = activity.train_seeds(ctx, "lstm", seeds, tr, va, c, 3, vmap=True)
        assert min(m.epochs_run for m in alone) < c.epochs
        assert len({m.epochs_run for m in alone}) > 1  # the members stop at different epochs
        for member, lone in zip(vmapped, alone):
            chex.assert_trees_all_close(member.params, lone.params, rtol=1e-10, atol=1e-12)
            assert (member.epochs_run, member.best_epoch, member.stopped_early) == \
                (lone.epochs_run, lone.best_epoch, lone.stopped_early)
            for k in ("train_loss", "val_loss", "val_accuracy"):
                np.testing.assert_allclose(member.history[k], lone.history[k], rtol=1e-10)
    # and a member is the run `--seed seed` trains: PRNGKey(seed) -> (baseline, rnn, lstm, gru) -> (init, shuffling)
    for seed in seeds:
        k_init, k_fit = jax.random.split(jax.random.split(jax.random.PRNGKey(seed), 4)[2])
        params, key = activity.member_init("lstm", activity.member_key(seed, "lstm"), 3, c, 3)
        chex.assert_trees_all_equal(params, recurrent.init_params(k_init, "lstm", 3, 8, 8, 3))
        np.testing.assert_array_equal(key, k_fit)


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_quick_seed_sweep_end_to_end_and_skipped_when_run_again(tmp_path):
    argv = ["--quick", "--models", "lstm", "--seeds", "2", "--vmap", "--data-dir", str(tmp_path / "data"),
            "--results-dir", str(tmp_path / "results"), "--no-progress"]
    assert q3.main(argv) == 0
    out = tmp_path / "results" / "q3_quick_vmap_models-lstm_seeds-2"
    m = json.loads((out / "metrics.json").read_text())
    r = m["lstm"]
    assert m["settings"]["seeds"] == 2 and m["settings"]["vmap"] is True
    accs = [x["test_accuracy"] for x in r["members"]]
    assert [x["seed"] for x in r["members"]] == [0, 1] == r["seeds"]
    assert r["test_accuracy"] == pytest.approx(np.mean(accs))
    assert r["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert r["test_loss"] == pytest.approx(np.mean([x["test_loss"] for x in r["members"]]))
    assert r["seed_sweep"]["mode"] == "vmap" and r["seed_sweep"]["members"] == 2
    assert r["seconds"] > 0 and r["seed_sweep"]["loaded_members"] == 0
    for x in r["members"]:
        assert len(x["history"]["train_loss"]) == x["epochs_run"] >= 1
    table = (out / "comparison.md").read_text()
    assert "test acc. per seed (0, 1)" in table and "LSTM − logistic baseline" in table
    assert (out / "lstm_confusion.png").read_bytes()[:8] == PNG
    assert m["baseline"]["seeds"] == [0, 1]
    # the finished runs were saved: running again loads them, with the same results and time
    assert q3.main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())["lstm"]
    assert again["seed_sweep"]["loaded_members"] == 2
    assert again["seconds"] == pytest.approx(r["seconds"])
    assert [x["test_accuracy"] for x in again["members"]] == accs


def _record(accs, losses, lr=0.05):
    rows = [{"seed": s, "test_accuracy": a, "test_loss": l, "train_accuracy": 0.9, "train_loss": 0.3,
             "epochs_run": 30, "seconds_per_epoch": 0.5} for s, a, l in zip(range(len(accs)), accs, losses)]
    return {**activity.seed_summary(rows), "learning_rate": lr, "epochs": 30, "val_accuracy": 0.8, "seconds": 45.0}


def test_seed_summary_and_the_gaps_against_the_spread():
    r = _record([0.80, 0.84, 0.88], [0.5, 0.4, 0.3])
    assert r["seeds"] == [0, 1, 2] and r["test_accuracy"] == pytest.approx(0.84)
    assert r["test_accuracy_std"] == pytest.approx(0.04) and r["test_loss"] == pytest.approx(0.4)
    assert r["test_accuracy_per_seed"] == [0.80, 0.84, 0.88] and r["epochs_run"] == 30
    results = {"rnn": _record([0.60, 0.62, 0.64], [0.9, 0.9, 0.9]), "gru": r,
               "baseline": _record([0.81, 0.82, 0.83], [0.6, 0.6, 0.6], lr=0.1)}
    gaps = {(a, b): g for a, b, g in tables.seed_gaps(results)}
    assert gaps[("rnn", "gru")]["gap"] == pytest.approx(-0.22) and gaps[("rnn", "gru")]["exceeds"]
    assert gaps[("gru", "baseline")]["spread"] == pytest.approx(0.05) and not gaps[("gru", "baseline")]["exceeds"]
    table = tables.q3_comparison(results, 1 / 6)
    assert "| GRU | 0.05 | 30 | 80.0% | 84.0 ± 4.0 % | 0.400 ± 0.100 | 80.0, 84.0, 88.0 % |" in table
    assert "- GRU − logistic baseline: +2.0 points, spread 5.0: within the spread" in table
    assert "- RNN − GRU: -22.0 points, spread 6.0: larger than the spread" in table
    one = tables.q3_comparison({"gru": _record([0.8], [0.5])}, 1 / 6)
    assert "One seed" in one and "spread" not in one.split("One seed")[0]


def test_wisdm_file_end_to_end(tmp_path):
    """A user with the WISDM raw file: build data3.h5 from it, then the same protocol runs."""
    from mp_jax.data import __main__ as data_cli
    from wisdm_cases import write_wisdm

    raw = tmp_path / "WISDM_ar_v1.1_raw.txt"
    write_wisdm(raw)
    data = tmp_path / "data"
    assert data_cli.main(["build", "--only", "q3", "--wisdm", str(raw), "--out", str(data)]) == 0
    res = tmp_path / "results"
    # one recurrent model is enough here: the three are checked end to end on the default stand-in
    assert q3.main(["--quick", "--models", "gru", "--data-dir", str(data), "--results-dir", str(res),
                    "--no-progress"]) == 0
    m = json.loads((res / "q3_quick_models-gru" / "metrics.json").read_text())
    assert m["data"]["source"].startswith("stand-in: WISDM v1.1") and m["data"]["class_names"][0] == "downstairs"
    check_quick_metrics(res / "q3_quick_models-gru", m, models=("gru",))


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_selection_scores_on_validation_and_never_touches_the_test_windows(tmp_path, monkeypatch):
    seen = []
    evaluate = activity.evaluate

    def recording(metrics_fn, params, data):
        seen.append(int(data[1].shape[0]))
        return evaluate(metrics_fn, params, data)

    monkeypatch.setattr(activity, "evaluate", recording)
    res = tmp_path / "results"
    argv = ["--quick", "--models", "rnn", "--select", "0.01,0.1", "--data-dir", str(tmp_path / "data"),
            "--results-dir", str(res), "--no-progress"]
    assert q3.main(argv) == 0
    sel = json.loads((res / "q3_quick_models-rnn_select-0.01+0.1" / "selection.json").read_text())
    rows = sel["models"]["rnn"]
    assert [r["learning_rate"] for r in rows] == [0.01, 0.1] and sum(r["best"] for r in rows) == 1
    best = max(rows, key=lambda r: r["val_accuracy"])
    assert best["best"] and all(0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0 for r in rows)
    assert seen == [sel["validation"]["n_val"]] * 2  # scored on the validation subjects only
    assert not (res / "q3_quick_models-rnn_select-0.01+0.1" / "metrics.json").exists()  # no refit, no test score
    assert "| RNN | 0.1 |" in (res / "q3_quick_models-rnn_select-0.01+0.1" / "selection.md").read_text()


def test_comparison_shows_the_validation_runs_best_epoch():
    r = {**_record([0.8, 0.82], [0.5, 0.4]), "validation": {"best_epoch": 43}}
    assert "| GRU | 0.05 | 30 (43) | 80.0% |" in tables.q3_comparison({"gru": r}, 1 / 6)
