"""``python -m mp_jax.data build|check`` — build stand-ins, validate data files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mp_jax.data import builders
from mp_jax.data.course import COURSE_FILES, LOADERS, QUESTIONS, DataError, describe, find_course_file, parse_questions
from mp_jax.data.h5io import RefuseOverwrite

def parse_only(text: str | None) -> list[str]:
    try:
        return parse_questions(text)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def cmd_build(args) -> int:
    status = 0
    for q in parse_only(args.only):
        options = {}
        if q == "q2" and args.corpus:
            options["corpus"] = args.corpus
        if q == "q3" and args.wisdm:
            options["wisdm"] = args.wisdm
        try:
            path = builders.build(q, args.out, force=args.force, seed=args.seed, **options)
        except builders.BuilderMissing as e:
            print(f"{q}: SKIPPED — {e}")
            continue
        except RefuseOverwrite as e:
            print(f"{q}: SKIPPED — {e}")
            continue
        except (DataError, OSError, ValueError) as e:
            print(f"{q}: FAILED — {e}")
            status = 1
            continue
        print(f"{q}: wrote {path}")
    return status


def cmd_check(args) -> int:
    status = 0
    for q in QUESTIONS:
        path = find_course_file(args.dir, q)
        if path is None:
            print(f"{q}: MISSING — none of {', '.join(COURSE_FILES[q])} in {args.dir}/ "
                  f"(build a stand-in: python -m mp_jax.data build --only {q} --out {args.dir})")
            continue
        try:
            data = LOADERS[q](path)
        except DataError as e:
            print(f"{q}: ERROR — {e}")
            status = 1
            continue
        print(f"{q}: OK {path} {describe(q, data)}")
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mp_jax.data", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build stand-in data files in the course schema")
    b.add_argument("--only", help="comma-separated questions (q1,q2,q3); default all")
    b.add_argument("--out", type=Path, default=Path("data"), help="output folder (default data/)")
    b.add_argument("--force", action="store_true", help="replace existing files")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--corpus", type=Path, help="q2: a text corpus, one sentence per line (e.g. raw_sentences.txt)")
    b.add_argument("--wisdm", type=Path, help="q3: the WISDM v1.1 raw file")
    c = sub.add_parser("check", help="validate the data files in a folder")
    c.add_argument("dir", nargs="?", type=Path, default=Path("data"))
    args = p.parse_args(argv)
    return cmd_build(args) if args.cmd == "build" else cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
