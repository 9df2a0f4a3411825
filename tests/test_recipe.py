"""``--recipe handout``: the course handout's settings as a transformation of each question's
config, its runs beside the default recipe's (own folder, own checkpoints), REPORT.md's side-by-side table, and
docs/recipes.md's settings table tied to the config dataclasses."""
import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from experiments import report
from experiments.config import RECIPES, results_name
from experiments import __main__ as main_job
from experiments import q1_autoencoder as q1
from experiments import q2_language_model as q2
from experiments import q3_activity as q3

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

FAST_COMPILE = True  # tiny programs compiled once (conftest)

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
CONFIGS = {"Q1Config": q1.Q1Config, "Q2Config": q2.Q2Config, "Q3Config": q3.Q3Config}


def test_the_handout_configs_carry_the_handouts_numbers():
    c = q3.Q3Config.handout()
    assert c.recipe == "handout" and (c.batch_size, c.momentum, c.epochs) == (32, 0.85, 50)
    assert {c.lr(m) for m in q3.MODELS} == {0.1} and {c.n_epochs(m) for m in q3.MODELS} == {50}
    assert c.schedule == "constant" and c.clip_norm is None and not c.augment and c.seeds == 1 and not c.refit
    assert (c.val_fraction, c.validation, c.keep, c.patience) == (0.1, "random", "best", None)
    assert c.hidden == q3.Q3Config().hidden == 128  # what the handout and the default share stays
    p = q2.Q2Config.handout()
    assert (p.batch_size, p.learning_rate, p.momentum, p.epochs, p.init_std) == (200, 0.15, 0.85, 50, 0.01)
    a = q1.Q1Config.handout()
    assert a.optimizer == "sgd" and (a.sgd_lr, a.sgd_momentum, a.sgd_batch, a.sgd_epochs) == (0.075, 0.9, 32, 200)
    # the default is unchanged, and --quick keeps its tiny sizes under either recipe
    assert q3.Q3Config().recipe == "default" and q3.Q3Config.from_args(argparse.Namespace(quick=False)) == q3.Q3Config()
    tiny = q3.Q3Config.from_args(argparse.Namespace(quick=True, recipe="handout"))
    assert tiny.is_quick and tiny.epochs == q3.Q3Config.quick().epochs and tiny.hidden == 16
    assert tiny.momentum == 0.85 and tiny.clip_norm is None and not tiny.refit
    assert q3.Q3Config.from_args(argparse.Namespace(quick=False, recipe="handout", epochs=7)).n_epochs("lstm") == 7
    with pytest.raises(ValueError, match="recipe"):
        q3.Q3Config.make(recipe="theirs")


def test_the_handout_runs_have_their_own_checkpoint_keys_and_folders(tmp_path):
    import jax.numpy as jnp


    from mp_jax.protocols import runs

    default, handout = q3.Q3Config(), q3.Q3Config.handout()
    key = lambda c: c.cell_run_key("data", "split", "gru", 0)  # noqa: E731
    assert key(default) != key(handout)
    same = q3.Q3Config(recipe="handout")  # even with every other setting equal
    assert key(same) != key(default)
    assert (default.results_name("q3"), handout.results_name("q3")) == ("q3", "q3_handout")
    # Q2's settings are the handout's already: only the recipe tells the runs apart
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.integers(0, 20, (64, 3)), jnp.int32), jnp.asarray(rng.integers(0, 20, 64), jnp.int32)
    ctx = runs.RunContext.start(tmp_path, progress=False)
    store = ctx.store
    for recipe in ("default", "handout", "default"):
        c = q2.Q2Config.make(is_quick=True, recipe=recipe, epochs=1, batch_size=32, progress=False)
        q2.train_setting(ctx, c, 0, 4, 8, 20, "data", (x, y), (x, y))
    assert [e[1] for e in store.events] == ["trained", "trained", "loaded"]


