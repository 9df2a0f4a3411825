"""Every documented option that changes what is trained completes with ``--quick``: exit 0,
no traceback, its results and REPORT.md written.

What other modules run already is not run again here: each question's default ``--quick``
run (test_q1_experiment, test_q2_experiment, test_q3_experiment, test_main_job), Q1's
``--vmap`` with L-BFGS, Q3's ``--seeds 2 --vmap`` and ``--select``, and the main job's handout
recipe for Q2 alone (test_recipe). One call of the main job covers the rest together, Q2's and
Q3's handout recipes included (their checks of what the handout writes, beside the default
recipe's results, are here): ``python -m experiments --quick --recipe handout --vmap
--impl reference --cpu-devices 1`` trains Q1's handout recipe (SGD for the default model and
both studies, the studies vmapped: ``--optimizer sgd``'s configuration, checked equal below),
Q2 and Q3 on the reference gradients and without augmentation (the handout's Q3 has none:
``--no-augment``'s training path), and writes REPORT.md with the handout's Q1 section. In
process, JAX's devices are fixed before the call, so ``--cpu-devices 1`` is parsed and
accepted; the suite's process has one CPU device, as the flag asks.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging

import pytest

from experiments import __main__ as main_job
from experiments import q1_autoencoder as q1
from experiments import q3_activity as q3
from mp_jax.runtime import cli

pytestmark = pytest.mark.slow  # an end-to-end run: the full suite only

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)


def _only(folder, pattern: str):
    """The one path of ``folder`` that matches ``pattern``."""
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern}: expected one match in {folder}, found {[p.name for p in found]}"
    return found[0]


@pytest.mark.skipif(importlib.util.find_spec("seglearn") is None,
                    reason="seglearn is not installed: the quick run builds the default Q3 stand-in from it")
def test_the_main_job_with_the_handout_recipe_and_every_option_that_changes_training(tmp_path, capsys, caplog):
    """Exit 0, no traceback; each question's results beside the default recipe's, which stay
    untouched (a file in each default folder); the handout's settings and the options in each
    question's metrics; REPORT.md's Q1 section from the handout's results."""
    from mp_jax.data import build_q2
    from test_q2_experiment import generated_corpus

    data_dir, results = tmp_path / "data", tmp_path / "results"
    build_q2.build(data_dir, corpus=generated_corpus(tmp_path / "corpus.txt", n=600))  # Q2's small stand-in
    for q in ("q1", "q2", "q3"):
        (results / q).mkdir(parents=True)
        (results / q / "ours.txt").write_text(q)
    argv = ["--quick", "--recipe", "handout", "--vmap", "--impl", "reference", "--cpu-devices", "1", "--no-progress",
            "--data-dir", str(data_dir), "--results-dir", str(results)]
    with caplog.at_level(logging.INFO):
        status = cli.run_main(main_job.main, argv)
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "Traceback" not in out.out + out.err + caplog.text
    for q in ("q1", "q2", "q3"):  # the default recipe's folders are left alone
        assert [p.name for p in (results / q).iterdir()] == ["ours.txt"]
    folders = {q: _only(results, f"{q}_handout_quick*") for q in ("q1", "q2", "q3")}  # named from what differs
    metrics = {q: json.loads((folders[q] / "metrics.json").read_text()) for q in ("q1", "q2", "q3")}
    m1 = metrics["q1"]
    assert m1["settings"]["recipe"] == "handout" and m1["settings"]["optimizer"] == "sgd"
    assert m1["sweep_timing"]["mode"] == "vmap"  # the studies' SGD members as vmapped programs
    assert all(r["optimizer"] == "sgd" and not r.get("diverged") for r in m1["beta_rho"] + m1["sweep"])
    m2 = metrics["q2"]
    assert m2["settings"]["recipe"] == "handout" and m2["settings"]["momentum"] == 0.85
    assert list((folders["q2"] / "checkpoints").glob("lm_D*.h5"))
    m3, s3 = metrics["q3"], metrics["q3"]["settings"]
    assert s3["recipe"] == "handout" and s3["impl"] == "reference"
    assert s3["clip_norm"] is None and s3["refit"] is False and s3["augment"] is False
    assert m3["data"]["validation"]["kind"] == "random" and m3["protocol"]["augmentation"] == "none"
    assert "no clipping" in m3["protocol"]["training"] and m3["protocol"]["refit"].startswith("none")
    for cell in ("rnn", "lstm", "gru"):
        g = m3[cell]
        assert g["seeds"] == [0] and g["learning_rate"] == 0.1
        assert g["test_accuracy"] == g["members"][0]["test_accuracy"] or g.get("diverged")
    assert 0.05 < m3["data"]["n_val"] / (m3["data"]["n_val"] + m3["data"]["n_train_part"]) < 0.15  # 10 % at random
    out3 = folders["q3"]
    assert list(out3.glob("checkpoints/q3_gru_validation*.h5")) and not list(out3.glob("checkpoints/q3_gru-*"))
    report = _only(results, "REPORT_quick*.md").read_text()
    q1_part = report[report.index("## Q1"):report.index("## Q2")]
    name = folders["q1"].name
    assert f"`{name}/`" in q1_part and f"]({name}/features_beta_rho.png)" in q1_part
    assert "Under SGD with 32-patch minibatches the strongest sparsity weight" in q1_part


def test_the_flags_the_run_above_stands_for_train_its_configurations():
    """Q1's ``--optimizer sgd`` is the handout recipe's Q1 under the default recipe's name, and
    Q3's ``--no-augment`` turns off what the handout's Q3 has off."""
    def args(**kw):
        return argparse.Namespace(quick=True, **kw)

    sgd = q1.Q1Config.from_args(args(optimizer="sgd"))
    handout = q1.Q1Config.from_args(args(recipe="handout"))
    assert dataclasses.replace(handout, recipe="default") == sgd
    assert q3.Q3Config.from_args(args(augment=False)).augment is False
    assert q3.Q3Config.from_args(args(recipe="handout")).augment is False
