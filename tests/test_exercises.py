"""The exercises: each starter, filled with the solution, passes the three-oracle check through
``gradcheck --backward``; filled with a zoo mistake it fails and names the wrong tensor; left
unwritten it gives one line, not a traceback."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from exercise_solutions import MISTAKES, SOLUTIONS
from mp_jax import gradcheck

EXERCISES = Path(__file__).resolve().parents[1] / "exercises"
SMALL = ["--T", "3", "--hidden", "3", "--batch", "3"]


def _filled(name: str, body: str, tmp_path: Path) -> Path:
    """The starter with its ``raise NotImplementedError(...)`` line replaced by ``body``."""
    lines = (EXERCISES / f"{name}.py").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.strip().startswith("raise NotImplementedError"))
    out = tmp_path / f"{name}.py"
    out.write_text("\n".join(lines[:k] + body.strip("\n").splitlines() + lines[k + 1:]) + "\n")
    return out


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = gradcheck.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_there_is_one_starter_per_backward_worth_practising():
    assert {p.stem for p in EXERCISES.glob("*.py")} == set(SOLUTIONS)
    docs = (EXERCISES.parent / "docs" / "exercises.md").read_text()
    for name in SOLUTIONS:
        assert f"exercises/{name}.py" in docs, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_the_solution_passes_and_the_mistake_is_named(name, tmp_path, fast_compile):
    case = ["--case", "repeat"] if name == "lm_embedding" else []
    rc, out, err = _run("--backward", str(_filled(name, SOLUTIONS[name], tmp_path)), *SMALL, *case)
    assert rc == 0, out + err
    assert "every tensor matches the oracles" in out
    old, new, tensor = MISTAKES[name]
    assert old in SOLUTIONS[name]
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    rc, out, err = _run("--backward", str(_filled(name, SOLUTIONS[name].replace(old, new, 1), wrong)), *SMALL, *case)
    assert rc == 1, out + err
    first = out.split("the first wrong tensor is ")[1].split()[0]
    assert first.split("[")[0] == tensor, first


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_an_unwritten_exercise_gives_one_line(name):
    rc, out, err = _run("--backward", str(EXERCISES / f"{name}.py"), *SMALL)
    assert rc == 1
    assert err.count("\n") == 1 and "is not written yet" in err and "Traceback" not in err


def test_a_broken_exercise_names_its_line(tmp_path, fast_compile):
    path = _filled("rnn_step", "    delta = dh @ x[:2]\n", tmp_path)
    rc, out, err = _run("--backward", str(path), *SMALL)
    assert rc == 1 and err.count("\n") == 1
    assert "rnn_step_backward raised TypeError" in err and f"of {path}" in err


def test_an_exercise_on_a_model_that_never_calls_it_says_so(tmp_path, fast_compile):
    path = _filled("ae_sparsity", SOLUTIONS["ae_sparsity"], tmp_path)
    rc, out, err = _run("lstm", "--backward", str(path), *SMALL)
    assert rc == 1 and "does not call sparsity_delta" in err


@pytest.mark.slow
def test_the_bptt_exercise_serves_every_cell(tmp_path, fast_compile):
    path = _filled("bptt", SOLUTIONS["bptt"], tmp_path)
    for cell in ("rnn", "gru"):
        rc, out, err = _run(cell, "--backward", str(path), *SMALL)
        assert rc == 0, out + err
