"""Gradient check from the command line: every manual backward against three oracles.

    python -m mp_jax.gradcheck MODEL [--impl reference|fast|all] [--dtype float64|float32]
        [--T N] [--hidden H] [--batch N] [--case plain|square|saturated|saturated-low|saturated-high|repeat] [--seed S]
        [--fd] [--intermediates] [--bug NAME | --bug list] [--backward FILE [--hint [K]]]

MODEL is a name of the registry (:mod:`mp_jax.checks.registry`): ``ae`` (sparse autoencoder, tied
weights), ``ae-untied``, ``lm`` (the 4-gram language model), ``lm-dropout`` (the same trained
with dropout on its hidden layer), ``rnn``, ``lstm``, ``gru`` (the
sequence classifier with its ReLU head), ``mlp`` (the engine's smoke model) or ``logistic``
(Q3's baseline). ``--impl`` picks the manual implementation (``reference``, ``fast`` where
there is one; ``all``, the default, checks each). A small random instance is built by the
registry; the check (:func:`mp_jax.checks.gradtable.check_gradients`) runs in the chosen dtype at
full matmul precision.

How to read the output. The oracles:

1. ``jax.grad`` of the model's reference loss, for every parameter leaf;
2. central finite differences in float64 on a seeded sample of each leaf's coordinates
   (``--fd``): an oracle that shares nothing with autodiff;
3. ``jax.grad`` of the loss with respect to a zero offset added to every named intermediate
   of the backward (``--intermediates`` prints them all): δ_o, s, δ_h for the autoencoder;
   dz, δ_h, de and each used row of dR for the language model; dz, da and per step dh_t,
   dc_t and the gate deltas for the recurrences. Names are the symbols of ``docs/``.

Each row gives the largest absolute difference and the relative error (that difference over
the largest magnitude of the oracle's tensor); it passes at the stated tolerance. The rows
are in the order the backward computes them, so the first FAIL is where a wrong backward
first goes wrong: the output names it. For rnn, lstm and gru the table ‖∂L/∂h_t‖ per step
shows the gradient shrinking (vanishing) or growing (exploding) as it travels back in time;
try ``--T 50`` with ``rnn`` and with ``lstm``.

``--bug NAME`` swaps one wrong piece from the bug zoo (:mod:`mp_jax.checks.bugzoo`) into the
backward, to show what a failing check looks like; ``--bug list`` names them.

``--backward FILE`` checks a learner's own piece: an exercise of ``exercises/`` (see
``docs/exercises.md``). First the piece alone, on random arguments and random upstream gradients
at sizes where no two of N, D, H, C, T coincide (:mod:`mp_jax.checks.piececheck`); then swapped
into the model the file names (MODEL may then be left out), with every intermediate printed, so
that the first wrong tensor is named. A failure ends with the likely mistake
(:mod:`mp_jax.checks.diagnosis`); ``--hint [K]`` adds rung K (1: where the tensor is derived, 2:
its equation quoted from docs/, 3: what it is computed from; :mod:`mp_jax.checks.hints`); a pass
names the package's own function and lines to compare with. A piece not written yet, a file
that cannot serve, an exception in the learner's code or a returned value of the wrong type,
structure, shape or dtype gives one line, never a traceback.

The exit status is 0 when every row passes, 1 otherwise, 2 for bad arguments. Examples::

    python -m mp_jax.gradcheck lstm --impl fast --fd
    python -m mp_jax.gradcheck ae --intermediates --case saturated
    python -m mp_jax.gradcheck lstm --bug lstm-no-forget-carry --intermediates
    python -m mp_jax.gradcheck --backward exercises/lstm_step.py --hint 2
"""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from mp_jax.runtime import cli
from mp_jax.checks import bugzoo, exercises, gradtable, hints, piececheck, pieces, registry
from mp_jax.checks.registry import Size

#: The model instance's default batch: N = 7 is none of the registry's other sizes (D, H, M, C, V,
#: T), so a gradient divided by a count where another belongs cannot pass by coincidence.
DEFAULT_BATCH = 7

CASES = {"plain": "", "square": "square", "saturated": "saturated", "saturated-low": "saturated-low",
         "saturated-high": "saturated-high", "repeat": "repeat"}
