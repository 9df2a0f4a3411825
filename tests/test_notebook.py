"""The walkthrough notebooks/bptt_by_hand.py (jupytext percent format) runs end to end, as CI
runs it: a script in a fresh process, its figures written, every check inside it passing. Given
an exercise file it checks the learner's piece first and draws the error heatmap, for a right
piece (every cell at rounding) and for a wrong one (the first wrong tensor named)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exercise_solutions import MISTAKES, SOLUTIONS

pytestmark = pytest.mark.slow  # end-to-end runs: the full suite only (-m "not slow" leaves them out)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "bptt_by_hand.py"


def _exercise(tmp_path: Path, body: str) -> Path:
    lines = (ROOT / "exercises" / "lstm_step.py").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.strip().startswith("raise NotImplementedError"))
    path = tmp_path / "lstm_step.py"
    path.write_text("\n".join(lines[:k] + body.strip("\n").splitlines() + lines[k + 1:]) + "\n")
    return path


def _run(tmp_path, *args, **env):
    env = dict(os.environ, MP_JAX_NOTEBOOK_OUT=str(tmp_path), MP_JAX_NOTEBOOK_QUICK="1", **env)
    run = subprocess.run([sys.executable, str(NOTEBOOK), *args], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _bright(path: Path) -> float:
    """The fraction of the heatmap panel (the left 45 % of the figure) drawn in the colour map's
    bright end (log10 relative error above about −2): none for a right piece."""
    import matplotlib.image
    image = matplotlib.image.imread(path)[..., :3]
    assert image.shape[0] > 300 and image.shape[1] > 600
    panel = image[:, : int(0.45 * image.shape[1])]
    return float(np.mean((panel[..., 0] > 0.9) & (panel[..., 2] < 0.85)))


def test_the_notebook_runs_the_learners_piece_and_draws_its_figures(tmp_path):
    """With a right piece (the argument): the heatmap, then every section of the walkthrough."""
    out = _run(tmp_path, str(_exercise(tmp_path, SOLUTIONS["lstm_step"])))
    assert "lstm_step_backward: every tensor matches jax.grad" in out
    assert "worst rel. error" in out and "training accuracy" in out
    for name in ("exercise_check.png", "gradient_flow.png", "training.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    assert _bright(tmp_path / "exercise_check.png") < 0.001


def test_the_notebook_names_the_first_wrong_tensor_of_a_wrong_piece(tmp_path):
    """With a wrong piece (the environment variable), the heatmap lights up from the first wrong
    tensor on; the exercise section alone."""
    old, new, tensor = MISTAKES["lstm_step"]
    path = _exercise(tmp_path, SOLUTIONS["lstm_step"].replace(old, new, 1))
    out = _run(tmp_path, MP_JAX_EXERCISE=str(path), MP_JAX_NOTEBOOK_EXERCISE_ONLY="1")
    assert f"the first wrong tensor is {tensor} at t = " in out
    assert "training accuracy" not in out and not (tmp_path / "training.png").exists()
    assert _bright(tmp_path / "exercise_check.png") > 0.2  # every step before the first wrong tensor


def test_a_file_that_cannot_serve_is_one_line_and_the_walkthrough_goes_on(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("TARGET = 3\n")
    out = _run(tmp_path, str(bad), MP_JAX_NOTEBOOK_EXERCISE_ONLY="1")
    assert "cannot check" in out and "expected TARGET" in out
    assert not (tmp_path / "exercise_check.png").exists()


def test_the_notebook_is_a_jupytext_percent_file():
    text = NOTEBOOK.read_text()
    assert "format_name: percent" in text
    cells = [line for line in text.splitlines() if line.startswith("# %%")]
    assert sum(c.startswith("# %% [markdown]") for c in cells) >= 6 and len(cells) >= 12
    assert "MP_JAX_EXERCISE" in text and "exercise_check.png" in text
