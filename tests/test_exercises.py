"""The exercises: each starter states the forward, the contract and where the piece is derived,
never its backward equations; filled with the solution it passes both checks (alone, then inside
the model) and names the package's function to compare with; filled with a mistake it fails, names
the first wrong tensor and the likely mistake; left unwritten, broken, or returning anything that
does not fit, it gives one line, never a traceback. ``--hint`` climbs three rungs for every piece."""
from __future__ import annotations

import contextlib
import inspect
import io
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exercise_solutions import LEARNER_MISTAKES, MALFORMED, MISTAKES, SOLUTIONS
from mp_jax import gradcheck
from mp_jax.checks import bugzoo, contract, equations, exercises, hints, piececheck, pieces
from mp_jax.models import autoencoder

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
SMALL = ["--T", "3", "--hidden", "3", "--batch", "3"]
TRACEBACK = "Traceback"

# What the old starters gave away: the backward in words and symbols (each starter must derive, not copy).
GIVE_AWAY = {
    "softmax_ce": ["p − onehot", "(p - onehot", "/ N"],
    "ae_sparsity": ["−ρ/ρ̂", "s/N ⊙", "β(−ρ"],
    "lm_embedding": ["scatter-add", "scatter-ADD", ".add(", "adds up"],
    "rnn_step": ["1 − h_t", "h_{t−1}ᵀ δ", "δ_t W_hᵀ", "1 − h²"],
    "lstm_step": ["o(1 − o)", "dc ⊙ f", "1 − tanh²", "δ_t W_hᵀ", "dc ←"],
    "gru_step": ["(h_{t−1} − n)", "dh ⊙ z", "(1 − z) ⊙ (1 − n²)", "δ_n U_nᵀ"],
    "bptt": ["SUMMED", "summed", "(dh_T, 0)", "jax.tree.map(jnp.add"],
}


def _filled(name: str, body: str, where: Path, *, suffix: str = "") -> Path:
    """The starter with its ``raise NotImplementedError(...)`` line replaced by ``body``."""
    lines = (EXERCISES / f"{name}.py").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.strip().startswith("raise NotImplementedError"))
    where.mkdir(parents=True, exist_ok=True)
    out = where / f"{name}.py"
    out.write_text("\n".join(lines[:k] + body.strip("\n").splitlines() + lines[k + 1:]) + "\n" + suffix)
    return out


def _mistaken(name: str, changes) -> str:
    body = SOLUTIONS[name]
    for old, new in changes:
        assert old in body, (name, old)
        body = body.replace(old, new, 1)
    return body


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = gradcheck.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _one_line(rc, out, err, *, quiet=True):
    assert rc == 1, out + err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert TRACEBACK not in out + err
    assert out == "" or not quiet, out  # the one line is all


# ----------------------------------------------------------------------------- the starters
def test_there_is_one_starter_per_backward_worth_practising():
    assert {p.stem for p in EXERCISES.glob("*.py")} == set(SOLUTIONS)
    docs = (ROOT / "docs" / "exercises.md").read_text()
    for name in SOLUTIONS:
        assert f"exercises/{name}.py" in docs, name
        exercise = exercises.load(str(EXERCISES / f"{name}.py"))
        assert exercise.piece is not None and exercise.piece.name == name
        assert exercise.model == exercise.piece.model


def _old_sparsity_contract():
    return tuple(inspect.signature(autoencoder.sparsity_delta).parameters)[:1] != ("a",)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    _old_sparsity_contract(), reason="the sparsity starter of the s contract states (AE12)", strict=True))
    if n == "ae_sparsity" else n for n in sorted(SOLUTIONS)])
def test_a_starter_states_the_forward_and_the_contract_never_the_backward(name):
    text = (EXERCISES / f"{name}.py").read_text()
    piece = pieces.by_name(name)
    labels = {rung.label for rung in piece.rungs.values()}
    for label in labels:
        assert not re.search(rf"\b{label}\b", text), f"{name} states ({label}), a backward equation"
    for phrase in GIVE_AWAY[name]:
        assert phrase not in text, f"{name} gives away {phrase!r}"
    first = equations.equation(next(iter(piece.rungs.values())).label)
    assert f"docs/{first.path.name}" in text  # the document that derives the piece
    assert "Forward" in text and "Args:" in text and "<float>" in text  # the forward and the contract, shapes


