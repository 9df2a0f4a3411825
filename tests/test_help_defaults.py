"""``--help`` states the defaults of the configuration dataclasses, per model where they differ,
and follows them when they change."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import re

import pytest

from experiments import common
from experiments import q1_autoencoder as q1
from experiments import q2_language_model as q2
from experiments import q3_activity as q3
from experiments.config import RunOptions


def _help(main) -> dict[str, str]:
    """{flag: its help text, on one line} of an entry point's ``--help``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    flags, current = {}, None
    for line in out.getvalue().splitlines():
        m = re.match(r"\s{2}(-[-\w]+)(?:,? [^ ]+)*?(?:\s{2,}(.*))?$", line)
        if m and line.startswith("  -"):
            current = m.group(1)
            flags[current] = m.group(2) or ""
        elif current and line.startswith(" " * 10):
            flags[current] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\s+", " ", v.replace("- ", "-")).strip() for k, v in flags.items()}


@pytest.mark.parametrize("main", [q1.main, q2.main, q3.main], ids=["q1", "q2", "q3"])
def test_the_shared_flags_state_runoptions_defaults(main):
    h, o = _help(main), RunOptions()
    assert f"(default {o.data_dir}/)" in h["--data-dir"] and f"(default {o.results_dir}/)" in h["--results-dir"]
    assert f"(default {o.seed})" in h["--seed"]
    assert "min" not in h["--quick"] or "minutes" in h["--quick"]  # no time of its own that can go stale


def test_q3s_flags_state_q3config_per_model():
    h, c, tiny, handout = _help(q3.main), q3.Q3Config(), q3.Q3Config.quick(), q3.Q3Config.handout()
    per_model = ", ".join(f"{m.upper()} {e}" for m, e in c.epochs_per_model)
    assert f"default {c.epochs} ({per_model})" in h["--epochs"] and f"--quick {tiny.epochs}" in h["--epochs"]
    assert f"--recipe handout {handout.epochs}" in h["--epochs"]
    assert f"default {c.seeds}" in h["--seeds"] and f"--quick {tiny.seeds}" in h["--seeds"]
    rates = ", ".join(f"{m.upper()} {r:g}" for m, r in c.learning_rates)
    assert f"default {rates}" in h["--lr"]
    assert ("default on" if c.augment else "default off") in h["--augment"]
    # the LSTM's own epochs are in the help: --epochs "default 30" alone would hide them
    assert dict(c.epochs_per_model), "Q3Config has no per-model epochs: this test checks less than it says"


def test_q1s_flags_state_q1config():
    h, c, tiny = _help(q1.main), q1.Q1Config(), q1.Q1Config.quick()
    assert f"default {c.optimizer}" in h["--optimizer"]
    assert f"default {c.lbfgs_iters}; --quick {tiny.lbfgs_iters}" in h["--lbfgs-iters"]
    assert f"default {c.sgd_epochs}; --quick {tiny.sgd_epochs}" in h["--sgd-epochs"]


def test_the_help_follows_a_changed_default(monkeypatch):
    """Not a copy of today's numbers: a configuration with other defaults gives another help."""
    other = dataclasses.make_dataclass("Q3Config", [("epochs", int, 41), ("seeds", int, 5)], bases=(q3.Q3Config,),
                                       frozen=True)
    monkeypatch.setattr(q3, "Q3Config", other)
    h = _help(q3.main)
    assert "default 41 (LSTM 60)" in h["--epochs"] and "default 5;" in h["--seeds"]


def test_defaults_help_names_only_what_differs():
    @dataclasses.dataclass(frozen=True)
    class C(RunOptions):
        HANDOUT = {"n": 3}
        n: int = 1
        m: float = 0.5

        @classmethod
        def quick(cls, **changes):
            return cls(**{"is_quick": True, "n": 2, **changes})

    assert common.defaults_help(C, "n") == "default 1; --quick 2; --recipe handout 3"
    assert common.defaults_help(C, "m") == "default 0.5"
