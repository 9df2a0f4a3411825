"""The command-line gradient check: every registry model and implementation passes, the three
oracles and the intermediate table print, a wrong gradient fails its row and is named, and bad
arguments are refused cleanly."""
from __future__ import annotations

import contextlib
import io
import re
import runpy
import sys

import jax
import pytest

from mp_jax import gradcheck
from mp_jax.checks import registry
from mp_jax.models import autoencoder, recurrent_fast

SMALL = ["--T", "4", "--hidden", "3", "--batch", "3"]
LEAF_ROW = re.compile(r"^(\S+)\s+\[([\d, ]*)\]\s+(\S+)\s+(\S+)(\s+\S+)?\s+(PASS|FAIL)$")
INTER_ROW = re.compile(r"^(\S+)\s+(\d*)\s+\[([\d, ]*)\]\s+(\S+)\s+(\S+)\s+(PASS|FAIL)$")


def _run(*argv: str) -> tuple[int, str]:
    """(exit status, stdout) of ``main(argv)``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gradcheck.main(list(argv))
    return rc, out.getvalue()


def _sections(text: str) -> list[str]:
    return text.split("gradient check: ")[1:]


def _leaf_rows(section: str) -> dict:
    rows = {}
    for line in section.split("intermediate gradients")[0].splitlines():
        m = LEAF_ROW.match(line)
        if m:
            shape = [int(s) for s in m[2].split(",")] if m[2] else []
            rows[m[1]] = (shape, float(m[4]), m[5], m[6])
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("model", list(registry.MODELS))
def test_every_model_and_implementation_passes_with_a_row_per_parameter(model, fast_compile):
    spec = registry.get(model)
    rc, text = _run(model, *SMALL)
    assert rc == 0, text
    sections = _sections(text)
    assert [s.split(",")[1].split()[-1] for s in sections] == list(spec.impls)  # --impl all by default
    with jax.enable_x64(True):
        params, _ = spec.instance(registry.Size(batch=3, hidden=3, T=4))
    want = {jax.tree_util.keystr(p).lstrip("."): list(a.shape) for p, a in jax.tree_util.tree_flatten_with_path(params)[0]}
    for section in sections:
        rows = _leaf_rows(section)
        assert {k: v[0] for k, v in rows.items()} == want
        assert all(v[3] == "PASS" and v[1] <= 1e-10 for v in rows.values())
        assert "tolerance: float64" in section and "all rows PASS" in section


@pytest.mark.slow
def test_fd_adds_a_finite_difference_column_and_intermediates_use_the_docs_symbols(fast_compile):
    rc, text = _run("lstm", "--impl", "fast", "--fd", "--intermediates", *SMALL)
    assert rc == 0, text
    rows = _leaf_rows(text)
    assert all(v[2] is not None and float(v[2]) <= 1e-6 for v in rows.values())
    assert "step h = 1e-05" in text
    inter = [INTER_ROW.match(line) for line in text.split("intermediate gradients")[1].splitlines()]
    inter = [(m[1], m[2]) for m in inter if m]
    assert inter[:2] == [("dz", ""), ("da", "")]
    assert inter[2:8] == [(n, "4") for n in ("dh_t", "δ_o", "dc_t", "δ_i", "δ_f", "δ_g")]
    assert len(inter) == 2 + 6 * 4
    rc, text = _run("lm", "--intermediates", "--impl", "reference", "--case", "repeat")
    names = [m[1] for m in map(INTER_ROW.match, text.split("intermediate gradients")[1].splitlines()) if m]
    assert names[:3] == ["dz", "δ_h", "de"] and all(n.startswith("dR[") for n in names[3:]) and names[3:]


@pytest.mark.slow
def test_float32_passes_at_its_own_tolerance(fast_compile):
    rc, text = _run("gru", "--dtype", "float32", *SMALL)
    assert rc == 0, text
    assert "tolerance: float32" in text and "1e-04" in text


def test_a_wrong_parameter_gradient_fails_its_row_and_the_exit_status(monkeypatch, fast_compile):
    real = autoencoder.backward_with_intermediates

    def wrong(params, cache, hp):
        grads, named = real(params, cache, hp)
        return grads._replace(b_hid=grads.b_hid * 1.001), named

    monkeypatch.setattr(autoencoder, "backward_with_intermediates", wrong)
    rc, text = _run("ae", *SMALL)
    assert rc == 1, text
    rows = _leaf_rows(text)
    assert rows["b_hid"][3] == "FAIL" and rows["b_hid"][1] > 1e-8
    assert all(rows[k][3] == "PASS" for k in rows if k != "b_hid")
    assert "the first wrong tensor is b_hid" in text


@pytest.mark.slow
def test_a_wrong_fast_step_fails_only_the_fast_implementation(monkeypatch, fast_compile):
    real = recurrent_fast.rnn_step_backward
    monkeypatch.setattr(recurrent_fast, "rnn_step_backward",
                        lambda dh, h, w: (lambda d, p: (d * 1.01, p))(*real(dh, h, w)))
    rc, text = _run("rnn", *SMALL)
    assert rc == 1
    reference, fast = _sections(text)
    assert "all rows PASS" in reference and "the first wrong tensor is δ_t at t = 4" in fast


@pytest.mark.parametrize("argv, words", [
    (["lstm", "--T", "-3"], ["--T", "-3", "positive integer"]),
    (["lstm", "--T", "0"], ["--T", "0", "positive integer"]),
    (["gru", "--T", "2.5"], ["--T", "2.5"]),
    (["ae", "--hidden", "0"], ["--hidden", "0", "positive integer"]),
    (["lm", "--batch", "0"], ["--batch", "0", "positive integer"]),
    (["rnn", "--seed", "-1"], ["--seed", "-1"]),
    (["cnn"], ["MODEL", "cnn", "lstm"]),
    ([], ["MODEL", "required"]),
    (["ae", "--dtype", "float16"], ["--dtype", "float16", "float32"]),
    (["ae", "--impl", "fast"], ["--impl", "ae", "reference"]),
    (["lstm", "--case", "repeat"], ["--case", "repeat", "lm"]),
    (["lstm", "--bug", "nope"], ["--bug", "nope", "--bug list"]),
    (["rnn", "--bug", "lstm-no-forget-carry"], ["--bug", "lstm-no-forget-carry", "lstm"]),
    (["lstm", "--hint"], ["--hint", "--backward"]),
    (["--backward", "exercises/rnn_step.py", "--hint", "0"], ["--hint", "0", "positive integer"]),
    (["--backward", "exercises/rnn_step.py", "--bug", "rnn-h-t-in-dWh"], ["--backward", "--bug"]),
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


@pytest.mark.slow
@pytest.mark.parametrize("model", list(registry.MODELS))
def test_fd_and_intermediates_work_for_every_model(model, fast_compile):
    rc, text = _run(model, "--fd", "--intermediates", "--T", "3", "--hidden", "3", "--batch", "2")
    assert rc == 0, text
    assert "vs fin. diff." in text and "intermediate gradients" in text
    assert text.count("gradient check: ") == len(registry.get(model).impls)