def test_the_docs_state_the_instances_the_code_builds():
    """docs/exercises.md's numbers are the code's: the model's default batch, the saturated instance."""
    text = (ROOT / "docs" / "exercises.md").read_text()
    assert f"batch is N = {gradcheck.DEFAULT_BATCH} by default" in text
    sizes = [pieces.N, pieces.D, pieces.H, pieces.C, pieces.T, pieces.V, pieces.EMB_D, pieces.L_HID]
    assert len(set(sizes)) == len(sizes)  # "no two of N, D, H, C, T coincide"
    assert "within 1e-11 of 1 and of 0" in text
    piece = pieces.by_name("ae_sparsity")
    with jax.enable_x64(True):
        a = np.asarray(piece.alone(case="saturated").args[0]) if piece.returns != "s" else None
        if a is None:  # the s contract: the arguments are ρ̂ and 1 − ρ̂
            rho_hat, rho_hat_c = (np.asarray(x) for x in piece.alone(case="saturated").args[:2])
        else:
            rho_hat, rho_hat_c = jax.nn.sigmoid(a).mean(0), jax.nn.sigmoid(-a).mean(0)
    assert np.all(np.minimum(rho_hat, rho_hat_c) < 1e-11)


def test_the_starters_state_the_sizes_the_check_uses():
    n, d, h, t = pieces.N, pieces.D, pieces.H, pieces.T
    stated = {"softmax_ce": f"N = {n} rows of C = {pieces.C} classes",
              "lm_embedding": f"V = {pieces.V} words of D = {pieces.EMB_D}",
              "rnn_step": f"N = {n}, D = {d}, H = {h}", "lstm_step": f"N = {n}, D = {d}, H = {h}",
              "gru_step": f"N = {n}, D = {d}, H = {h}", "bptt": f"N = {n}, T = {t}, D = {d}, H = {h}"}
    for name, words in stated.items():
        assert words in " ".join((EXERCISES / f"{name}.py").read_text().split()), (name, words)


def test_the_starters_name_the_sections_that_derive_them():
    for name in sorted(SOLUTIONS):
        if name == "ae_sparsity":
            continue
        text = (EXERCISES / f"{name}.py").read_text()
        piece = pieces.by_name(name)
        section = equations.equation(next(iter(piece.rungs.values())).label).section
        assert section in text, (name, section)


# ----------------------------------------------------------------------------- solutions and mistakes
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_the_solution_passes_and_the_mistake_is_named(name, tmp_path, fast_compile):
    case = ["--case", "repeat"] if name == "lm_embedding" else []
    rc, out, err = _run("--backward", str(_filled(name, SOLUTIONS[name], tmp_path / "right")), *SMALL, *case)
    assert rc == 0, out + err
    assert "every tensor matches the oracles, alone and inside the model" in out
    assert "alone: every output matches its oracle" in out
    piece = pieces.by_name(name)
    original = getattr(piece.module, piece.attribute)
    lines, start = inspect.getsourcelines(original)
    assert f"lines {start}-{start + len(lines) - 1} ({piece.module.__name__}.{piece.attribute})" in out
    old, new, tensor = MISTAKES[name]
    assert old in SOLUTIONS[name]
    rc, out, err = _run("--backward", str(_filled(name, SOLUTIONS[name].replace(old, new, 1), tmp_path / "wrong")),
                        *SMALL, *case)
    assert rc == 1, out + err
    first = out.split("the first wrong tensor is ")[1].split()[0]
    assert first.split("[")[0] == tensor, first
    assert "likely mistake: " in out or "no known mistake matches" in out
    assert "--hint shows where" in out


@pytest.mark.slow
def test_the_two_cell_carry_mistakes_get_two_diagnoses():
    """No cell-state carry and the carry taken before (LSTM6) fail at the same tensor; the
    diagnosis tells them apart."""
    found = {}
    for changes, expected in [(c, e) for n, c, _, e in LEARNER_MISTAKES if n == "lstm_step"
                              and e in ("lstm-cell-carry-dropped", "lstm-carry-before-lstm6")]:
        check, diag = _alone(_function("lstm_step", _mistaken("lstm_step", changes)), "lstm_step")
        found[expected] = (check.first_wrong().label, diag.lines()[0])
    (where_a, line_a), (where_b, line_b) = found.values()
    assert where_a == where_b == "dc_prev" and line_a != line_b
    assert "lstm-cell-carry-dropped" in found["lstm-cell-carry-dropped"][1]
    assert "lstm-carry-before-lstm6" in found["lstm-carry-before-lstm6"][1]


