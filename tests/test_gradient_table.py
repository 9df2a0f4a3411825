"""The gradient table: every manual backward of the registry, checked by three oracles.

One row per model × implementation × dtype × case, with ids that read as a table
(``lstm-fast-float64-T150``). Each row runs :func:`mp_jax.checks.gradtable.check_gradients`: every
parameter gradient against ``jax.grad`` of the reference loss, every named intermediate of the
backward against ``jax.grad`` in a zero offset, and, in float64, against central finite
differences. Tolerances: :data:`mp_jax.checks.gradtable.TOLERANCES` (float64 1e-10 relative, float32
1e-4), :data:`mp_jax.checks.gradtable.FD_TOLERANCE`.

The cases are the shapes that break backward passes: batch 1; T = 1, 2 and 150 for the
recurrences; a word repeated inside one context for the language model; saturated hidden
units for the autoencoder; square weights, where a transposed gradient has the right shape.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mp_jax.checks import gradtable, registry

# The fast tier (-m "not slow") keeps every model and implementation in float64 on its first
# case; the other cases and float32 run in the full suite.
ROWS = [pytest.param(name, impl, dtype, size, id=f"{name}-{impl}-{dtype}-{case}",
                     marks=() if (dtype, case) == ("float64", spec.sizes[0][0]) else pytest.mark.slow)
        for name, spec in registry.MODELS.items() for impl in spec.impls
        for dtype in ("float64", "float32") for case, size in spec.sizes]


@pytest.mark.parametrize("name,impl,dtype,size", ROWS)
def test_gradient_table(name, impl, dtype, size, fast_compile):
    spec = registry.get(name)
    check = gradtable.check_gradients(spec, impl, dtype, size, fd=dtype == "float64")
    failed = [f"{r.label}: {r.rel_err:.2e}" + (f", fd {r.fd_err:.2e}" if r.fd_err is not None else "")
              for r in check.rows if not r.passed]
    assert check.ok, f"{name}-{impl}-{dtype}: {failed}"
    kinds = {r.kind for r in check.rows}
    assert kinds == {"loss", "intermediate", "parameter"}  # all three oracles ran
    if dtype == "float64":
        assert all(r.fd_err is not None for r in check.rows if r.kind == "parameter")
    # every intermediate the registry names was compared, at every step
    n_steps = size.T if spec.per_step else 1
    per_step = sum(1 for r in check.rows if r.step is not None)
    assert per_step == len(spec.per_step) * n_steps


FAST = [pytest.param(name, size, id=f"{name}-{case}", marks=() if k == 0 else pytest.mark.slow)
        for name, spec in registry.MODELS.items() if "fast" in spec.impls for k, (case, size) in enumerate(spec.sizes)]


@pytest.mark.parametrize("name,size", FAST)
def test_fast_equals_reference(name, size, fast_compile):
    """The fast path is an implementation of the reference: equal gradients and intermediates
    in float64 to 1e-12 relative."""
    spec = registry.get(name)
    with jax.enable_x64(True):
        params, batch = spec.instance(size)
        ref = jax.jit(spec.impls["reference"].loss_grad_and_intermediates)(params, batch)
        fast = jax.jit(spec.impls["fast"].loss_grad_and_intermediates)(params, batch)
    chex.assert_trees_all_equal_shapes_and_dtypes(fast, ref)  # the same pytree, every leaf float64
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == np.float64
        assert np.max(np.abs(a - b), initial=0) <= 1e-12 * max(np.max(np.abs(b), initial=0), 1e-300)


def test_the_table_covers_every_model_and_the_shapes_that_break_backward_passes():
    ids = {p.id for p in ROWS}
    assert set(registry.MODELS) == {"ae", "ae-untied", "lm", "lm-dropout", "rnn", "lstm", "gru", "mlp",
                                    "logistic"}
    for cell in ("rnn", "lstm", "gru"):
        for impl in ("reference", "fast"):
            for t in ("T1", "T2", "T150"):
                assert f"{cell}-{impl}-float64-{t}" in ids
    assert "lm-fast-float64-repeat-N1" in ids and "ae-reference-float64-saturated" in ids
    for name in registry.MODELS:
        assert any(i.startswith(name + "-") and i.endswith("square") for i in ids), name
        assert any(s.batch == 1 for _, s in registry.get(name).sizes), name
    t150 = dict(registry.get("lstm").sizes)["T150"]
    assert t150.T >= 100


def test_the_fast_tier_rows_cannot_hide_a_count_or_a_transpose():
    """Each model's first case (the fast tier's) has N ≥ 2, T ≥ 2 and no two sizes equal."""
    from mp_jax.checks import piececheck

    for name, spec in registry.MODELS.items():
        case, size = spec.sizes[0]
        with jax.enable_x64(True):
            params, batch = spec.instance(size)
        counts = piececheck.model_counts(name, params, batch)
        assert counts["N"] >= 2 and counts.get("T", 2) >= 2, (name, case, counts)
        assert len(set(counts.values())) == len(counts), (name, case, counts)
        if spec.per_step:  # every size of a recurrence: a count of steps cannot stand for a count of units
            assert set(counts) == {"N", "T", "D", "H", "M", "C"}


def test_a_saturated_autoencoder_really_saturates():
    spec = registry.get("ae")
    with jax.enable_x64(True):
        params, x = spec.instance(dict(spec.sizes)["saturated"])
        rho_hat = jnp.mean(jax.nn.sigmoid(x @ params.w_enc + params.b_hid), axis=0)
    assert float(jnp.min(rho_hat)) > 0.99


def test_a_repeat_case_repeats_a_word_inside_one_context():
    spec = registry.get("lm")
    for case in ("repeat", "repeat-N1"):
        ids = np.asarray(spec.instance(dict(spec.sizes)[case])[1][0])
        assert ids[0, 0] == ids[0, 2]


def test_docs_state_the_tolerances_and_the_zoo_the_code_uses():
    """docs/checks.md's numbers are the code's: tolerances, the finite-difference step and
    sample, the zoo's size, the cases."""
    from pathlib import Path

    from mp_jax.checks import bugzoo

    text = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    assert f"| float64 | {gradtable.TOLERANCES['float64']:.0e} |" in text
    assert f"| float32 | {gradtable.TOLERANCES['float32']:.0e} |" in text
    assert "h = 10^{-5}" in text and gradtable.FD_STEP == 1e-5
    assert f"on {gradtable.FD_SAMPLES} seeded coordinates" in text
    assert "passes at $10^{-6}$" in text and gradtable.FD_TOLERANCE == 1e-6
    words = {12: "Twelve", 18: "Eighteen", 30: "Thirty", 32: "Thirty-two"}
    assert text.count(words.get(len(bugzoo.BUGS), str(len(bugzoo.BUGS)))) >= 1
    for name, spec in registry.MODELS.items():
        assert f"| `{name}` | {', '.join(spec.impls)} |" in text
    assert "T = 1, 2, 7 and 150" in text
    assert {s.T for _, s in registry.get("gru").sizes} == {1, 2, 7, 150, 4}