_CASE_MODELS = {"saturated": ("ae", "ae-untied"), "saturated-low": ("ae", "ae-untied"),
                "saturated-high": ("ae", "ae-untied"), "repeat": ("lm", "lm-dropout")}


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def report(check: gradtable.GradCheck, *, intermediates: bool = False) -> str:
    """The printed tables of one check."""
    size = check.size
    seq = check.model in ("rnn", "lstm", "gru")
    what = f"N = {size.batch}, H = {size.hidden}" + (f", T = {size.T}" if seq else "")
    what += f", case {size.special}" if size.special else ""
    lines = [f"gradient check: {check.model}, implementation {check.impl}, {check.dtype}, {what}",
             gradtable.explain(check.dtype, size if seq else None), ""]
    loss = check.rows[0]
    lines.append(f"loss: manual beside reference, rel. diff {loss.rel_err:.2e}  {_verdict(loss.passed)}")
    params = [r for r in check.rows if r.kind == "parameter"]
    fd = any(r.fd_err is not None for r in params)
    lines += ["", f"{'parameter':<12} {'shape':<10} {'max abs err':>12} {'vs jax.grad':>11}"
              + (f" {'vs fin. diff.':>13}" if fd else "")]
    for r in params:
        fd_text = f" {r.fd_err:>13.2e}" if r.fd_err is not None else (" " * 14 if fd else "")
        lines.append(f"{r.name:<12} {_shape(r.shape):<10} {r.abs_err:>12.3e} {r.rel_err:>11.2e}{fd_text}"
                     f"  {_verdict(r.passed)}" + (f"  ({r.note})" if r.note else ""))
    inter = [r for r in check.rows if r.kind == "intermediate"]
    if intermediates:
        lines += ["", "intermediate gradients: manual beside jax.grad in a zero offset (t = T first)",
                  f"{'tensor':<8} {'t':>4} {'shape':<10} {'max abs err':>12} {'rel. err':>10}"]
        for r in inter:
            t = "" if r.step is None else str(r.step)
            lines.append(f"{r.name:<8} {t:>4} {_shape(r.shape):<10} {r.abs_err:>12.3e} {r.rel_err:>10.2e}"
                         f"  {_verdict(r.passed)}" + (f"  ({r.note})" if r.note else ""))
    if seq:
        lines += ["", "‖∂L/∂h_t‖ over [N, H] by jax.grad in a zero offset, and the manual BPTT's error "
                      "(t = T is the last step)"]
        lines += _norms(check)
    wrong = check.first_wrong()
    lines.append("")
    if wrong is None and loss.passed:
        lines.append("all rows PASS")
    else:
        lines.append("some rows FAIL" + (f"; the first wrong tensor is {wrong.label} (rel. err "
                                          f"{wrong.rel_err:.2e})" if wrong else ""))
        if wrong is not None and not intermediates:
            lines.append("(--intermediates shows every tensor of the backward)")
    return "\n".join(lines)


def _norms(check: gradtable.GradCheck) -> list[str]:
    return [f"{'t':>4} {'‖∂L/∂h_t‖':>12} {'rel. err':>10}"] + [
        f"{r.step:>4} {r.ref_norm:>12.4e} {r.rel_err:>10.2e}  {_verdict(r.passed)}"
        for r in check.rows if r.kind == "intermediate" and r.name == "dh_t"]


