"""The command-line gradient check: passes on the models as they are, fails a wrong gradient,
prints one row per parameter and one per time step, and rejects bad arguments cleanly."""
from __future__ import annotations

import contextlib
import io
import re
import runpy
import sys

import numpy as np
import pytest

from mp_jax import gradcheck
from mp_jax.models import autoencoder, recurrent

SMALL = ["--T", "4", "--hidden", "3", "--batch", "3"]
H, D, M, C = 3, gradcheck.SEQ_INPUTS, gradcheck.SEQ_MLP, gradcheck.SEQ_CLASSES
L, V, E = gradcheck.AE_INPUTS, gradcheck.LM_VOCAB, gradcheck.LM_EMBED


def _seq_shapes(blocks: int) -> dict:
    return {"cell.w_x": [D, blocks * H], "cell.w_h": [H, blocks * H], "cell.b": [blocks * H],
            "w_mlp": [H, M], "b_mlp": [M], "w_out": [M, C], "b_out": [C]}


SHAPES = {  # parameter leaf → shape, for --hidden 3
    "ae": {"w_enc": [L, H], "b_hid": [H], "b_out": [L]},
    "ae-untied": {"w_enc": [L, H], "b_hid": [H], "b_out": [L], "w_dec": [H, L]},
    "lm": {"emb": [V, E], "w_hid": [3 * E, H], "b_hid": [H], "w_out": [H, V], "b_out": [V]},
    "rnn": _seq_shapes(1), "lstm": _seq_shapes(4), "gru": _seq_shapes(3),
}
LEAF_ROW = re.compile(r"^(\S+)\s+\[([\d, ]*)\]\s+(\S+)\s+(\S+)\s+(PASS|FAIL)$")
STEP_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(PASS|FAIL)$")
_CACHE: dict = {}


def _run(*argv: str) -> tuple[int, str]:
    """(exit status, stdout) of ``main(argv)``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gradcheck.main(list(argv))
    return rc, out.getvalue()


def _run_cached(*argv: str) -> tuple[int, str]:
    """:func:`_run`, once per argument list in this module (each run compiles its programs)."""
    if argv not in _CACHE:
        _CACHE[argv] = _run(*argv)
    return _CACHE[argv]


def _leaf_rows(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        m = LEAF_ROW.match(line)
        if m:
            shape = [int(s) for s in m[2].split(",")] if m[2] else []
            rows[m[1]] = (shape, float(m[3]), float(m[4]), m[5])
    return rows


def _step_rows(text: str) -> list:
    table = text.split("‖∂L/∂h_t‖", 1)[1] if "‖∂L/∂h_t‖" in text else ""
    return [(int(m[1]), float(m[2]), float(m[3]), float(m[4]), m[5])
            for m in map(STEP_ROW.match, table.splitlines()) if m]


@pytest.mark.parametrize("model", gradcheck.MODELS)
def test_every_model_passes_in_float64_with_a_row_per_parameter(model):
    rc, text = _run_cached(model, *SMALL)
    assert rc == 0, text
    rows = _leaf_rows(text)
    assert {name: row[0] for name, row in rows.items()} == SHAPES[model]
    for name, (_, abs_err, rel_err, verdict) in rows.items():
        assert verdict == "PASS" and rel_err <= 1e-8 and abs_err <= 1e-8, name
    assert "all rows PASS" in text and "FAIL" not in text
    loss_rows = [line for line in text.splitlines() if line.startswith(("loss_and_grad", "loss (reference)"))]
    assert len(loss_rows) == 2 and all(line.endswith("PASS") for line in loss_rows)
    if model in recurrent.CELLS:  # the independent forward reproduces recurrent.loss
        assert any(line.startswith("independent forward") and line.endswith("PASS") for line in text.splitlines())


def test_float32_passes_at_its_own_tolerance():
    rc, text = _run("ae-untied", "--dtype", "float32", *SMALL)
    assert rc == 0, text
    assert "float32, tolerance 1e-04" in text
    rows = _leaf_rows(text)
    assert set(rows) == set(SHAPES["ae-untied"]) and all(r[3] == "PASS" for r in rows.values())
    assert max(r[2] for r in rows.values()) > 1e-12  # really computed in float32, not float64


def test_lstm_per_step_table_has_T_rows_where_manual_matches_autodiff():
    rc, text = _run_cached("lstm", *SMALL)
    assert rc == 0, text
    steps = _step_rows(text)
    assert [s[0] for s in steps] == [1, 2, 3, 4]
    for t, manual, autodiff, rel, verdict in steps:
        assert manual > 0.0 and np.isclose(manual, autodiff, rtol=1e-8, atol=0.0), t
        assert rel <= 1e-8 and verdict == "PASS", t
    assert len({s[1] for s in steps}) == 4  # a norm per step, not one value repeated


def test_a_wrong_parameter_gradient_fails_its_row_and_the_exit_status(monkeypatch):
    real = autoencoder.loss_and_grad

    def wrong(params, batch, *rest):
        value, grads = real(params, batch, *rest)
        return value, grads._replace(b_hid=grads.b_hid * 1.001)

    monkeypatch.setattr(autoencoder, "loss_and_grad", wrong)
    rc, text = _run("ae", *SMALL)
    assert rc == 1, text
    rows = _leaf_rows(text)
    assert rows["b_hid"][3] == "FAIL" and rows["b_hid"][2] > 1e-8
    assert all(rows[k][3] == "PASS" for k in rows if k != "b_hid")
    assert "some rows FAIL" in text


def test_a_wrong_hidden_state_gradient_fails_its_step(monkeypatch):
    real = recurrent.hidden_state_grads
    monkeypatch.setattr(recurrent, "hidden_state_grads", lambda p, b: real(p, b).at[1].multiply(1.01))
    rc, text = _run("rnn", *SMALL)
    assert rc == 1, text
    verdicts = [s[4] for s in _step_rows(text)]
    assert verdicts == ["PASS", "FAIL", "PASS", "PASS"]
    assert all(r[3] == "PASS" for r in _leaf_rows(text).values())  # loss_and_grad itself untouched


@pytest.mark.parametrize("argv, words", [
    (["lstm", "--T", "-3"], ["--T", "-3", "positive integer"]),
    (["lstm", "--T", "0"], ["--T", "0", "positive integer"]),
    (["gru", "--T", "2.5"], ["--T", "2.5"]),
    (["ae", "--hidden", "0"], ["--hidden", "0", "positive integer"]),
    (["lm", "--batch", "0"], ["--batch", "0", "positive integer"]),
    (["rnn", "--seed", "-1"], ["--seed", "-1", "non-negative integer"]),
    (["cnn"], ["MODEL", "cnn", "lstm"]),
    (["ae", "--dtype", "float16"], ["--dtype", "float16", "float32"]),
])
def test_bad_arguments_exit_2_with_one_error_line(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        gradcheck.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and err.strip() == errors[0], err  # the error line alone, no usage block
    assert all(w in errors[0] for w in words), errors[0]
    assert "Traceback" not in err


@pytest.mark.filterwarnings("ignore:'mp_jax.gradcheck' found in sys.modules:RuntimeWarning")
def test_runs_as_a_script_with_main_as_its_exit_status(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gradcheck", "ae", "--hidden", "2", "--batch", "2"])
    with pytest.raises(SystemExit) as exc:  # what `python -m mp_jax.gradcheck ...` runs
        runpy.run_module("mp_jax.gradcheck", run_name="__main__")
    assert exc.value.code == 0
    assert set(_leaf_rows(capsys.readouterr().out)) == {"w_enc", "b_hid", "b_out"}