def _function(name: str, body: str):
    """The learner's function of a filled starter, loaded as gradcheck loads it."""
    import tempfile
    with tempfile.TemporaryDirectory() as where:
        return exercises.load(str(_filled(name, body, Path(where)))).function


def _alone(function, name, **kwargs):
    piece = pieces.by_name(name)
    original = getattr(piece.module, piece.attribute)
    check = piececheck.check_piece(piece, function, original, **kwargs)
    return check, piececheck.diagnose_piece(check, original)


@pytest.mark.parametrize("name, changes, first, expected", [
    pytest.param(*m, id=f"{m[0]}-{m[3] or 'unknown'}-{k}",
                 marks=() if k in (0, 13, 20) else pytest.mark.slow) for k, m in enumerate(LEARNER_MISTAKES)])
def test_the_diagnosis_names_each_learner_mistake(name, changes, first, expected):
    check, diag = _alone(_function(name, _mistaken(name, changes)), name)
    wrong = check.first_wrong()
    assert wrong is not None and wrong.name.split("[")[0] == first, wrong
    if expected in bugzoo.BUGS:
        assert diag.bug is bugzoo.BUGS[expected], diag
        assert diag.lines()[0].startswith("likely mistake: ") and expected in diag.lines()[0]
        assert bugzoo.BUGS[expected].why in diag.lines()[1]
    elif expected:
        assert diag.family == expected or diag.also == expected, diag
        assert diag.lines()[0].startswith("likely mistake: ")
    else:
        assert not diag.found and diag.lines()[0].startswith("no known mistake matches"), diag


@pytest.mark.slow
def test_the_family_lines_say_what_is_wrong():
    softmax = {e: _alone(_function("softmax_ce", _mistaken("softmax_ce", c)), "softmax_ce")[1]
               for n, c, _, e in LEARNER_MISTAKES if n == "softmax_ce"}
    phrase = f"divided by C = {pieces.C} where its equation divides by N = {pieces.N}"
    assert phrase in softmax["softmax-ce-mean-over-classes"].text
    assert f"`dz is {phrase}`" in (ROOT / "docs" / "exercises.md").read_text()
    assert "−1 times the right one" in softmax["softmax-ce-sign"].text
    assert "lacks the factor dloss" in softmax["factor"].text
    assert "2.5 times the right one" in softmax["constant"].text


# ----------------------------------------------------------------------------- hints and the pointer
def test_equations_are_quoted_from_docs_byte_for_byte():
    """Every tagged display line of docs/ is what equations.equation returns for its label."""
    for path in sorted((ROOT / "docs").glob("*.md")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            tag = re.search(r"\\tag\{([^{}]+)\}", line)
            if tag and line.strip().startswith("$$"):
                eq = equations.equation(tag[1])
                assert (eq.text, eq.path, eq.line) == (line, path, number)
    with pytest.raises(equations.EquationNotFound, match="LSTM99"):
        equations.equation("LSTM99")
    eq = equations.equation("LSTM12")
    assert eq.section == "LSTM › Backward, one step" and eq.link == "docs/recurrent.md#backward-one-step-1"


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_every_rung_of_every_piece_is_an_equation_of_docs(name):
    piece = pieces.by_name(name)
    assert piece.rungs
    for tensor, rung in piece.rungs.items():
        equations.equation(rung.label)  # raises if docs/ lacks it
        for need in rung.needs:
            assert need in piece.rungs or need in piece.given, (name, tensor, need)
    for model_name, tensor in piece.model_names.items():
        assert tensor in piece.rungs


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow if n == "bptt" else ())
                                  for n in sorted(SOLUTIONS) if n in MISTAKES])
