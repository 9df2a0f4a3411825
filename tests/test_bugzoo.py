"""The bug zoo: every wrong backward it holds fails the gradient table's check, and the
intermediate check names the tensor where it first goes wrong."""
import contextlib
import io

import pytest

from mp_jax import gradcheck
from mp_jax.checks import bugzoo, gradtable, registry


# the fast tier (-m "not slow") runs three: a reference recurrence, a fast one and the autoencoder
FAST_TIER = ("lstm-no-forget-carry", "gru-fast-update-sign", "ae-kl-sign")


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_TIER else pytest.mark.slow)
                                  for n in bugzoo.BUGS])
def test_every_mutant_is_caught_and_located(name, fast_compile):
    bug = bugzoo.BUGS[name]
    spec = registry.get(bug.model)
    original = getattr(bug.module, bug.attribute)
    with bugzoo.applied(bug):
        assert getattr(bug.module, bug.attribute) is bug.replacement
        check = gradtable.check_gradients(spec, bug.impl, "float64", bug.size)
    assert getattr(bug.module, bug.attribute) is original  # restored
    assert not check.ok
    wrong = check.first_wrong()
    assert wrong is not None and wrong.name.split("[")[0] == bug.first_wrong, (wrong, bug.first_wrong)
    assert wrong.rel_err > 1e3 * check.tol  # far outside the tolerance, not a rounding accident
    # without the bug the same check passes: the mutant, not the instance, fails it
    assert gradtable.check_gradients(spec, bug.impl, "float64", bug.size).ok


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


def test_gradcheck_bug_list_names_every_bug():
    rc, text = _run("--bug", "list")
    assert rc == 0
    for bug in bugzoo.BUGS.values():
        assert any(line.startswith(bug.name) and bug.summary in line for line in text.splitlines())
