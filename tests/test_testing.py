"""The gradient-check helper itself: it must catch a wrong backward and name the leaf."""
import jax.numpy as jnp
import pytest

from mp_jax.checks.testing import assert_grads_match


def loss(p, b):
    return jnp.sum(p["a"] ** 2 * b) + jnp.sum(jnp.sin(p["c"]))


def good(p, b):
    return loss(p, b), {"a": 2 * p["a"] * b, "c": jnp.cos(p["c"])}


def bad(p, b):  # 1e-6 relative error in leaf "c": fine in float32, caught in float64
    return loss(p, b), {"a": 2 * p["a"] * b, "c": jnp.cos(p["c"]) * (1 + 1e-6)}


PARAMS = {"a": jnp.arange(1.0, 4.0), "c": jnp.linspace(0.1, 1.0, 4)}
BATCH = jnp.array([0.5, -1.0, 2.0])


def test_accepts_correct_gradients():
    reports = assert_grads_match(loss, good, PARAMS, BATCH)
    assert set(reports) == {"float64", "float32"}
    assert max(reports["float64"]["leaves"].values()) < 1e-12


def test_names_the_worst_leaf():
    with pytest.raises(AssertionError, match=r"float64.*worst leaf \['c'\]"):
        assert_grads_match(loss, bad, PARAMS, BATCH)


def test_rejects_a_wrong_loss_value():
    with pytest.raises(AssertionError, match="loss mismatch"):
        assert_grads_match(loss, lambda p, b: (loss(p, b) + 1.0, good(p, b)[1]), PARAMS, BATCH)


def _dot_precision() -> str:
    """The precision a float32 matmul traced now gets (as written in its StableHLO)."""
    import jax

    text = jax.jit(lambda x: x @ x).lower(jnp.ones((2, 2), jnp.float32)).as_text()
    return text.split("precision = [")[1].split(",")[0]


def test_the_check_runs_at_full_matmul_precision_whatever_the_callers_default(monkeypatch):
    import jax

    from mp_jax.checks import testing

    seen = []
    real = testing.grad_errors

    def recording(*args):
        seen.append(_dot_precision())
        return real(*args)

    monkeypatch.setattr(testing, "grad_errors", recording)
    with jax.default_matmul_precision("tensorfloat32"):  # JAX's default on recent NVIDIA GPUs
        assert _dot_precision() == "HIGH"
        testing.assert_grads_match(loss, good, PARAMS, BATCH)
        assert _dot_precision() == "HIGH"  # the caller's setting is back
    assert seen == ["HIGHEST", "HIGHEST"]  # float64 and float32 passes


def test_experiments_set_the_matmul_precision_they_are_asked_for():
    import jax

    from experiments import common

    assert common.base_parser("x", "").parse_args([]).matmul_precision == "highest"
    try:
        common.set_matmul_precision("default")
        assert _dot_precision() == "DEFAULT"
        common.set_matmul_precision("highest")
        assert _dot_precision() == "HIGHEST"
        with pytest.raises(ValueError, match="matmul-precision"):
            common.set_matmul_precision("tf32")
    finally:
        jax.config.update("jax_default_matmul_precision", "highest")  # as conftest.py set it
