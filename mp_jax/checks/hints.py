"""Hints for a wrong backward piece, one rung at a time, and where to compare a right one.

``gradcheck --backward FILE --hint [K]`` prints rung K (default 1) for the first wrong tensor:

1. **where**: the label of the equation that defines the tensor and the section of ``docs/`` that
   derives it (read the derivation, then try again);
2. **the equation**: its display line, quoted from ``docs/`` byte for byte
   (:mod:`mp_jax.checks.equations`);
3. **what it reads**: each tensor the equation is computed from, and whether it is given (an
   argument, the forward's cache) or computed by the learner, with that tensor's own verdict:
   when every one of them matches its oracle, the mistake is in this equation itself.

After a pass, :func:`pointer` names the package's own function and its line range, the solution
to compare with.
"""
from __future__ import annotations

import inspect
from pathlib import Path

from mp_jax.checks import equations
from mp_jax.checks.pieces import Piece

RUNGS = 3
ROOT = Path(__file__).resolve().parents[2]


def _status(check, name: str, step) -> str:
    """' (yours: matches its oracle)' / ' (yours: wrong)' from a check's rows, '' if not there."""
    if check is None:
        return ""
    for row in check.rows:
        if row.name == name and (step is None or row.step in (None, step)):
            return "matches its oracle" if row.passed else "WRONG: fix it first"
    return ""


def hint(piece: Piece | None, tensor: str, level: int, *, step: int | None = None, check=None) -> list[str]:
    """Rung ``level`` (1 … :data:`RUNGS`) of the hint for ``tensor`` (a row's name, "dc_t",
    "cell.w_h", "dR[3]", "dh_prev") of ``piece``; ``check``: the check whose rows tell which
    tensors the equation reads are right."""
    level = max(1, level)
    at = f" at t = {step}" if step is not None else ""
    if piece is None:
        return [f"no hints for this piece: the exercises of exercises/ have them (docs/exercises.md)"]
    found = piece.rung_of(tensor)
    if found is None:
        first = next(iter(piece.rungs))
        return [f"{tensor}{at} is not one of the tensors your {piece.attribute} computes: it is wrong because a "
                f"tensor of yours feeds it. Start from your first tensor, {first}: --hint on a check that names it"]
    name, rung = found
    try:
        eq = equations.equation(rung.label)
    except equations.EquationNotFound as e:
        return [f"hint {level} of {RUNGS}: {name} is ({rung.label}); {e}"]
    if level > RUNGS:
        head = [f"(there are {RUNGS} rungs; this is the last)"]
        level = RUNGS
    else:
        head = []
    title = f"hint {level} of {RUNGS} for {tensor}{at}"
    if level == 1:
        return head + [f"{title}: it is defined by ({rung.label}) in {eq.where} ({eq.link}). Read the derivation "
                       f"there and write it again; --hint 2 quotes the equation"]
    if level == 2:
        return head + [f"{title}: ({rung.label}) as docs/{eq.path.name} (line {eq.line}) states it:", f"    {eq.text}",
                       "--hint 3 lists what it is computed from"]
    lines = [f"{title}: ({rung.label}) reads"]
    wrong_inputs = []
    for need in rung.needs:
        if need in piece.rungs:
            status = _status(check, need, step)
            if "WRONG" in status:
                wrong_inputs.append(need)
            lines.append(f"    {need}: yours, by ({piece.rungs[need].label})"
                         + (f": {status}" if status else " (inside your function: not returned, not checked)"))
        else:
            lines.append(f"    {need}: given, {piece.given.get(need, 'from the arguments or the cache')}")
    if wrong_inputs:
        lines.append(f"{', '.join(wrong_inputs)} {'is' if len(wrong_inputs) == 1 else 'are'} wrong too: fix "
                     f"{'it' if len(wrong_inputs) == 1 else 'them'} first")
    else:
        lines.append(f"every tensor of yours that ({rung.label}) reads matches its oracle: the mistake is in how "
                     f"({rung.label}) combines them")
    return head + lines


def first_hint(piece: Piece, level: int) -> list[str]:
    """Rung ``level`` for the first tensor the piece computes (a piece not written yet)."""
    return hint(piece, next(iter(piece.rungs)), level)


def pointer(function) -> str:
    """'compare it with the package's own: mp_jax/models/recurrent.py, lines 165-186
    (mp_jax.models.recurrent.lstm_step_backward)'."""
    try:
        lines, start = inspect.getsourcelines(function)
        path = Path(inspect.getsourcefile(function)).resolve()
    except (OSError, TypeError):
        return f"compare it with the package's own {function.__module__}.{function.__name__}"
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return (f"compare it with the package's own: {shown}, lines {start}-{start + len(lines) - 1} "
            f"({function.__module__}.{function.__name__})")