@pytest.mark.parametrize("entry", ["experiments", "experiments.q2_language_model", "experiments.q3_activity"])
def test_a_bad_recipe_is_one_usage_line(entry, capsys):
    main = {"experiments": main_job.main, "experiments.q2_language_model": q2.main,
            "experiments.q3_activity": q3.main}[entry]
    with pytest.raises(SystemExit) as e:
        main(["--recipe", "theirs"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "--recipe" in err and "handout" in err, err


def test_seeds_without_a_refit_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        q3.main(["--recipe", "handout", "--seeds", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seeds" in err and "refits none" in err, err


def _q3_metrics(accs: dict, diverged=None) -> dict:
    from test_report import _q3

    m = _q3(accs, {})
    if diverged:
        m["rnn"]["diverged"] = diverged
    return m


def test_the_report_sets_both_recipes_side_by_side(tmp_path):
    from test_report import _q2

    def put(q, m):
        (tmp_path / q).mkdir(parents=True, exist_ok=True)
        (tmp_path / q / "metrics.json").write_text(json.dumps(m))

    put("q2", _q2((4.1, 4.3, 4.5), (4.12, 4.31, 4.52), 4.4))
    put("q3", _q3_metrics({"rnn": [0.68, 0.70, 0.69], "lstm": [0.85, 0.88, 0.86], "gru": [0.86, 0.84, 0.90]}))
    text = report.write_report(tmp_path).read_text()
    assert report.RECIPE_HOWTO in text and text.count("--recipe handout") == 1  # not run: one line says how
    put("q2_handout", _q2((4.2, 4.4, 4.6), (4.25, 4.45, 4.65), 4.4))
    put("q3_handout", _q3_metrics({"rnn": [0.214], "lstm": [0.81], "gru": [0.77]}, diverged="non-finite at epoch 3"))
    text = report.write_report(tmp_path).read_text()
    assert report.RECIPE_HOWTO not in text
    section = text[text.index("## The course handout's recipe beside the default"):]
    assert "| model | default | handout |" in section
    assert "| D=32,P=256 | CE 4.120, top-1 – | CE 4.250, top-1 – |" in section
    assert re.search(r"\| RNN \| 69\.0 % ± 1\.0, loss 0\.500 \(mean of 3 seeds\) \| 21\.4 %, loss 0\.500 \(one seed\); "
                     r"diverged \(non-finite at epoch 3\) \|", section), section
    assert "| GRU | 86.7 % ± 3.1, loss 0.500 (mean of 3 seeds) | 77.0 %, loss 0.500 (one seed) |" in section


# ------------------------------------------------------------------------- docs/recipes.md
def _fmt(v) -> str:
    """A setting as docs/recipes.md's table writes it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple) and v and all(isinstance(p, tuple) and len(p) == 2 for p in v):
        return ", ".join(f"{str(k).upper()} {_fmt(x)}" for k, x in v) if v else "none"
    if isinstance(v, tuple) and not v:
        return "none"
    return str(v)


def settings_rows(text: str) -> list:
    """The rows of the marked settings table: (config class, field, default, handout)."""
    body = text.split("<!-- recipe-settings -->")[1].split("<!-- /recipe-settings -->")[0]
    rows = []
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        cls, field = re.fullmatch(r"`(\w+)\.(\w+)`", cells[1]).groups()
        rows.append((cls, field, cells[2], cells[3]))
    return rows


def test_docs_recipes_settings_table_matches_the_configs():
    rows = settings_rows(DOC.read_text())
    assert len(rows) >= 10
    for cls_name, field, default, handout in rows:
        cls = CONFIGS[cls_name]
        assert _fmt(getattr(cls(), field)) == default, (cls_name, field)
        assert _fmt(getattr(cls.handout(), field)) == handout, (cls_name, field)
    # every field a recipe changes is in the table (Q2's HANDOUT restates its defaults: listed too)
    listed = {(c, f) for c, f, _, _ in rows}
    for name, cls in CONFIGS.items():
        changed = {f for f in cls.HANDOUT if getattr(cls(), f) != getattr(cls.handout(), f)}
        assert {(name, f) for f in changed} <= listed, (name, changed)


def test_recipe_names_and_folders():
    assert RECIPES == ("default", "handout")
    assert results_name("q2") == "q2" and results_name("q2", "handout") == "q2_handout"


def test_the_main_job_runs_the_handout_recipe_beside_ours(tmp_path, capsys):
    from mp_jax.data import build_q2
    from test_q2_experiment import generated_corpus

    data_dir, results = tmp_path / "data", tmp_path / "results"
    build_q2.build(data_dir, corpus=generated_corpus(tmp_path / "corpus.txt", n=600))
    assert main_job.main(["--quick", "--only", "q2", "--recipe", "handout", "--data-dir", str(data_dir),
                          "--results-dir", str(results), "--no-progress"]) == 0
    assert "course handout's recipe" in capsys.readouterr().out
    assert (results / "q2_handout_quick" / "metrics.json").is_file() and not (results / "q2").exists()
    assert not list(results.glob(".*.lock"))  # released
    text = (results / "REPORT_quick.md").read_text()  # the report of --quick
    section = text[text.index("## The course handout's recipe beside the default"):]
    assert "| D=32,P=256 | not run | CE " in section
