"""The registry lists every manual gradient of the package, and each model's manual backward
also runs inside jax.grad through its custom VJP."""
import importlib
import inspect
import pkgutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mp_jax.models
from mp_jax.checks import registry


def _manual_gradients_defined():
    """(module, name, object) of every public callable under mp_jax/models/ that returns a
    manual gradient: ``loss_and_grad*`` and ``loss_grad_and_intermediates``."""
    for info in pkgutil.iter_modules(mp_jax.models.__path__):
        module = importlib.import_module(f"mp_jax.models.{info.name}")
        for name, obj in vars(module).items():
            if (name.startswith("loss_and_grad") or name == "loss_grad_and_intermediates") and callable(obj):
                if inspect.getmodule(obj) is module or not inspect.isfunction(obj):
                    yield module.__name__, name, obj


def test_every_manual_gradient_under_models_is_listed():
    listed = registry.manual_gradients()
    found = list(_manual_gradients_defined())
    assert len(found) >= 12
    missing = [f"{m}.{n}" for m, n, obj in found if obj not in listed]
    assert not missing, f"manual gradients the registry does not list: {missing}"


def test_the_unlisted_check_would_catch_a_new_one(monkeypatch):
    from mp_jax.models import mlp
    monkeypatch.setattr(mlp, "loss_and_grad_v2", lambda p, b: mlp.loss_and_grad(p, b), raising=False)
    monkeypatch.setattr(mlp.loss_and_grad_v2, "__module__", mlp.__name__, raising=False)
    found = {(m, n) for m, n, obj in _manual_gradients_defined() if obj not in registry.manual_gradients()}
    assert ("mp_jax.models.mlp", "loss_and_grad_v2") in found


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_init_params_builds_the_instances_structure(name):
    spec = registry.get(name)
    with jax.enable_x64(True):
        params, _ = spec.instance()
    assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(params))
    assert callable(spec.init_params) and callable(spec.loss)
    assert set(spec.impls) <= {"reference", "fast"} and "reference" in spec.impls


CASES = [pytest.param(name, impl, id=f"{name}-{impl}") for name, spec in registry.MODELS.items() for impl in spec.impls]


@pytest.mark.slow
@pytest.mark.parametrize("name,impl", CASES)
def test_custom_vjp_runs_the_manual_backward_under_jit_and_vmap(name, impl, fast_compile):
    spec = registry.get(name)
    with jax.enable_x64(True):
        params, batch = spec.instance(registry.Size(batch=3, hidden=4, T=3))
        loss = spec.manual_loss(impl)
        value, grads = jax.jit(jax.value_and_grad(loss))(params, batch)
        want_value, want = spec.impls[impl].loss_and_grad(params, batch)
        np.testing.assert_allclose(value, want_value, rtol=1e-14)
        chex.assert_trees_all_close(grads, want, rtol=1e-13, atol=1e-16)  # same pytree, same values
        stacked = jax.tree.map(lambda a: jnp.stack([a, a]), batch)
        per_batch = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, stacked)
        chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], per_batch), want, rtol=1e-12, atol=1e-16)
        # scaled cotangents: grad of 3·L is 3·∇L
        triple = jax.grad(lambda p: 3.0 * loss(p, batch))(params)
        np.testing.assert_allclose(jax.tree.leaves(triple)[0], 3.0 * jax.tree.leaves(want)[0], rtol=1e-13)


@pytest.mark.slow
def test_custom_vjp_really_uses_the_manual_backward(monkeypatch):
    """A wrong manual backward shows through jax.grad of the custom-VJP loss."""
    from mp_jax.checks import bugzoo
    spec = registry.get("ae")
    with jax.enable_x64(True):
        params, x = spec.instance()
        with bugzoo.applied(bugzoo.get("ae-kl-sign")):
            wrong = jax.grad(spec.manual_loss())(params, x)
        right = jax.grad(spec.loss)(params, x)
    assert not np.allclose(wrong.b_hid, right.b_hid)