def _print_bugs() -> None:
    print(f"{'bug':<32} {'model':<9} {'impl':<10} what is wrong")
    for bug in bugzoo.BUGS.values():
        print(f"{bug.name:<32} {bug.model:<9} {bug.impl:<10} {bug.summary}")
    print("\npython -m mp_jax.gradcheck MODEL --bug NAME --intermediates shows one failing")


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m mp_jax.gradcheck",
                   description="Check a model's manual gradients against jax.grad, finite differences "
                               "and the gradients of its intermediates, on a small random instance.")
    p.add_argument("model", metavar="MODEL", nargs="?", choices=tuple(registry.MODELS),
                   help=f"one of {', '.join(registry.MODELS)}")
    p.add_argument("--impl", choices=("reference", "fast", "all"), default="all",
                   help="which manual implementation (default all: each the model has)")
    p.add_argument("--dtype", choices=tuple(gradtable.DTYPES), default="float64", help="default float64")
    p.add_argument("--T", type=cli.positive_int, default=5, help="sequence length of rnn/lstm/gru (default 5)")
    p.add_argument("--hidden", type=cli.positive_int, default=8, help="hidden units H (default 8)")
    p.add_argument("--batch", type=cli.positive_int, default=DEFAULT_BATCH,
                   help=f"examples N (default {DEFAULT_BATCH})")
    p.add_argument("--case", choices=tuple(CASES), default="plain",
                   help="square: square weights; saturated (ae): hidden units near 1; saturated-low, "
                        "saturated-high (ae): mean activations about 1e-8 and 1 - 1e-8; "
                        "repeat (lm): a word repeated inside one context")
    p.add_argument("--seed", type=cli.seed, default=0, help="PRNG seed (default 0)")
    p.add_argument("--fd", action="store_true", help="also central finite differences (float64, sampled coordinates)")
    p.add_argument("--intermediates", action="store_true", help="print every named intermediate gradient")
    p.add_argument("--bug", metavar="NAME", help="swap in a wrong backward piece from the bug zoo; 'list' names them")
    p.add_argument("--backward", metavar="FILE", help="swap in your own backward piece: an exercise file (exercises/*.py)")
    p.add_argument("--hint", metavar="K", nargs="?", const=1, type=cli.positive_int,
                   help=f"with --backward or --bug: hint K (default 1; {hints.RUNGS} rungs) for the first wrong "
                        "tensor: 1 where it is derived, 2 its equation, 3 what it is computed from")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.again = "python -m mp_jax.gradcheck " + " ".join(shlex.quote(a) for a in argv)  # this command
    if args.bug == "list":
        _print_bugs()
        return 0
    exercise = None
    if args.backward is not None:
        if args.bug is not None:
            parser.error("argument --backward: not with --bug (one swapped piece at a time)")
        try:
            exercise = exercises.load(args.backward)
        except exercises.ExerciseError as e:
            parser.error(f"argument {e}" if str(e).startswith("--backward") else f"argument --backward: {e}")
        if args.model is None:
            args.model = exercise.model
        if args.model not in registry.MODELS:
            parser.error(f"argument --backward: {args.backward} names MODEL = {args.model!r}, not a registry model")
    if args.hint is not None and args.backward is None and args.bug is None:
        parser.error("argument --hint: goes with --backward FILE (or --bug NAME): it explains the first wrong tensor")
    if args.model is None:
        parser.error("the argument MODEL is required: one of " + ", ".join(registry.MODELS))
    spec = registry.get(args.model)
    if args.case in _CASE_MODELS and args.model not in _CASE_MODELS[args.case]:
        parser.error(f"argument --case: {args.case!r} applies to {', '.join(_CASE_MODELS[args.case])}, "
                     f"not {args.model}")
    bug = None
    if args.bug is not None:
        if args.bug not in bugzoo.BUGS:
            parser.error(f"argument --bug: unknown bug {args.bug!r}; --bug list names them")
        bug = bugzoo.BUGS[args.bug]
        if bug.model != args.model:
            parser.error(f"argument --bug: {bug.name} is shown on {bug.model}: "
                         f"python -m mp_jax.gradcheck {bug.model} --bug {bug.name}")
    if args.impl == "all":
        impls = [bug.impl] if bug else (["reference"] if exercise else list(spec.impls))
    elif args.impl not in spec.impls:
        parser.error(f"argument --impl: {args.model} has {', '.join(spec.impls)}, not {args.impl!r}")
    else:
        impls = [args.impl]
    special = CASES[args.case] or (bug.size.special if bug else "")
    size = Size(batch=args.batch, hidden=args.hidden, T=args.T, special=special)
    if exercise is not None:
        return _check_exercise(exercise, spec, impls, size, args)
    ok = True
    alone = piececheck.bug_alone(bug, args.model, dtype=args.dtype, case=special, seed=args.seed) if bug else None
    with bugzoo.applied(bug) if bug else contextlib.nullcontext():
        if bug:
            print(f"bug zoo: {bug.name} replaces {bug.piece}: {bug.summary}\n({bug.why})\n")
        if alone is not None:
            print(_alone_report(alone) + "\n")
        checks = []
        for k, impl in enumerate(impls):
            check = gradtable.check_gradients(spec, impl, args.dtype, size, seed=args.seed, fd=args.fd)
            print(("\n" if k else "") + report(check, intermediates=args.intermediates))
            ok &= check.ok
            checks.append(check)
        if bug:
            wrong, diag, where = piececheck.diagnose_bug(bug, spec, checks[-1], alone, seed=args.seed)
            if diag is not None:
                print("\n" + "\n".join(diag.lines(wrong.label)))
            if args.hint is not None and wrong is not None:
                piece = pieces.get(f"{bug.module.__name__}:{bug.attribute}")
                print("\n".join(hints.hint(piece, wrong.name, args.hint, step=wrong.step, check=where)))
    return 0 if ok else 1


