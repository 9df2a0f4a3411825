"""A learner's backward piece, loaded from an exercise file and swapped into its model.

An exercise file (``exercises/*.py``) defines one function with the signature of a piece of a
manual backward and two names: ``TARGET = "module:function"``, the piece it replaces, and
``MODEL``, the registry model it is checked on by default (the piece's own model when absent).
``python -m mp_jax.gradcheck --backward exercises/lstm_step.py`` loads it (:func:`load`), checks it
alone (:mod:`mp_jax.checks.piececheck`), swaps it in (:mod:`mp_jax.checks.bugzoo.swapped`) and
runs the three-oracle check inside the model, tensor by tensor.

Whatever the file holds and whatever its function returns, the learner gets one line, never a
traceback: :class:`ExerciseError` for the file itself, :func:`explain_failure` for an exception
raised while the function ran, and the contract (:mod:`mp_jax.checks.contract`) for a returned
value that does not fit, checked inside the model too (:meth:`Exercise.replacement`).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Callable

import jax

from mp_jax.checks import contract, pieces


class ExerciseError(Exception):
    """A problem with the exercise file itself; the message is one line for the learner."""


@dataclasses.dataclass
class Exercise:
    path: Path
    module: object  # the package module that holds the piece
    attribute: str  # the piece's name there
    function: Callable  # the learner's function
    model: str  # the registry model it is checked on by default
    original: Callable  # the package's own piece: the contract, and the solution to compare with
    piece: pieces.Piece | None  # what the checker knows of the piece (None: checked in its model only)
    calls: int = 0  # how many times the model called it while the check was traced

    def replacement(self) -> Callable:
        """The learner's function, counting its calls (a model that never calls it checks nothing)
        and holding what it returns to the contract of the package's piece, at trace time: a wrong
        structure is named in one line instead of a JAX error about a scan carry."""
        original = self.original
        template = self.piece.returns if self.piece is not None else self.attribute

        def counted(*args, **kwargs):
            self.calls += 1
            got = self.function(*args, **kwargs)
            want = jax.eval_shape(lambda: original(*args, **kwargs))
            contract.check(got, want, template)
            return got
        return counted


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load(path: str) -> Exercise:
    """Import the exercise file at ``path``; ExerciseError (one line) if it cannot serve."""
    file = Path(path)
    if not file.is_file() or file.suffix != ".py":
        what = "a folder" if file.is_dir() else "no such file" if not file.exists() else "not a .py file"
        raise ExerciseError(f"--backward: expected a Python file (an exercise such as exercises/lstm_step.py), "
                            f"found {path!r} ({what})")
    spec = importlib.util.spec_from_file_location(f"mp_jax_exercise_{file.stem}", file)
    learner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = learner  # as an import does (dataclasses defined in the file look it up)
    try:
        spec.loader.exec_module(learner)
    except SyntaxError as e:
        raise ExerciseError(f"{path}: it is not valid Python: {e.msg} (line {e.lineno} of {file})") from None
    except (Exception, SystemExit) as e:  # the learner's file: report where, in one line
        raise ExerciseError(_one_line(f"{path}: importing it raised {type(e).__name__}: {e}{_where(e, file)}")) from None
    target, model = getattr(learner, "TARGET", None), getattr(learner, "MODEL", None)
    if not isinstance(target, str) or target.count(":") != 1:
        raise ExerciseError(f"{path}: expected TARGET = \"module:function\" at the top of the file, as in the "
                            f"exercises/ starters, found {_one_line(repr(target), 60)}")
    piece = pieces.get(target)
    if model is None and piece is not None:
        model = piece.model
    if not isinstance(model, str):
        raise ExerciseError(f"{path}: expected MODEL = \"<registry model>\" at the top of the file, as in the "
                            f"exercises/ starters, found {_one_line(repr(model), 60)}")
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name) if module_name.startswith("mp_jax.") else None
    except Exception:  # an unknown module of the package
        module = None
    if module is None or not callable(getattr(module, attribute, None)):
        known = ", ".join(p.target for p in pieces.all_pieces())
        raise ExerciseError(f"{path}: TARGET = {target!r} names no function of the package; the exercises' "
                            f"targets are {known}")
    function = getattr(learner, attribute, None)
    if not callable(function):
        raise ExerciseError(f"{path}: expected a function named {attribute} (the piece TARGET replaces), found "
                            + ("none" if function is None else _one_line(contract.describe(function), 60)))
    return Exercise(file, module, attribute, function, model, getattr(module, attribute), piece)


def _where(error: BaseException, file: Path) -> str:
    """' (line N of the file)' for the innermost frame of ``error`` in ``file``, else ''."""
    try:
        resolved = file.resolve()
        lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
                 if Path(f.filename) == file or Path(f.filename).resolve() == resolved]
    except Exception:  # an odd traceback: no line to point to
        return ""
    return f" (line {lines[-1]} of {file})" if lines else ""


def explain_failure(exercise: Exercise, error: BaseException) -> str:
    """One line for an exception raised while the learner's function ran (or for the value it
    returned, a :class:`~mp_jax.checks.contract.ContractError`)."""
    name = exercise.attribute
    if isinstance(error, NotImplementedError):
        return (f"{exercise.path}: {name} is not written yet (it raises NotImplementedError); "
                "fill in its body, then run this command again")
    if isinstance(error, contract.ContractError):
        return _one_line(f"{exercise.path}: {name} returned {error}", 400)
    message = str(error).strip()  # the whole message, on one line: JAX's run over several
    return _one_line(f"{exercise.path}: {name} raised {type(error).__name__}: {message}{_where(error, exercise.path)}",
                     400)

