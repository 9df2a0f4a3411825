"""``python -m experiments`` — the whole report, end to end.

Runs Q1 (sparse autoencoder), Q2 (language model) and Q3 (activity recognition) on the
data it finds in ``--data-dir`` (the course files when present, else stand-ins built on
the fly from public data), then writes ``<results-dir>/REPORT.md``.

Every training run checkpoints after each epoch: running the command again skips the
finished runs and resumes an interrupted one where it stopped. ``--fresh`` starts over
(earlier results are moved aside, never deleted); ``--quick`` does every step with tiny
settings in about a minute.
"""
from __future__ import annotations

import importlib
import logging
import time

from experiments import common, report
from mp_jax.data.course import parse_questions

QUESTIONS = {
    "q1": ("experiments.q1_autoencoder", "Q1 sparse autoencoder"),
    "q2": ("experiments.q2_language_model", "Q2 neural language model"),
    "q3": ("experiments.q3_activity", "Q3 RNN / LSTM / GRU activity recognition"),
}
log = logging.getLogger("experiments")


def data_sources(questions, data_dir) -> dict:
    """Which data each question will use, as one line each (building missing stand-ins)."""
    from mp_jax.data.course import LOADERS

    out = {}
    for q in questions:
        path = common.resolve_data(q, data_dir)
        attrs = LOADERS[q](path).attrs
        out[q] = f"{path} — {common.describe_source(attrs)}"
    return out


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments", __doc__)
    p.add_argument("--only", help="comma-separated questions to run (q1,q2,q3); default all")
    args = p.parse_args(argv)
    common.start_devices(args)
    common.setup_logging()
    try:
        questions = parse_questions(args.only)
    except ValueError as e:
        raise SystemExit(str(e)) from None

    sources = data_sources(questions, args.data_dir)
    print("mp_jax: reproducing " + ", ".join(questions) + (" (--quick)" if args.quick else ""))
    for q, line in sources.items():
        print(f"  {q} data: {line}")

    summary = []
    t_all = time.perf_counter()
    for q in questions:
        module = importlib.import_module(QUESTIONS[q][0])
        t = time.perf_counter()
        print(f"== {QUESTIONS[q][1]}")
        with common.session(args, q) as (_, store):
            module.run(args)
        seconds = time.perf_counter() - t
        counts = {}
        for _, event, _ in store.events:
            counts[event] = counts.get(event, 0) + 1
        summary.append((q, seconds, counts))
        print(f"== {q} done in {seconds:.1f}s ({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'no training runs'})")

    path = report.write_report(args.results_dir, sources=sources, timings={q: s for q, s, _ in summary},
                               quick=args.quick)
    print(f"\nsummary ({time.perf_counter() - t_all:.1f}s in all):")
    for q, seconds, counts in summary:
        print(f"  {q}: {seconds:7.1f}s  runs: {', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or '-'}")
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
