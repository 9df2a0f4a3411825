"""``python -m mp_jax.data build|check`` — build stand-ins, validate data files.

  python -m mp_jax.data check [--data-dir DIR]      (or: check DIR; default data/)
  python -m mp_jax.data build [--only q1,q3] [--out DIR] [--force] [--seed S]

A bad command line stops with one line and exit status 2; ``check`` exits 1 when a file
is unusable, ``build`` when a builder failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mp_jax.runtime import cli
from mp_jax.data import builders
from mp_jax.data.course import COURSE_FILES, LOADERS, QUESTIONS, DataError, describe, find_course_file, parse_questions
from mp_jax.data.h5io import RefuseOverwrite

DEFAULT_DIR = Path("data")


def questions_arg(text: str) -> list[str]:
    """argparse ``type=`` for ``--only``: ``"q1,q3"`` -> ``["q1", "q3"]``."""
    try:
        qs = parse_questions(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--only: ")) from None
    if not qs:
        raise argparse.ArgumentTypeError(f"expected questions from {','.join(QUESTIONS)}, found {text!r}")
    return qs


def existing_file(text: str) -> Path:
    """argparse ``type=``: a file that exists."""
    p = Path(text)
    if not p.is_file():
        found = "a folder" if p.is_dir() else "no such file"
        raise argparse.ArgumentTypeError(f"expected an existing file, found {found} at {text!r}")
    return p


def cmd_build(args) -> int:
    status = 0
    for q in args.only or list(QUESTIONS):
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
            print(f"{q}: FAILED — {cli.error_message(e)}")
            status = 1
            continue
        print(f"{q}: wrote {path}")
    return status


def cmd_check(args) -> int:
    status = 0
    for q in QUESTIONS:
        path = find_course_file(args.data_dir, q)
        if path is None:
            print(f"{q}: MISSING — none of {', '.join(COURSE_FILES[q])} in {args.data_dir}/ "
                  f"(build a stand-in: python -m mp_jax.data build --only {q} --out {args.data_dir})")
            continue
        try:
            data = LOADERS[q](path)
        except DataError as e:
            print(f"{q}: ERROR — {e}")
            status = 1
            continue
        print(f"{q}: OK {path} {describe(q, data)}")
    return status


def _check_data_dir(parser: argparse.ArgumentParser, args) -> None:
    """``check DIR`` and ``check --data-dir DIR``: one folder, which must exist."""
    if args.dir is not None and args.data_dir is not None and args.dir != args.data_dir:
        parser.error(f"argument --data-dir: two folders given ({args.dir} and --data-dir {args.data_dir}); "
                     f"give one")
    d = args.data_dir if args.data_dir is not None else args.dir if args.dir is not None else DEFAULT_DIR
    if not d.is_dir():
        found = "a file" if d.exists() else "no such folder"
        parser.error(f"argument --data-dir: expected a folder holding the data files, found {found} at '{d}' "
                     f"(build stand-ins there with: python -m mp_jax.data build --out {d})")
    args.data_dir = d


def build_parser() -> argparse.ArgumentParser:
    p = cli.Parser(prog="python -m mp_jax.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="{build,check}")
    b = sub.add_parser("build", help="build stand-in data files in the course schema")
    b.add_argument("--only", type=questions_arg, help="comma-separated questions (q1,q2,q3); default all")
    b.add_argument("--out", type=Path, default=DEFAULT_DIR, help="output folder (default data/)")
    b.add_argument("--force", action="store_true", help="replace existing files")
    b.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of the stand-ins' draws (default 0)")
    b.add_argument("--corpus", type=existing_file,
                   help="q2: a text corpus, one sentence per line (e.g. raw_sentences.txt)")
    b.add_argument("--wisdm", type=existing_file, help="q3: the WISDM v1.1 raw file")
    cli.add_debug_flag(b)
    c = sub.add_parser("check", help="validate the data files in a folder")
    c.add_argument("dir", nargs="?", type=Path, default=None, metavar="DIR",
                   help="the folder (the same as --data-dir; default data/)")
    c.add_argument("--data-dir", type=Path, default=None, help="the folder holding the data files (default data/)")
    cli.add_debug_flag(c)
    p.set_defaults(_subparsers={"build": b, "check": c})
    return p


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    sub = args._subparsers[args.cmd]  # its usage line in the errors below
    if args.cmd == "build":
        if args.out.exists() and not args.out.is_dir():
            sub.error(f"argument --out: expected a folder (it is created if missing), found a file at '{args.out}'")
        return cmd_build(args)
    _check_data_dir(sub, args)
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
