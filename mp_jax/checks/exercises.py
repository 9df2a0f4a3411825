"""A learner's backward piece, loaded from an exercise file and swapped into its model.

An exercise file (``exercises/*.py``) defines one function with the signature of a piece of a
manual backward and two names: ``TARGET = "module:function"``, the piece it replaces, and
``MODEL``, the registry model it is checked on by default. ``python -m mp_jax.gradcheck
--backward exercises/lstm_step.py`` loads it (:func:`load`), swaps it in
(:func:`mp_jax.checks.bugzoo.swapped`) and runs the three-oracle check, tensor by tensor.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import traceback
from pathlib import Path
from typing import Callable


class ExerciseError(Exception):
    """A problem with the exercise file itself; the message is one line for the learner."""


@dataclasses.dataclass
class Exercise:
    path: Path
    module: object  # the package module that holds the piece
    attribute: str  # the piece's name there
    function: Callable  # the learner's function
    model: str  # the registry model it is checked on by default
    calls: int = 0  # how many times the model called it while the check was traced

    def replacement(self) -> Callable:
        """The learner's function, counting its calls (a model that never calls it checks nothing)."""
        def counted(*args, **kwargs):
            self.calls += 1
            return self.function(*args, **kwargs)
        return counted


def load(path: str) -> Exercise:
    """Import the exercise file at ``path``; ExerciseError (one line) if it cannot serve."""
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        raise ExerciseError(f"--backward: expected a Python file (an exercise such as exercises/lstm_step.py), "
                            f"found {path!r}")
    spec = importlib.util.spec_from_file_location(f"mp_jax_exercise_{file.stem}", file)
    learner = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(learner)
    except Exception as e:  # the learner's file: report where, in one line
        raise ExerciseError(f"{path}: importing it raised {type(e).__name__}: {e}{_where(e, file)}") from None
    target, model = getattr(learner, "TARGET", None), getattr(learner, "MODEL", None)
    if not isinstance(target, str) or ":" not in target or not isinstance(model, str):
        raise ExerciseError(f"{path}: expected TARGET = \"module:function\" and MODEL = \"<registry model>\" "
                            "at the top of the file, as in the exercises/ starters")
    module_name, attribute = target.split(":", 1)
    module = importlib.import_module(module_name)
    if not callable(getattr(module, attribute, None)):
        raise ExerciseError(f"{path}: TARGET names {target}, which is not a function of the package")
    function = getattr(learner, attribute, None)
    if not callable(function):
        raise ExerciseError(f"{path}: expected a function named {attribute} (the piece TARGET replaces), found none")
    return Exercise(file, module, attribute, function, model)


def _where(error: BaseException, file: Path) -> str:
    """' (line N of the file)' for the innermost frame of ``error`` in ``file``, else ''."""
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == file.resolve()
             or Path(f.filename) == file]
    return f" (line {lines[-1]} of {file})" if lines else ""


def explain_failure(exercise: Exercise, error: BaseException) -> str:
    """One line for an exception raised while the learner's function ran."""
    name = exercise.attribute
    if isinstance(error, NotImplementedError):
        return (f"{exercise.path}: {name} is not written yet (it raises NotImplementedError); "
                "fill in its body, then run this command again")
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{exercise.path}: {name} raised {type(error).__name__}: {message}{_where(error, exercise.path)}"
