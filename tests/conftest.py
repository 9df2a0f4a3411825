"""Shared fixtures. Tests that need ``../shared`` skip with a reason where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from experiments.common import set_matmul_precision
from mp_jax.engine.parallel import usable_cores

# The suite checks the package as the experiments run it: float32 matmuls at full precision
# (experiments/common.py --matmul-precision; JAX's default is TensorFloat-32 on recent NVIDIA
# GPUs, under which manual and jax.grad gradients differ by ~1e-3). No effect on a CPU.
set_matmul_precision("highest")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MP_JAX_SHARED", REPO.parent / "shared"))
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int | None:
    """Workers for ``-n auto`` (pyproject.toml): one per usable core, at most
    :data:`MAX_WORKERS` (each is a JAX process of its own, and the longest modules bound
    the wall time anyway). With
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` set, None: xdist's own hook reads it."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return min(MAX_WORKERS, usable_cores())


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a fresh clone has no ../shared); set MP_JAX_SHARED to run this test")
    return SHARED


@pytest.fixture
def raw_sentences(shared_dir) -> Path:
    p = shared_dir / "data" / "ivanbgd__raw_sentences.txt"
    if not p.is_file():
        pytest.skip(f"{p} is absent: Hinton's raw_sentences.txt is needed for this test")
    return p


def _without_xla_optimizations():
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def fast_compile():
    """For tests that run tiny programs once: XLA's optimization passes cost more than they
    save, so they are switched off for the test (numerics are unchanged) and restored."""
    yield from _without_xla_optimizations()


@pytest.fixture(scope="module", autouse=True)
def _fast_compile_module(request):
    """The same for a whole module that sets ``FAST_COMPILE = True`` (the quick end-to-end
    runs of the experiments: tiny programs, each compiled once, dominated by compile time)."""
    if getattr(request.module, "FAST_COMPILE", False):
        yield from _without_xla_optimizations()
    else:
        yield
