"""The main job's expected training time: the plan of runs and steps read from the
configuration, the timing of one step, and the comparison in the summary."""
import json
import math

import pytest

from experiments import __main__ as main_job
from experiments import estimate
from experiments.q1_autoencoder import Q1Config
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config

Q3_SIZES = {"n_all": 1000, "n_part": 800, "n_val": 200, "T": 150, "D": 3, "classes": 6}


@pytest.mark.parametrize("config", [Q3Config(), Q3Config.quick(), Q3Config(models=("gru",), seeds=5),
                                    Q3Config.handout()], ids=["default", "quick", "gru x5", "handout"])
def test_q3s_plan_counts_its_runs_and_epochs(config):
    runs = estimate.plan("q3", config, Q3_SIZES)
    b = config.batch_size
    assert [r.what for r in runs] == [f"{m} {stage}" for m in config.models
                                      for stage in (("validation", "refit") if config.refit else ("validation",))] \
        + ["baseline validation", "baseline refit"]
    base = runs[-2:]
    assert base[1].count == config.seeds and base[0].steps == config.baseline_epochs * math.ceil(800 / config.baseline_batch)
    for r in runs[:-2]:
        cell, stage = r.what.split()
        epochs = config.n_epochs(cell)
        if stage == "refit":
            assert r.count == config.seeds and r.steps == epochs * math.ceil(1000 / b)
        else:
            assert r.count == 1 and r.steps == pytest.approx(epochs * (math.ceil(800 / b) + math.ceil(200 / b) / 3))
            assert r.compilations() == 2  # the epoch's program and the evaluation's
        assert r.program[:4] == ("recurrent", cell, config.impl, config.hidden)


def test_q1s_and_q2s_plans():
    c = Q1Config()
    lbfgs, sgd = estimate.plan("q1", c, {"n_train": 9000})
    distinct = 1 + (len(c.beta_rho) - 1) + (len(c.sweep_hidden) * len(c.sweep_lam) - 1)
    assert lbfgs.count == distinct and lbfgs.steps == c.lbfgs_iters
    assert lbfgs.compiles == len({c.hidden, *c.sweep_hidden})  # one program per L_hid, shared by its runs
    assert sgd.count == 1 and sgd.steps == c.sgd_epochs * math.ceil(9000 / c.sgd_batch)
    q2 = Q2Config()
    nets = estimate.plan("q2", q2, {"n_train": 10_000, "n_val": 1000, "vocab": 250})
    assert [r.what for r in nets] == [f"D={d},P={p}" for d, p in q2.settings]
    assert len({r.program for r in nets}) == 1 and nets[0].scale == 1 and nets[1].scale < 1  # one timed, scaled


def test_the_summary_sets_the_estimate_beside_what_it_took():
    e = estimate.Estimate({"q1": 80.0, "q3": 600.0}, [], 12.0)
    assert e.text().startswith("expected training time on this machine: about 11.3 min (q1 80 s, q3 10.0 min)")
    line = main_job.compare(e, [("q1", 130.0, {"seconds_now": 70.0}), ("q3", 700.0, {"seconds_now": 650.0})])
    assert line == ("estimated at the start: 11.3 min of training; took 12.0 min of training, 13.8 min in all "
                    "(q1 80 s estimated, 70 s taken; q3 10.0 min estimated, 10.8 min taken)")


def test_a_configuration_whose_results_are_here_is_expected_to_load_them(tmp_path, monkeypatch):
    c = Q3Config.quick(results_dir=tmp_path)
    assert not estimate.finished_here("q3", c)
    (tmp_path / "q3_quick").mkdir()
    (tmp_path / "q3_quick" / "metrics.json").write_text(json.dumps({"provenance": {"config_hash": c.config_hash()}}))
    assert estimate.finished_here("q3", c) and not estimate.finished_here("q3", Q3Config.quick(results_dir=tmp_path,
                                                                                               seeds=2))
    e = estimate.expected({"q3": c})
    assert e.seconds == {"q3": 0.0} and e.loaded == ["q3"] and "q3 loads its finished runs" in e.text()
    plans = []
    monkeypatch.setattr(estimate, "plan", lambda *a: plans.append(a) or [])
    monkeypatch.setattr(estimate, "data_sizes", lambda q, c: {})
    # --fresh moves them aside: trained again
    assert estimate.expected({"q3": c}, fresh=True).loaded == [] and plans == [("q3", c, {})]

