import argparse
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import q3_activity as q3

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_quick_end_to_end(tmp_path, capsys):
    res = tmp_path / "results"
    assert q3.main(["--quick", "--data-dir", str(tmp_path / "data"), "--results-dir", str(res), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("q3 data:") == 1
    out = res / "q3"
    m = json.loads((out / "metrics.json").read_text())
    names = m["data"]["class_names"]
    assert len(names) == 6
    assert m["data"]["validation"]["kind"] == "subject" and m["data"]["validation"]["subjects"]
    for model in ("rnn", "lstm", "gru", "baseline"):
        r = m[model]
        for key in ("test_accuracy", "train_accuracy", "confusion_test", "seconds_per_epoch", "epochs_run",
                    "learning_rate"):
            assert key in r, (model, key)
        cm = np.array(r["confusion_test"])
        assert cm.shape == (6, 6) and cm.sum() == m["data"]["n_test"]
        assert abs(np.trace(cm) / cm.sum() - r["test_accuracy"]) < 1e-9
        assert 0.0 <= r["train_accuracy"] <= 1.0 and r["epochs_run"] >= 1
        assert r["seconds_per_epoch"] > 0
        assert len(r["history"]["train_loss"]) == r["epochs_run"]
        png = (out / f"{model}_confusion.png").read_bytes()
        assert png[:8] == PNG and len(png) > 20000
    for model in ("rnn", "lstm", "gru"):
        assert m[model]["learning_rate"] == q3.Q3Config().lr(model)
        assert m[model]["seconds"] > 0 and m[model]["loaded"] is False
        assert (out / f"{model}_loss.png").read_bytes()[:8] == PNG
    # the baseline learns something even in the quick run; the cells at least run
    assert m["baseline"]["test_accuracy"] > 2 * m["chance_accuracy"]
    assert (out / "loss_all.png").read_bytes()[:8] == PNG
    table = (out / "comparison.md").read_text()
    assert "GRU" in table and "logistic baseline" in table
    assert m["settings"]["impl"] == "fast" and m["training"]["trained"] == 4


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
    assert q3.Q3Config().lr("rnn") == 0.001 and q3.Q3Config().epochs == 50


def test_impl_names_the_gradients_and_keys_the_checkpoint():
    from mp_jax.models import recurrent, recurrent_fast

    assert q3.gradients("fast") == (recurrent_fast.loss_and_grad_reusing, recurrent_fast.loss_and_grad)
    assert q3.gradients("reference") == (recurrent.loss_and_grad, recurrent.loss_and_grad)
    with pytest.raises(ValueError, match="--impl"):
        q3.gradients("slow")
    fast, ref = q3.Q3Config(), q3.Q3Config(impl="reference")
    assert fast.run_config("gru", 0)["impl"] == "fast" and ref.run_config("gru", 0)["impl"] == "reference"
    assert fast.run_config("gru", 1, data_seed=0)["data_seed"] == 0 and "data_seed" not in fast.run_config("gru", 0, 0)


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

    # lr 3 with patience 1: the members stop early, at different epochs (2, 2, 3 of at most 4)
    c = q3.Q3Config(hidden=8, mlp=8, batch_size=16, epochs=4, patience=1, progress=False,
                    learning_rates=(("lstm", 3.0),))
    seeds = [0, 1, 2]
    with jax.enable_x64(True):
        tr, va = _tiny_problem()
        # one after another: each member is mp_jax.train.fit of that seed alone
        alone = q3.train_seeds("lstm", seeds, tr, va, c, 3, vmap=False)
        vmapped = q3.train_seeds("lstm", seeds, tr, va, c, 3, vmap=True)
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
        params, key = q3.member_init("lstm", q3.member_key(seed, "lstm"), 3, c, 3)
        chex.assert_trees_all_equal(params, recurrent.init_params(k_init, "lstm", 3, 8, 8, 3))
        np.testing.assert_array_equal(key, k_fit)


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_quick_seed_sweep_end_to_end_and_skipped_when_run_again(tmp_path):
    argv = ["--quick", "--models", "lstm", "--seeds", "2", "--vmap", "--data-dir", str(tmp_path / "data"),
            "--results-dir", str(tmp_path / "results"), "--no-progress"]
    assert q3.main(argv) == 0
    out = tmp_path / "results" / "q3"
    m = json.loads((out / "metrics.json").read_text())
    r = m["lstm"]
    assert m["settings"]["seeds"] == 2 and m["settings"]["vmap"] is True
    accs = [x["test_accuracy"] for x in r["members"]]
    assert [x["seed"] for x in r["members"]] == [0, 1] == r["over_seeds"]["seeds"]
    assert r["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert r["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert r["test_accuracy"] == accs[0]  # the per-model fields are seed 0's
    assert r["seed_sweep"]["mode"] == "vmap" and r["seed_sweep"]["members"] == 2
    assert r["seed_sweep"]["seconds"] > 0 and r["seed_sweep"]["loaded_members"] == 0
    for x in r["members"]:
        assert len(x["history"]["train_loss"]) == x["epochs_run"] >= 1
    assert "test acc. over 2 seeds (mean ± std)" in (out / "comparison.md").read_text()
    assert (out / "lstm_confusion.png").read_bytes()[:8] == PNG
    assert "seeds" not in m["baseline"] and "over_seeds" not in m["baseline"]
    # the finished sweep was saved: running again loads it, with the same results and time
    assert q3.main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())["lstm"]
    assert again["seed_sweep"]["loaded_members"] == 2
    assert again["seed_sweep"]["seconds"] == pytest.approx(r["seed_sweep"]["seconds"])
    assert [x["test_accuracy"] for x in again["members"]] == accs