def test_three_rungs_for_the_first_wrong_tensor(name):
    old, new, _ = MISTAKES[name]
    piece = pieces.by_name(name)
    check, _ = _alone(_function(name, SOLUTIONS[name].replace(old, new, 1)), name)
    wrong = check.first_wrong()
    rung_tensor, rung = piece.rung_of(wrong.name)
    eq = equations.equation(rung.label)
    one = hints.hint(piece, wrong.name, 1, step=wrong.step, check=check)
    assert f"({rung.label})" in one[0] and eq.where in one[0] and eq.text not in "\n".join(one)
    two = hints.hint(piece, wrong.name, 2, step=wrong.step, check=check)
    assert f"    {eq.text}" in two  # quoted, the very line of docs/
    three = hints.hint(piece, wrong.name, 3, step=wrong.step, check=check)
    assert all(f"    {need}:" in "\n".join(three) for need in rung.needs)
    assert "matches its oracle: the mistake is in how" in three[-1] or "fix" in three[-1]
    assert hints.hint(piece, wrong.name, 9, step=wrong.step, check=check)[0].startswith("(there are 3 rungs")


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_hint_on_an_unwritten_exercise_points_to_its_first_equation(name):
    rc, out, err = _run("--backward", str(EXERCISES / f"{name}.py"), "--hint", *SMALL)
    _one_line(rc, out, err, quiet=False)
    piece = pieces.by_name(name)
    first = next(iter(piece.rungs.values()))
    assert "is not written yet" in err
    assert "hint 1 of 3" in out and f"({first.label})" in out


@pytest.mark.slow
def test_hint_climbs_and_names_what_it_reads(tmp_path, fast_compile):
    path = _filled("rnn_step", SOLUTIONS["rnn_step"].replace("h_prev.T @ delta", "h.T @ delta"), tmp_path)
    rc, text, err = _run("rnn", "--backward", str(path), "--hint", "3", *SMALL)
    assert rc == 1 and "the first wrong tensor is cell.w_h" in text
    assert text.rstrip().endswith("every tensor of yours that (RNN4) reads matches its oracle: the mistake is in how "
                                  "(RNN4) combines them")
    assert "δ_t: yours, by (RNN3): matches its oracle" in text and "h_{t−1}: given, the cache (h_prev)" in text
    piece = pieces.by_name("rnn_step")
    check, _ = _alone(exercises.load(str(path)).function, "rnn_step")
    assert hints.hint(piece, "cell.w_h", 1, check=check)[0] == (
        "hint 1 of 3 for cell.w_h: it is defined by (RNN4) in docs/recurrent.md, section "
        "\"RNN › Backward, one step\" (docs/recurrent.md#backward-one-step). Read the derivation there and write "
        "it again; --hint 2 quotes the equation")


def test_the_pointer_names_the_package_function_and_its_lines():
    for piece in pieces.all_pieces():
        original = getattr(piece.module, piece.attribute)
        lines, start = inspect.getsourcelines(original)
        text = hints.pointer(original)
        path = Path(inspect.getsourcefile(original)).relative_to(ROOT)
        assert f"{path}, lines {start}-{start + len(lines) - 1}" in text
        source = (ROOT / path).read_text().splitlines()[start - 1]
        assert f"def {piece.attribute}(" in source


def test_hint_needs_a_piece_to_explain(capsys):
    with pytest.raises(SystemExit) as exc:
        gradcheck.main(["lstm", "--hint"])
    assert exc.value.code == 2 and "--hint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- one line, never a traceback
@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_an_unwritten_exercise_gives_one_line(name):
    rc, out, err = _run("--backward", str(EXERCISES / f"{name}.py"), *SMALL)
    _one_line(rc, out, err)
    assert "is not written yet" in err


def test_a_broken_exercise_names_its_line(tmp_path, fast_compile):
    path = _filled("rnn_step", "    delta = dh @ x[:2]\n", tmp_path)
    rc, out, err = _run("--backward", str(path), *SMALL)
    _one_line(rc, out, err)
    assert "rnn_step_backward raised TypeError" in err and f"of {path}" in err


def test_an_exercise_on_a_model_that_never_calls_it_says_so(tmp_path, fast_compile):
    path = _filled("ae_sparsity", SOLUTIONS["ae_sparsity"], tmp_path)
    rc, out, err = _run("lstm", "--backward", str(path), *SMALL)
    assert rc == 1 and "does not call sparsity_delta" in err


