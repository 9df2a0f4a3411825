"""Registry of stand-in builders, one module per question.

Each builder module defines ``build(out_dir, *, force=False, seed=0, **options) -> Path``
that writes the question's file (``data1.h5`` …) in the course schema, atomically, and
refuses to overwrite an existing file unless ``force``.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from mp_jax.data.course import COURSE_FILES

BUILDER_MODULES = {
    "q1": "mp_jax.data.build_q1",
    "q2": "mp_jax.data.build_q2",
    "q3": "mp_jax.data.build_q3",
}


class BuilderMissing(NotImplementedError):
    pass


def get_builder(question: str):
    """The ``build`` function of a question, or :class:`BuilderMissing`."""
    try:
        module = importlib.import_module(BUILDER_MODULES[question])
    except ModuleNotFoundError as e:
        if e.name == BUILDER_MODULES[question]:
            raise BuilderMissing(f"{question}: the stand-in builder is not there yet") from None
        raise
    return module.build


def build(question: str, out_dir: os.PathLike, *, force: bool = False, seed: int = 0, **options) -> Path:
    return get_builder(question)(Path(out_dir), force=force, seed=seed, **options)


def standin_path(out_dir: os.PathLike, question: str) -> Path:
    return Path(out_dir) / COURSE_FILES[question][0]
