"""The bug zoo: every wrong backward it holds fails the gradient table's check, the intermediate
check names the tensor where it first goes wrong, and the diagnosis names the bug (and the
family of mistakes it exemplifies), as a learner who made that mistake would be told."""
import contextlib
import functools
import io

import pytest

from mp_jax import gradcheck
from mp_jax.checks import bugzoo, diagnosis, gradtable, piececheck, registry


# the fast tier (-m "not slow") runs three: a reference recurrence, a fast one and the autoencoder
FAST_TIER = ("lstm-no-forget-carry", "rnn-fast-no-tanh-prime", "ae-kl-sign")


@functools.lru_cache(maxsize=None)
def _clean(model: str, impl: str, size: registry.Size) -> bool:
    """The check without any bug, on the instance a bug is shown on (shared by the bugs of one model)."""
    return gradtable.check_gradients(registry.get(model), impl, "float64", size).ok


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_TIER else pytest.mark.slow)
                                  for n in bugzoo.BUGS])
def test_every_mutant_is_caught_located_and_diagnosed(name, fast_compile):
    bug = bugzoo.BUGS[name]
    spec = registry.get(bug.model)
    original = getattr(bug.module, bug.attribute)
    alone = piececheck.bug_alone(bug, bug.model, case=bug.size.special)
    with bugzoo.applied(bug):
        assert getattr(bug.module, bug.attribute) is bug.replacement
        check = gradtable.check_gradients(spec, bug.impl, "float64", bug.size)
        _, diag, _ = piececheck.diagnose_bug(bug, spec, check, alone)
    assert getattr(bug.module, bug.attribute) is original  # restored
    assert not check.ok
    wrong = check.first_wrong()
    assert wrong is not None and wrong.name.split("[")[0] == bug.first_wrong, (wrong, bug.first_wrong)
    if bug.family != "precision":
        assert wrong.rel_err > 1e3 * check.tol  # far outside the tolerance, not a rounding accident
    else:
        assert check.tol < wrong.rel_err < diagnosis.PRECISION
    # the diagnosis names the bug, and the family it stands for
    assert diag is not None and diag.bug is bug, diag
    if bug.family:
        assert bug.family in (diag.family, diag.also), diag
    # without the bug the same check passes: the mutant, not the instance, fails it
    assert _clean(bug.model, bug.impl, bug.size)


def test_the_zoo_spans_the_backward_passes():
    bugs = list(bugzoo.BUGS.values())
    assert len(bugs) >= 12
    assert len({b.name for b in bugs}) == len(bugs)
    covered = {(b.model, b.impl) for b in bugs}
    for need in [("lstm", "reference"), ("lstm", "fast"), ("rnn", "fast"), ("gru", "fast"), ("lm", "fast"),
                 ("ae", "reference"), ("logistic", "reference"), ("mlp", "reference")]:
        assert need in covered, need
    assert any(b.attribute == "relu_backward" for b in bugs)  # the recurrences' MLP head
    for b in bugs:
        assert callable(getattr(b.module, b.attribute)) and b.impl in registry.get(b.model).impls
        assert "# BUG" in __import__("inspect").getsource(b.replacement)
        assert b.family in diagnosis.FAMILIES + ("",) and b.summary and b.why
    # every family the diagnosis names has a bug of the zoo that stands for it
    for family in set(diagnosis.FAMILIES) - {"zoo", "region", "nonfinite"}:
        assert any(b.family == family for b in bugs), family
    # the instance a bug is shown on has no two sizes equal, unless the bug needs a special one
    shown = [b for b in bugs if not b.size.special]
    assert all(b.size.batch not in (b.size.hidden, b.size.T, registry.SEQ_INPUTS, registry.SEQ_CLASSES,
                                     registry.MLP_CLASSES, registry.LOGISTIC_CLASSES) for b in shown)


def test_the_docs_name_the_zoo_and_its_families_as_the_code_has_them():
    """docs/checks.md's table of the diagnosis names, for each family, bugs of the zoo that stand
    for it; README counts the zoo."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "checks.md").read_text()
    table = text.split("## Why a tensor is wrong: the diagnosis")[1].split("\n\n")[2]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    assert {row[0].strip(" `") for row in rows} == set(diagnosis.FAMILIES) - {"region", "nonfinite"}
    for family, _, bugs in rows:
        family = family.strip(" `")
        for name in re.findall(r"`([a-z0-9-]+)`", bugs):
            assert bugzoo.BUGS[name].family == family, (family, name)
    assert f"A zoo of {len(bugzoo.BUGS)} published" in (root / "README.md").read_text()


def _run(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = gradcheck.main(list(argv))
    return rc, out.getvalue()


def test_gradcheck_bug_fails_and_names_the_tensor(fast_compile):
    rc, text = _run("lstm", "--bug", "lstm-no-forget-carry", "--intermediates", "--T", "4")
    assert rc == 1
    assert "bug zoo: lstm-no-forget-carry replaces mp_jax.models.recurrent.lstm_step_backward" in text
    assert "the first wrong tensor is dc_t at t = 3" in text
    assert "implementation fast" not in text  # the bug's implementation only
    assert "alone: the first wrong output is dc_prev" in text  # the piece alone first, as for a learner
    assert "likely mistake: " in text and "(the zoo's lstm-no-forget-carry)" in text
    assert bugzoo.BUGS["lstm-no-forget-carry"].why in text


def test_gradcheck_bug_list_names_every_bug():
    rc, text = _run("--bug", "list")
    assert rc == 0
    for bug in bugzoo.BUGS.values():
        assert any(line.startswith(bug.name) and bug.summary in line for line in text.splitlines())