BAD_FILES = {
    "no TARGET": ("def f():\n    pass\n", "expected TARGET"),
    "TARGET not a string": ("TARGET = 3\nMODEL = 'rnn'\n", "expected TARGET"),
    "TARGET of no module": ("TARGET = 'mp_jax." "nowhere:f'\nMODEL = 'rnn'\n", "names no function of the package"),
    "TARGET outside the package": ("TARGET = 'os:getcwd'\nMODEL = 'rnn'\n", "names no function of the package"),
    "no such function": ("TARGET = 'mp_jax.layers:nothing'\nMODEL = 'mlp'\n", "names no function of the package"),
    "MODEL not a string": ("TARGET = 'mp_jax.layers:linear_backward'\nMODEL = 1\n", "expected MODEL"),
    "MODEL unknown": ("TARGET = 'mp_jax.layers:embedding_backward'\nMODEL = 'cnn'\n"
                      "def embedding_backward(dout, cache):\n    return 0\n", "not a registry model"),
    "function missing": ("TARGET = 'mp_jax.models.recurrent:rnn_step_backward'\nMODEL = 'rnn'\n", "expected a function"),
    "function not callable": ("TARGET = 'mp_jax.models.recurrent:rnn_step_backward'\nMODEL = 'rnn'\n"
                              "rnn_step_backward = 3\n", "expected a function"),
    "syntax error": ("TARGET = 'x'\ndef f(:\n", "not valid Python"),
    "import error": ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    "raises on import": ("raise ValueError('oops')\n", "ValueError: oops"),
    "exits on import": ("import sys\nsys.exit(3)\n", "SystemExit"),
    "empty": ("", "expected TARGET"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_file_that_cannot_serve_gives_one_line(case, tmp_path, capsys):
    text, words = BAD_FILES[case]
    path = tmp_path / "mine.py"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        gradcheck.main(["--backward", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and words in err and TRACEBACK not in err, err


@pytest.mark.parametrize("path, words", [("nowhere.py", "no such file"), (".", "a folder"), ("notes.txt", "not a .py")])
def test_a_path_that_is_no_exercise_gives_one_line(path, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SystemExit) as exc:
        gradcheck.main(["--backward", path])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and words in err


def test_bytes_that_are_not_text_give_one_line(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_bytes(b"\xff\xfe\x00TARGET = 1\x00\x81")
    with pytest.raises(SystemExit):
        gradcheck.main(["--backward", str(path)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and TRACEBACK not in err


def _applicable(name: str, mutation: str) -> bool:
    """Structure mutations apply to the pieces that return a tuple of named parts."""
    structured = isinstance(pieces.by_name(name).returns, tuple)
    if mutation in ("plain tuples", "ASCII keys", "a key missing", "an extra key", "dict values as a list"):
        return structured
    return True


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "lstm_step" else pytest.mark.slow)
                                  for n in sorted(SOLUTIONS)])
def test_whatever_the_piece_returns_the_answer_is_one_line(name, tmp_path):
    """A fuzz of malformed return values: each is named in one line (field, expected, got)."""
    piece = pieces.by_name(name)
    for k, mutation in enumerate(m for m in MALFORMED if _applicable(name, m)):
        wrapper = (f"\n_solution = {piece.attribute}\n\n\ndef {piece.attribute}(*args, **kwargs):\n"
                   f"    from exercise_solutions import MALFORMED\n"
                   f"    return MALFORMED[{mutation!r}](_solution(*args, **kwargs))\n")
        path = _filled(name, SOLUTIONS[name], tmp_path / str(k), suffix=wrapper)
        rc, out, err = _run("--backward", str(path), *SMALL)
        assert rc == 1 and err.count("\n") == 1 and out == "" and TRACEBACK not in out + err, (mutation, out, err)
        assert f"{piece.attribute} returned " in err or f"{piece.attribute} raised " in err, (mutation, err)


def test_contract_messages_name_the_field_what_was_expected_and_what_came():
    from mp_jax.models.recurrent import LSTMParams
    want = ((jax.ShapeDtypeStruct((4, 8), jnp.float64), jax.ShapeDtypeStruct((4, 8), jnp.float64)),
            LSTMParams(*(jax.ShapeDtypeStruct(s, jnp.float64) for s in ((3, 32), (8, 32), (32,)))),
            {"δ_o": jax.ShapeDtypeStruct((4, 8), jnp.float64), "dc_t": jax.ShapeDtypeStruct((4, 8), jnp.float64)})
    names = (("dh_prev", "dc_prev"), "cell", "deltas")
    a = np.zeros((4, 8))
    good = ((a, a), LSTMParams(np.zeros((3, 32)), np.zeros((8, 32)), np.zeros(32)), {"δ_o": a, "dc_t": a})
    contract.check(good, want, names)
    cases = [
        (((np.zeros((4, 4)), a), good[1], good[2]), "dh_prev: got [4, 4], expected [4, 8]"),
        ((good[0], list(good[1]), good[2]), "cell: got a list of 3, expected LSTMParams(w_x, w_h, b)"),
        ((good[0], good[1], {"delta_o": a, "dc_t": a}),
         "deltas: got keys {dc_t, delta_o}, expected {dc_t, δ_o} (missing δ_o; extra delta_o) "
         "(the keys are the symbols of docs/: δ_o, not delta_o)"),
        ((good[0], good[1], {"δ_o": a}), "(missing dc_t)"),
        (((a, a.astype(np.float32)), good[1], good[2]), "dc_prev: got float32, expected float64"),
        (((a, None), good[1], good[2]), "dc_prev: got None, expected an array [4, 8] of float64"),
        ((good[0], good[1]), "got a tuple of 2, expected a tuple of 3: ((dh_prev, dc_prev), cell, deltas)"),
        (((a.T[:, :4], a), good[1], good[2]), "dh_prev: got [8, 4], expected [4, 8] (the transpose's shape)"),
    ]
    for got, message in cases:
        with pytest.raises(contract.ContractError) as e:
            contract.check(got, want, names)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.slow
def test_a_return_that_fits_alone_but_not_inside_the_model_gives_one_line(tmp_path, fast_compile):
    body = SOLUTIONS["rnn_step"].replace("return delta @ p.w_h.T,", "return (delta @ p.w_h.T)[:5],")
    rc, out, err = _run("--backward", str(_filled("rnn_step", body, tmp_path)), "--batch", "7")
    _one_line(rc, out, err)  # the check inside the model stops: its line is all, the tables are not printed
    assert "dh_prev: got [5, " in err and "expected [7, " in err


@pytest.mark.slow
@pytest.mark.parametrize("name, body_change, tensor, kind", [
    ("rnn_step", ("delta = dh * (1.0 - h * h)", "delta = dh * (h - h) / (h - h)"), "δ_t", "NaN"),
    ("lstm_step", ("dc * c_prev * f * (1.0 - f)", "dc * c_prev * f * (1.0 - f) * jnp.inf"), "δ_f", "Inf"),
])
def test_nan_and_inf_are_named_with_the_first_tensor_and_step(name, body_change, tensor, kind, tmp_path,
                                                              fast_compile):
    body = _mistaken(name, [body_change])
    rc, out, err = _run("--backward", str(_filled(name, body, tmp_path)), *SMALL)
    assert rc == 1 and TRACEBACK not in out + err
    assert f"{kind} first appears in {tensor} at t = 3 (inside the model)" in out
    assert f"{kind} first appears in {tensor} (alone)" in out
    assert f"{tensor} holds " in out


@pytest.mark.slow
def test_the_bptt_exercise_serves_every_cell(tmp_path, fast_compile):
    path = _filled("bptt", SOLUTIONS["bptt"], tmp_path)
    for cell in ("rnn", "gru"):
        rc, out, err = _run(cell, "--backward", str(path), *SMALL)
        assert rc == 0, out + err
        assert f"the {cell.upper()}'s reverse scan" in out


def test_the_sparsity_piece_follows_the_autoencoders_contract():
    """sparsity_delta(a, hp) -> δ_KL is checked alone; a flipped sign is the zoo's ae-kl-sign, and
    the textbook form with 1 − ρ̂ by subtraction fails where ρ̂ is near 1."""
    delta_kl = autoencoder.sparsity_delta

    def textbook(a, hp):
        h = jax.nn.sigmoid(a)
        rho_hat = h.mean(0)
        return hp.beta * (-hp.rho / rho_hat + (1 - hp.rho) / (1 - rho_hat)) / a.shape[0] * h * (1 - h)

    piece = pieces.by_name("ae_sparsity")
    assert piece.returns == "δ_KL" and piece.rungs["δ_KL"].label == "AE21"
    assert piececheck.check_piece(piece, delta_kl, delta_kl, case="saturated").ok
    assert piececheck.check_piece(piece, textbook, delta_kl).ok  # away from saturation the textbook is right
    saturated = piececheck.check_piece(piece, textbook, delta_kl, case="saturated")
    assert not saturated.ok and saturated.first_wrong().name == "δ_KL"
    assert piececheck.diagnose_piece(saturated, delta_kl).family == "region"
    flipped = piececheck.check_piece(piece, lambda a, hp: -delta_kl(a, hp), delta_kl)
    diag = piececheck.diagnose_piece(flipped, delta_kl)
    assert diag.family == "zoo" and "ae-kl-sign" in diag.text
