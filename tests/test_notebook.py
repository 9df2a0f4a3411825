"""The walkthrough notebooks/bptt_by_hand.py (jupytext percent format) runs end to end, as CI
runs it: a script in a fresh process, its figures written, every check inside it passing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "bptt_by_hand.py"


def test_the_notebook_runs_and_draws_its_figures(tmp_path):
    env = dict(os.environ, MP_JAX_NOTEBOOK_OUT=str(tmp_path), MP_JAX_NOTEBOOK_QUICK="1")
    run = subprocess.run([sys.executable, str(NOTEBOOK)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "worst rel. error" in run.stdout and "training accuracy" in run.stdout
    for name in ("gradient_flow.png", "training.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_the_notebook_is_a_jupytext_percent_file():
    text = NOTEBOOK.read_text()
    assert "format_name: percent" in text
    cells = [line for line in text.splitlines() if line.startswith("# %%")]
    assert sum(c.startswith("# %% [markdown]") for c in cells) >= 6 and len(cells) >= 12