def _alone_report(check: piececheck.PieceCheck) -> str:
    """The table of a piece-alone check."""
    lines = [f"the piece alone: {check.alone.description}; {check.dtype}",
             f"{'output':<10} {'t':>4} {'shape':<10} {'max abs err':>12} {'rel. err':>10}"]
    for r in check.rows:
        t = "" if r.step is None else str(r.step)
        lines.append(f"{r.name:<10} {t:>4} {_shape(r.shape):<10} {r.abs_err:>12.3e} {r.rel_err:>10.2e}  "
                     f"{_verdict(r.passed)}" + (f"  ({r.note})" if r.note else ""))
    wrong = check.first_wrong()
    lines.append("alone: every output matches its oracle" if wrong is None else
                 f"alone: the first wrong output is {wrong.label} (rel. err {wrong.rel_err:.2e})")
    bad = check.first_nonfinite()
    if bad is not None:
        lines.append(f"alone: {bad.note} first appears in {bad.label}")
    return "\n".join(lines)


def _check_exercise(exercise: exercises.Exercise, spec: registry.ModelSpec, impls, size: Size, args) -> int:
    """The learner's piece alone, then swapped into the model: every tensor printed, the first
    wrong named and diagnosed; one line for anything that stops the check."""
    name, piece = exercise.attribute, exercise.piece
    tables = [f"your {name} from {exercise.path} replaces {exercise.module.__name__}.{name}\n"]
    alone = None
    try:  # the tables are printed once both checks ran: a check that stops prints its one line only
        if piece is not None and piece.checks_on(spec.name):
            alone = piececheck.check_piece(piece, exercise.function, exercise.original, model=spec.name,
                                           dtype=args.dtype, case=size.special, seed=args.seed)
            tables.append(_alone_report(alone) + "\n")
        checks = []
        with bugzoo.swapped(exercise.module, exercise.attribute, exercise.replacement()):
            for k, impl in enumerate(impls):
                check = gradtable.check_gradients(spec, impl, args.dtype, size, seed=args.seed, fd=args.fd)
                tables.append(("\n" if k else "") + report(check, intermediates=True))
                checks.append(check)
    except (Exception, SystemExit) as e:  # the learner's code failed, or returned what does not fit: one line
        print(f"error: {exercises.explain_failure(exercise, e)}", file=sys.stderr)
        if isinstance(e, NotImplementedError) and args.hint is not None and piece is not None:
            print("\n".join(hints.first_hint(piece, args.hint)))
        return 1
    if exercise.calls == 0:
        print(f"error: {args.model} does not call {name}: nothing of yours was checked; "
              f"run it on {exercise.model} (python -m mp_jax.gradcheck {exercise.model} --backward {args.backward})",
              file=sys.stderr)
        return 1
    print("\n".join(tables))
    model_check = checks[-1]
    ok = all(c.ok for c in checks) and (alone is None or alone.ok)
    print()
    if ok:
        print(f"your {name} is right: every tensor matches the oracles"
              + (", alone and inside the model" if alone is not None else ""))
        print(hints.pointer(exercise.original))
        if args.hint is not None:
            print("nothing to hint: every tensor matches")
        return 0
    in_model = next((c.first_wrong() for c in checks if c.first_wrong() is not None), None)
    wrong_alone = alone.first_wrong() if alone is not None else None
    if in_model is not None:
        print(f"your {name} is wrong: the first wrong tensor is {in_model.label} inside the model"
              + (f"; alone, {wrong_alone.label}" if wrong_alone is not None else ""))
    else:
        print(f"your {name} is wrong: the first wrong tensor is {wrong_alone.label}, in the piece alone "
              "(inside the model every tensor matched)")
    for check, where in ((alone, "alone"), (model_check, "inside the model")):
        bad = check.first_nonfinite() if check is not None else None
        if bad is not None:
            print(f"{bad.note} first appears in {bad.label} ({where}): the first non-finite tensor of the backward")
    if wrong_alone is not None:
        diag, wrong, where = piececheck.diagnose_piece(alone, exercise.original), wrong_alone, alone
    else:
        diag, wrong, where = piececheck.diagnose_model(model_check, spec), in_model, model_check
    if diag is not None:
        print("\n".join(diag.lines(wrong.label)))
    if args.hint is not None:
        print("\n".join(hints.hint(piece, wrong.name, args.hint, step=wrong.step, check=where)))
    elif piece is not None:
        print(f"--hint shows where {wrong.label} is derived (then --hint 2, --hint 3): {args.again} --hint")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
