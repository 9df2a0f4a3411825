"""Q2 experiment end to end (``--quick``) on a small generated corpus."""
import argparse
import json
import math

import numpy as np
import pytest

from experiments import q2_language_model as q2
from mp_jax.data import build_q2

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)

PNG = b"\x89PNG\r\n\x1a\n"


def generated_corpus(path, n=1500, seed=0):
    """Sentences from a tiny grammar, with the report's anchor phrases among them."""
    rng = np.random.default_rng(seed)
    subj = ["he", "she", "they", "we", "i", "you"]
    verb = ["said", "did", "could", "would", "saw", "made", "took"]
    obj = ["it", "that", "the money", "the house", "a good time", "them", "this"]
    tail = [".", "?", "today .", "again .", "in new york ."]
    lines = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            lines.append("what does new york " + rng.choice(["look like ?", "want ?", "say ?"]))
        elif r < 0.2:
            lines.append("but it 's " + rng.choice(["not good .", "just a house .", "not that ."]))
        else:
            lines.append(" ".join([rng.choice(subj), rng.choice(verb), rng.choice(obj), rng.choice(tail)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_quick_run_writes_every_output(tmp_path, capsys):
    data_dir = tmp_path / "data"
    build_q2.build(data_dir, corpus=generated_corpus(tmp_path / "corpus.txt"))
    results = tmp_path / "results"
    assert q2.main(["--quick", "--data-dir", str(data_dir), "--results-dir", str(results), "--no-progress"]) == 0
    out = results / "q2_quick"
    m = json.loads((out / "metrics.json").read_text())
    v = m["data"]["vocab_size"]
    for d, p in q2.Q2Config().settings:
        s = m[f"D={d},P={p}"]
        for k in ("test_cross_entropy", "perplexity", "top1_accuracy", "top10_accuracy", "best_epoch"):
            assert k in s
        assert 1 <= s["best_epoch"] <= s["epochs_run"] <= q2.Q2Config.quick().epochs
        assert s["seconds"] > 0 and s["loaded"] is False
        assert len(s["history"]["val_loss"]) == s["epochs_run"]
        assert s["perplexity"] == math.exp(s["test_cross_entropy"]) and 0 <= s["top1_accuracy"] <= s["top10_accuracy"] <= 1
        assert (out / f"loss_D{d}_P{p}.png").read_bytes()[:8] == PNG
    kn, mix = m["kneser_ney"], m["interpolated"]
    # The grammar is nearly deterministic: the count model must be far below the uniform log V.
    assert kn["test_cross_entropy"] < 0.6 * math.log(v) and kn["top10_accuracy"] > 0.9
    assert 0.0 <= mix["weight"] <= 1.0
    # the network of lowest validation cross-entropy is the one used, and the rule says so
    sel = m["model_selection"]
    names = [f"D={d},P={p}" for d, p in q2.Q2Config().settings]
    assert sel["rule"] == "lowest validation cross-entropy" and list(sel["val_cross_entropy"]) == names
    assert sel["val_cross_entropy"] == {n: m[n]["val_cross_entropy"] for n in names}
    assert sel["chosen"] == min(names, key=lambda n: m[n]["val_cross_entropy"]) == mix["components"][0]
    assert f"D={sel['chosen_setting']['D']},P={sel['chosen_setting']['P']}" == sel["chosen"]
    assert [(s["D"], s["P"]) for s in m["settings_course_order"]] == [(32, 256), (16, 128), (8, 64)]
    assert all((out / s["loss_figure"]).is_file() for s in m["settings_course_order"])
    # The weight is chosen on validation, so the mixture is no worse there than either part.
    assert mix["val_cross_entropy"] <= min(kn["val_cross_entropy"], m[sel["chosen"]]["val_cross_entropy"]) + 1e-9
    assert len(m["samples"]) == 5
    for s in m["samples"]:
        probs = [pr for _, pr in s["top10"]]
        assert len(probs) == 10 and probs == sorted(probs, reverse=True) and 0 < s["p_true"] <= 1
    # the course's six trigrams in its order: two in this vocabulary, three substitutes, one with no stand-in
    a = m["anchors"]
    assert list(a) == ["but it 's", "what does new", "do nt like", "said , how", "does nt get", "nt get it"]
    assert [a[t]["source"] for t in a] == ["course", "course", "substitute", "none", "substitute", "substitute"]
    assert a["what does new"]["kneser_ney"][0][0] == "york" and a["what does new"]["trigram"] == "what does new"
    assert len(a["but it 's"]["neural"]) == 10 and a["but it 's"]["role"] == "negation"
    # "do nt like" and "does nt get": a negation as word 2, two different test trigrams
    negations = [a[t]["trigram"] for t in ("do nt like", "does nt get")]
    assert len(set(negations)) == 2 and all(t.split()[1] == "not" for t in negations)
    # "nt get it": a trigram that ends sentences in the training data, and the count model agrees
    end = a["nt get it"]
    assert end["role"] == "sentence_end" and end["why"]["score"] > 0.5 and end["kneser_ney"][0][0] in (".", "?")
    assert end["missing"] == ["nt", "get"] and end["stands_for"] == "nt get it" and end["why"]["rule"]
    # no question word at the end of any trigram here: "said , how" has no stand-in, and no predictions
    assert a["said , how"]["trigram"] is None and "neural" not in a["said , how"]
    assert len(m["neighbours"]) >= 3 and all(len(nb) == 10 for nb in m["neighbours"].values())
    assert m["settings"]["patience"] == q2.Q2Config().patience == 5 and m["settings"]["impl"] == "fast"
    for name in ("table.txt", "samples.txt", "neighbours.txt", "anchors.txt"):
        assert (out / name).stat().st_size > 50
    assert (out / "samples.png").stat().st_size > 20_000
    table = (out / "table.txt").read_text()
    assert "kneser_ney" in table and "interpolated" in table
    text = (out / "anchors.txt").read_text()
    assert f"“{end['trigram']}” — a substitute for the course's “nt get it”" in text
    assert "“what does new” — the course's own trigram" in text
    assert "“said , how”: not in this vocabulary" in text
    out = capsys.readouterr().out
    assert "kneser_ney" in out and out.count("q2 data:") == 1


def test_model_selection_is_the_lowest_validation_cross_entropy():
    records = {"D=32,P=256": {"val_cross_entropy": 3.1}, "D=16,P=128": {"val_cross_entropy": 2.9},
               "D=8,P=64": {"val_cross_entropy": 2.9}}
    sel = q2.model_selection(records, ((32, 256), (16, 128), (8, 64)))
    assert sel["chosen"] == "D=16,P=128" and sel["chosen_setting"] == {"D": 16, "P": 128}  # a tie: the first
    assert sel["val_cross_entropy"]["D=32,P=256"] == 3.1 and sel["rule"] == "lowest validation cross-entropy"
    records["D=32,P=256"]["val_cross_entropy"] = 2.0
    assert q2.model_selection(records, ((32, 256), (16, 128), (8, 64)))["chosen"] == "D=32,P=256"
    order = q2.course_order([(8, 64), (4, 16), (32, 256)])
    assert [(s["D"], s["P"]) for s in order] == [(32, 256), (8, 64), (4, 16)]
    assert order[0] == {"D": 32, "P": 256, "name": "D=32,P=256", "loss_figure": "loss_D32_P256.png"}


def test_impl_names_the_gradients_and_keys_the_checkpoint():
    from mp_jax.models import language_model as lm
    from mp_jax.models import language_model_fast as lm_fast

    assert q2.loss_and_grad("reference") is lm.loss_and_grad
    assert q2.loss_and_grad("fast") is lm_fast.loss_and_grad
    with pytest.raises(ValueError, match="--impl"):
        q2.loss_and_grad("slow")
    c = q2.Q2Config.quick()
    assert c.impl == "fast" and q2.Q2Config.from_args(argparse.Namespace(impl="reference")).impl == "reference"


@pytest.mark.slow
def test_reference_and_fast_runs_are_separate_checkpoints(tmp_path):
    """A reference run never resumes a fast one's checkpoint (they differ by rounding)."""
    import jax.numpy as jnp


    from mp_jax.protocols import runs

    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.integers(0, 20, (64, 3)), jnp.int32), jnp.asarray(rng.integers(0, 20, 64), jnp.int32)
    ctx = runs.RunContext.start(tmp_path, progress=False)
    store = ctx.store
    for impl in ("fast", "reference", "fast"):
        c = q2.Q2Config.quick(impl=impl, epochs=1, batch_size=32, progress=False)
        q2.train_setting(ctx, c, 0, 4, 8, 20, "data", (x, y), (x, y))
    assert [e[1] for e in store.events] == ["trained", "trained", "loaded"]
    assert len(list(tmp_path.glob("lm_D4_P8-*.h5"))) == 2


def test_select_parses_a_grid_and_refuses_bad_values():
    from mp_jax.protocols import language

    assert q2.parse_select("P=512,1024") == ("P", (512, 1024))
    assert q2.parse_select("dropout=0,0.5") == ("dropout", (0.0, 0.5))
    assert q2.parse_select("optimizer=adam,sgd") == ("optimizer", ("adam", "sgd"))
    assert q2.parse_select("schedule=constant") == ("schedule", ("constant",)) and q2.parse_select("search") == ("search", ())
    for bad in ("Q=1", "P=", "P=0", "P=1.5", "dropout=1", "dropout=-0.1", "lr=0", "lr=nan", "optimizer=rmsprop",
                "weight_decay=-1", "epochs=x", "schedule=linear"):
        with pytest.raises(argparse.ArgumentTypeError, match="--select"):
            q2.parse_select(bad)
    c = q2.Q2Config(select=(("D", (64, 128)), ("dropout", (0.3, 0.5))))
    grid = language.selection_grid(c)
    assert grid == [{"D": 64, "dropout": 0.3}, {"D": 64, "dropout": 0.5}, {"D": 128, "dropout": 0.3},
                    {"D": 128, "dropout": 0.5}]
    cc = language.at(c, grid[1])
    assert (cc.tuned_embed, cc.tuned_dropout, cc.tuned_hidden) == (64, 0.5, c.tuned_hidden)
    twice = q2.Q2Config(select=(("D", (64,)), ("D", (128,))))
    assert "--select" in twice.usage_errors()[0] and "D" in twice.usage_errors()[0]
    # a search's run is the main job's when their settings agree: select and seeds leave its key alone
    a = q2.Q2Config().tuned_run_key(data="d", split="s", seed=0)
    assert q2.Q2Config(select=(("D", (64,)),), seeds=5).tuned_run_key(data="d", split="s", seed=0) == a
    assert q2.Q2Config(tuned_dropout=0.2).tuned_run_key(data="d", split="s", seed=0) != a
    assert q2.Q2Config().tuned_run_key(data="d", split="s", seed=1) != a
    # the course networks' keys leave every setting of the tuned network alone, and keep their own
    b = q2.Q2Config().course_run_key(data="d", split="s", D=8, P=64)
    for other in (dict(seeds=3), dict(tuned=False), dict(tuned_dropout=0.1), dict(select=(("D", (64,)),))):
        assert q2.Q2Config(**other).course_run_key(data="d", split="s", D=8, P=64) == b, other
    for other in (dict(learning_rate=0.1), dict(recipe="handout"), dict(impl="reference")):
        assert q2.Q2Config(**other).course_run_key(data="d", split="s", D=8, P=64) != b, other


def test_select_and_seeds_are_flags(capsys):
    with pytest.raises(SystemExit) as e:
        q2.main(["--select", "P=8", "--select", "P=16"])
    assert e.value.code == 2 and "one --select per key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        q2.main(["--select", "dropout=2"])
    assert e.value.code == 2 and "dropout: expected a number in [0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_search_then_the_tuned_network_over_seeds(tmp_path):
    from mp_jax.protocols import runs

    data_dir = tmp_path / "data"
    build_q2.build(data_dir, corpus=generated_corpus(tmp_path / "corpus.txt", n=600))
    results = tmp_path / "results"
    flags = ["--quick", "--data-dir", str(data_dir), "--results-dir", str(results), "--no-progress"]
    # the search alone: two points, scored on the validation split
    assert q2.main(flags + ["--select", "dropout=0.2,0.4", "--select", "P=16"]) == 0
    found = sorted(p.parent for p in results.glob("q2*/selection.json"))  # the search's folder, named by its flags
    assert len(found) == 1, found
    out = found[0]
    sel = json.loads((out / "selection.json").read_text())
    rows = sel["rows"]
    assert [r["point"] for r in rows] == [{"dropout": 0.2, "P": 16}, {"dropout": 0.4, "P": 16}]
    assert [r["best"] for r in rows] == [r is min(rows, key=lambda r: r["val_cross_entropy"]) for r in rows]
    assert all(r["setting"]["P"] == 16 and r["setting"]["D"] == q2.Q2Config.quick().tuned_embed for r in rows)
    assert not (out / "metrics.json").exists() and "(best)" in (out / "selection.md").read_text()
    # the main job at the second point, two seeds: seed 0's run is the search's, loaded from its checkpoint
    c = q2.Q2Config.quick(data_dir=data_dir, results_dir=results, progress=False, seeds=2, tuned_hidden=16,
                          tuned_dropout=0.4)
    ctx = runs.RunContext.start(out / "checkpoints", progress=False)
    m = q2.run(c, ctx)
    events = {name: event for name, event, *_ in ctx.store.events}
    assert events["lm_tuned_D16_P16_seed0"] == "loaded" and events["lm_tuned_D16_P16_seed1"] == "trained"
    t, mix = m["tuned"], m["interpolated_tuned"]
    assert t["seeds"] == [0, 1] and t["setting"]["P"] == 16 and t["n_params"] > 0
    assert t["test_cross_entropy"] == pytest.approx(np.mean(t["test_cross_entropy_per_seed"]))
    assert t["test_cross_entropy_std"] == pytest.approx(np.std(t["test_cross_entropy_per_seed"], ddof=1))
    assert t["val_cross_entropy_per_seed"][0] == pytest.approx(rows[1]["val_cross_entropy_per_seed"][0])
    for r in t["members"]:
        assert 1 <= r["best_epoch"] <= r["epochs_run"] == c.tuned_epochs
    # each seed's mixture is no worse on validation than either of its parts
    for w, v, tv in zip(mix["weight_per_seed"], mix["val_cross_entropy_per_seed"], t["val_cross_entropy_per_seed"]):
        assert 0 <= w <= 1 and v <= min(tv, m["kneser_ney"]["val_cross_entropy"]) + 1e-9
    f = m["by_context_frequency"]
    assert f["bins"] == ["0", "1-5", "6-50", ">50"] and sum(f["n"]) == m["data"]["n_test"]
    assert set(f["cross_entropy"]) == {"kneser_ney", m["model_selection"]["chosen"], "interpolated", "tuned",
                                       "interpolated_tuned"} and f["seeds"]["tuned"] == 2
    for name in ("kneser_ney", "interpolated"):  # the bins' weighted mean is the whole cross-entropy
        whole = sum(n * v for n, v in zip(f["n"], f["cross_entropy"][name]) if v is not None) / sum(f["n"])
        assert whole == pytest.approx(m[name]["test_cross_entropy"])
    out = results / c.results_name("q2")  # the folder this configuration's results go to
    for name in ("loss_tuned.png", "context_frequency.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "mean of 2 seeds" in (out / "table.txt").read_text()


def test_the_tuned_recipe_and_its_gradients():
    import functools

    from mp_jax.models import language_model_dropout as lmd
    from mp_jax.models import language_model_fast as lm_fast
    from mp_jax.protocols import language

    c = q2.Q2Config()
    opt, fit = language.tuned_fit(c, 1000)
    assert (fit.epochs, fit.batch_size, fit.patience, fit.keep) == (c.tuned_epochs, c.tuned_batch, None, "best")
    assert isinstance(fit.augment, lmd.FreshSeeds)
    grad = language.tuned_loss_and_grad(c)
    assert isinstance(grad, functools.partial) and grad.func is lmd.loss_and_grad and grad.keywords == {"rate": 0.4}
    plain = q2.Q2Config(tuned_dropout=0.0)
    assert language.tuned_loss_and_grad(plain) is lm_fast.loss_and_grad and language.tuned_fit(plain, 1000)[1].augment is None
    for bad in (dict(tuned_optimizer="rmsprop"), dict(tuned_schedule="linear")):
        with pytest.raises(ValueError, match="tuned_"):
            language.tuned_fit(q2.Q2Config(**bad), 1000)
    # weight decay shrinks W1 and W2 only: with a zero gradient, an update moves those two leaves alone
    import jax
    import jax.numpy as jnp

    from mp_jax.models import language_model as lm

    params = lm.init_params(jax.random.PRNGKey(0), 10, 2, 3, std=1.0)
    for name in ("adam", "sgd"):
        o, _ = language.tuned_fit(q2.Q2Config(tuned_optimizer=name, tuned_schedule="constant"), 1000)
        updates, _ = o.update(jax.tree.map(jnp.zeros_like, params), o.init(params), params)
        moved = {k for k, u in zip(params._fields, updates) if float(jnp.max(jnp.abs(u))) > 0}
        assert moved == {"w_hid", "w_out"}, name
    with pytest.raises(SystemExit) as e:
        q2.main(["--select", "search", "--select", "P=8"])
    assert e.value.code == 2
