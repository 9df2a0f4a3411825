"""Shared fixtures. Tests that need ``../shared`` skip with a reason where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MP_JAX_SHARED", REPO.parent / "shared"))


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
