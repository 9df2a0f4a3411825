"""docs/recipes.md's measured effect: written by ``python -m experiments.recipe_effect`` from the
runs' metrics, with its date, commit and machine, and checked against the metrics it cites."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments import recipe_effect as effect
from mp_jax.runtime import cli
from mp_jax.runtime.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "recipes.md"


def _runs(root: Path, *, quick: bool = False) -> Path:
    """Four runs' metrics.json as the entry points write them (the fields the block reads)."""
    from test_report import _q2, _q3

    q2 = _q2((4.10, 4.30, 4.50), (2.713, 2.766, 2.884), 4.4)
    q2h = _q2((4.10, 4.30, 4.50), (2.713, 2.766, 2.884), 4.4)
    for m in (q2, q2h):
        for name, top1 in (("D=32,P=256", 0.36), ("D=16,P=128", 0.351), ("D=8,P=64", 0.335)):
            m[name]["top1_accuracy"] = top1
        m["data"] = {"n_train": 203919, "n_val": 25455, "n_test": 25455}
        m["settings"].update(is_quick=quick)
    q3 = _q3({"rnn": [0.742, 0.70, 0.709], "lstm": [0.834, 0.857, 0.844], "gru": [0.859, 0.832, 0.86],
              "baseline": [0.764, 0.77, 0.77]}, {})
    q3h = _q3({"rnn": [0.214], "lstm": [0.811], "gru": [0.798], "baseline": [0.779]}, {})
    for m, seconds in ((q3, 675.0), (q3h, 172.0)):
        m["data"].update(n_train=3376, n_test=679)
        m["settings"] = {"seed": 0, "is_quick": quick}
        m["training"] = {"trained": 4, "resumed": 0, "loaded": 0, "train_seconds": seconds}
    q3h["lstm"]["val_accuracy"], q3h["gru"]["val_accuracy"] = 0.902, 0.997
    for name, m in (("q2", q2), ("q2_handout", q2h), ("q3", q3), ("q3_handout", q3h)):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "metrics.json").write_text(json.dumps(m))
    return root


STAMP = effect.Stamp("2026-12-05", "0123456789ab", "Linux x86_64 with 2 CPU cores")


def test_the_tables_are_the_metrics(tmp_path):
    m = effect.load(_runs(tmp_path))
    text = effect.render(m, STAMP)
    lstm = m["q3"]["lstm"]
    row = (f"| Q3 | LSTM | {100 * lstm['test_accuracy']:.1f} ± {100 * lstm['test_accuracy_std']:.1f} % "
           f"(seed 0: {100 * lstm['test_accuracy_per_seed'][0]:.1f} %) | {lstm['test_loss']:.3f} | "
           f"{100 * m['q3_handout']['lstm']['test_accuracy']:.1f} % | {m['q3_handout']['lstm']['test_loss']:.3f} |")
    assert row in text.splitlines(), text
    assert "| Q2 | (32, 256) | 2.713 nats, 36.0 % | 2.713 nats, 36.0 % |" in text
    assert STAMP.line() in text and "--quick" not in text
    assert "Data: Q3 3376 training and 679 test windows; Q2 203919 / 25455 / 25455 trigrams" in text


def test_the_comparisons_are_computed(tmp_path):
    m = effect.load(_runs(tmp_path))
    said = effect.findings(m)
    gru, gru_h = m["q3"]["gru"], m["q3_handout"]["gru"]
    gap = 100 * (gru_h["test_accuracy"] - gru["test_accuracy"])
    assert any(s.startswith(f"Q3, GRU: the handout's recipe {gap:+.1f} points") and "outside" in s for s in said), said
    assert any("every network's test cross-entropy is the same" in s for s in said)
    assert any("validation accuracy 99.7 % against its test accuracy 79.8 %" in s for s in said)
    assert any("Q3 675 s under the default recipe, 172 s under the handout's" in s for s in said)
    # another run, another sentence
    q2h = json.loads((tmp_path / "q2_handout" / "metrics.json").read_text())
    q2h["D=8,P=64"]["test_cross_entropy"] = 2.9
    (tmp_path / "q2_handout" / "metrics.json").write_text(json.dumps(q2h))
    said = effect.findings(effect.load(tmp_path))
    assert any("(8, 64) +0.016" in s for s in said), said


def test_the_command_rewrites_only_its_block(tmp_path, capsys):
    results = _runs(tmp_path / "results")
    page = tmp_path / "recipes.md"
    page.write_text(PAGE.read_text(encoding="utf-8"))
    before = page.read_text()
    assert cli.run_main(effect.main, ["--results-dir", str(results), "--write", str(page)]) == 0
    after = page.read_text()
    head, tail = before.split(effect.OPEN)[0], before.split(effect.CLOSE)[1]
    assert after.startswith(head + effect.OPEN) and after.endswith(effect.CLOSE + tail)
    assert effect.NOT_MEASURED not in after and "Measured on " in effect.block(after)
    assert effect.verify(after, results) == []
    # printing writes nothing
    assert cli.run_main(effect.main, ["--results-dir", str(results)]) == 0
    assert "| Q3 | GRU |" in capsys.readouterr().out and page.read_text() == after


def test_verify_names_a_number_the_metrics_do_not_give(tmp_path):
    results = _runs(tmp_path / "results")
    page = effect.replace_block(f"a\n{effect.OPEN}\n{effect.CLOSE}\nb\n", effect.render(effect.load(results), STAMP))
    assert effect.verify(page, results) == []
    stale = page.replace("2.713 nats", "2.700 nats", 1)
    problems = effect.verify(stale, results)
    assert problems and "2.700" in problems[0]
    assert effect.verify(f"{effect.OPEN}\nno stamp\n{effect.CLOSE}", results)


def test_a_missing_run_is_one_error_naming_it(tmp_path):
    results = _runs(tmp_path)
    (results / "q3_handout" / "metrics.json").unlink()
    with pytest.raises(UserError, match=r"q3_handout/metrics.json: no such file") as e:
        effect.load(results)
    assert "--recipe handout" in e.value.hint


def test_quick_numbers_are_marked(tmp_path):
    text = effect.render(effect.load(_runs(tmp_path, quick=True)), STAMP)
    assert "With `--quick`" in text and "numbers that mean nothing" in text


def test_the_pages_block_is_written_by_the_command_or_says_it_is_not_measured():
    """No number of the page's block is typed by hand: it is the not-measured line, or a block
    the command wrote from full-size runs (a stamp with a commit, no --quick)."""
    body = effect.block(PAGE.read_text(encoding="utf-8"))
    if body.strip() == effect.NOT_MEASURED:
        return
    stamp = effect.Stamp.parse(body)
    assert stamp and re.fullmatch(r"\d{4}-\d{2}-\d{2}", stamp.date) and stamp.commit not in ("", "unknown"), body[:300]
    assert "With `--quick`" not in body, "docs/recipes.md holds a --quick measurement"
