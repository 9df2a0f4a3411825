"""``python -m experiments`` — the whole report, end to end.

Runs Q1 (sparse autoencoder), Q2 (language model) and Q3 (activity recognition) on the
data it finds in ``--data-dir`` (the course files when present, else stand-ins built on
the fly from public data), then writes ``<results-dir>/REPORT.md``.

Each question's results go to the folder its configuration names (``q3/`` for the defaults,
``q3_quick/`` for ``--quick``, ``q3_seed-1/`` ...: :meth:`experiments.config.RunOptions.results_name`),
so that no run overwrites the results of other settings, and the report to ``REPORT.md``
(``REPORT_quick.md`` ...: :func:`experiments.layout.report_plan`). At the start it says how long
the training is expected to take on this machine (:mod:`experiments.estimate`); the summary
compares. Every training run checkpoints after each epoch: running the command again loads the
finished runs (keeping the training time each recorded) and resumes an interrupted one
where it stopped. ``--fresh`` starts the configuration over (its earlier folder is moved aside,
never deleted); ``--quick`` does every step with tiny settings in a few minutes. The studies of
many members (Q1's (β, ρ) and L_hid × λ, Q3's ``--seeds``) train one after another on a
CPU and as vmapped programs on an accelerator; ``--vmap`` / ``--no-vmap`` override.

A bad flag stops before anything runs (exit status 2); an error met while running (a bad
data file, no space left, a diverged run, a results folder another run is using) is one
line ``error: ...`` (exit status 1; ``--debug`` shows the traceback). The folders of the
questions asked for are locked for the whole call (``<results-dir>/.q1.lock`` ...).

``--recipe handout`` trains every question with the course handout's settings instead of
the defaults (docs/recipes.md): its results go to ``<results-dir>/q1_handout/`` ... beside the default recipe's (own
checkpoints and locks), and REPORT.md sets the two recipes side by side.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import time

from experiments import common, estimate, layout, report
from mp_jax.runtime import cli
from mp_jax.engine import distributed
from mp_jax.data.course import parse_questions

QUESTIONS = {
    "q1": ("experiments.q1_autoencoder", "Q1 sparse autoencoder"),
    "q2": ("experiments.q2_language_model", "Q2 neural language model"),
    "q3": ("experiments.q3_activity", "Q3 RNN / LSTM / GRU activity recognition"),
}
log = logging.getLogger("experiments")


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments", __doc__)
    p.add_argument("--only", help="comma-separated questions to run (q1,q2,q3); default all")
    args = p.parse_args(argv)
    try:
        questions = parse_questions(args.only)
    except ValueError as e:
        p.error(str(e))
    if args.only is not None and not args.only.replace(",", "").strip():
        p.error(f"argument --only: expected at least one of q1,q2,q3 (comma-separated), found {args.only!r}; "
                f"leave --only out to run all three")
    questions = list(dict.fromkeys(questions))  # each once
    configs = {q: importlib.import_module(QUESTIONS[q][0]).Config.from_args(args) for q in questions}
    common.check_config(p, args, list(configs.values()))  # every question's, before any of them runs
    common.start_devices(args, p, list(configs.values()))
    common.setup_logging()
    with contextlib.ExitStack() as locks:
        for q in questions:  # every folder this call writes, before any training
            locks.enter_context(common.question_lock(args.results_dir, configs[q].results_name(q)))
        return _run(args, configs)


def _run(args, configs: dict) -> int:
    questions = list(configs)
    recipe = getattr(args, "recipe", "default")
    names = {q: c.results_name(q) for q, c in configs.items()}
    print("mp_jax: reproducing " + ", ".join(questions) + (" (--quick)" if args.quick else "")
          + ("" if recipe == "default" else f" with the course {recipe}'s recipe")
          + "; results in " + ", ".join(f"{args.results_dir}/{n}/" for n in names.values()))

    t_all = time.perf_counter()
    expected = None  # several processes would each have to join the timing's programs: not estimated there
    if distributed.num_processes() == 1:
        expected = estimate.expected(configs, getattr(args, "devices", None), fresh=getattr(args, "fresh", False))
        print(expected.text(), flush=True)
    summary = []
    for q, config in configs.items():
        module = importlib.import_module(QUESTIONS[q][0])
        t = time.perf_counter()
        print(f"== {QUESTIONS[q][1]}")
        with common.session(args, names[q], lock=False, progress=config.progress) as (_, ctx):
            module.run(config, ctx)
        seconds, counts = time.perf_counter() - t, ctx.summary()
        counts["seconds_now"] = sum(e[2] for e in (ctx.store.events if ctx.store else ()))  # this call's training
        summary.append((q, seconds, counts))
        print(f"== {q} done in {seconds:.1f}s ({_runs(counts)})")

    plan = layout.report_plan(args)
    path = report.write_report(args.results_dir, folders=plan.folders, handout=plan.handout, name=plan.name)
    print(f"\nsummary ({time.perf_counter() - t_all:.1f}s in all):")
    for q, seconds, counts in summary:
        print(f"  {q}: {seconds:7.1f}s  runs: {_runs(counts)}")
    if expected is not None:
        print("  " + compare(expected, summary))
    print(f"report: {path}")
    return 0


def compare(expected: "estimate.Estimate", summary: list) -> str:
    """The estimate said at the start beside the training this call did (as the runs timed it)
    and the wall time, in all and per question."""
    now = {q: (counts or {}).get("seconds_now", 0.0) for q, _, counts in summary}
    d = estimate.duration
    return (f"estimated at the start: {d(expected.total())} of training; took {d(sum(now.values()))} of training, "
            f"{d(sum(s for _, s, _ in summary))} in all ("
            + "; ".join(f"{q} {d(expected.seconds.get(q, 0.0))} estimated, {d(now[q])} taken" for q, _, _ in summary)
            + ")")


def _runs(counts: dict) -> str:
    """ "3 trained, 1 loaded (trained in 27.5s)" from a run store's summary."""
    parts = [f"{counts[k]} {k}" for k in ("trained", "resumed", "loaded") if counts[k]]
    if not parts:
        return "no training runs"
    return ", ".join(parts) + f" (training {counts['train_seconds']:.1f}s as recorded)"


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
