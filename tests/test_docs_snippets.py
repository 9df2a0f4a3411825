"""Every snippet of README.md and docs/ that a reader can paste is run, or parsed and covered.

A fenced block is ``bash``, ``python`` or ``text`` (a listing, never run). Every command of a
``bash`` block (its lines, split at ``&&``, comments dropped) and every ``python`` block (by
its first line) is listed in :data:`COMMANDS` or :data:`PYTHON` below with what the suite does
with it:

- ``RUN``: run here, in this process, into a temporary folder, with the expected exit status;
- ``COVERED``: a long run (a training job, the launcher, a whole gradient check) that the named
  test of the suite already makes at ``--quick`` or small size; here its arguments are parsed
  by the entry point's own parser (without starting JAX's devices or reading data);
- ``NOT_RUN``: with the reason (an installation, several hosts, the suite itself).

A new snippet fails :func:`test_every_snippet_is_listed` until it is listed; a listed snippet
that the pages no longer hold fails too. Every ``python -m`` command in the prose (an inline
code span) is parsed as well when it is a complete command, and every flag a usage synopsis
names (``[--seeds K]``) must be one its entry point's ``--help`` lists.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

from test_docs_paths import _test_names

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

RUN, COVERED, NOT_RUN = "run", "covered", "not run"
INSTALL = "installs from the package registry into a new virtual environment: CI's .ci/run does it in a fresh clone"
SUITE = "the test suite itself (or a part of it): it runs in the suite by definition"

#: Every command of a bash block: (what, detail). RUN: the expected exit status; COVERED: the
#: test that makes the run; NOT_RUN: the reason.
COMMANDS = {
    # README.md: quick start
    "python3 -m venv .venv": (NOT_RUN, INSTALL),
    ". .venv/bin/activate": (NOT_RUN, INSTALL),
    "pip install -e .": (NOT_RUN, INSTALL),
    "pip install -e '.[test]'": (NOT_RUN, INSTALL),
    "python -m experiments": (COVERED, "tests/test_main_job.py::test_report_links_only_existing_figures"),
    "python -m pytest -q": (NOT_RUN, SUITE),
    'python -m pytest -m "not slow"': (NOT_RUN, SUITE),
    # README.md: several processes and hosts
    "python -m mp_jax.launch --processes 2 --cpu-devices 1 -- python -m experiments.q3_activity --quick":
        (COVERED, "tests/test_distributed.py::test_two_processes_train_to_the_parameters_of_one_process_with_two_devices"),
    "python -m experiments.q3_activity --coordinator 10.0.0.1:12355 --num-processes 2 --process-id 0":
        (NOT_RUN, "needs two hosts that reach 10.0.0.1; tests/test_distributed.py runs two processes on one machine"),
    "python -m experiments.q3_activity --coordinator 10.0.0.1:12355 --num-processes 2 --process-id 1":
        (NOT_RUN, "needs two hosts that reach 10.0.0.1; tests/test_distributed.py runs two processes on one machine"),
    # README.md and docs/checks.md: the gradient check
    "python -m mp_jax.gradcheck lstm":
        (COVERED, "tests/test_gradcheck.py::test_every_model_and_implementation_passes_with_a_row_per_parameter"),
    "python -m mp_jax.gradcheck lstm --fd --intermediates":
        (COVERED, "tests/test_gradcheck.py::test_fd_and_intermediates_work_for_every_model"),
    "python -m mp_jax.gradcheck lstm --bug lstm-no-forget-carry --intermediates":
        (COVERED, "tests/test_bugzoo.py::test_gradcheck_bug_fails_and_names_the_tensor"),
    "python -m mp_jax.gradcheck --bug list": (RUN, 0),
    "python -m mp_jax.gradcheck MODEL": (RUN, 0),  # MODEL: see PLACEHOLDERS
    "python -m mp_jax.gradcheck lstm --impl fast --fd":
        (COVERED, "tests/test_gradcheck.py::test_fd_adds_a_finite_difference_column_and_intermediates_use_the_docs_symbols"),
    "python -m mp_jax.gradcheck gru --intermediates --T 6":
        (COVERED, "tests/test_gradcheck.py::test_fd_and_intermediates_work_for_every_model"),
    "python -m mp_jax.gradcheck ae --case saturated --dtype float32": (RUN, 0),
    "python -m pytest tests/test_gradient_table.py tests/test_bugzoo.py": (NOT_RUN, SUITE),
    # docs/exercises.md: an unwritten starter gives one line and status 1
    "python -m mp_jax.gradcheck --backward exercises/lstm_step.py": (RUN, 1),
    # an unwritten starter: each rung of the hint, then status 1
    "python -m mp_jax.gradcheck --backward exercises/lstm_step.py --hint": (RUN, 1),
    "python -m mp_jax.gradcheck --backward exercises/lstm_step.py --hint 2": (RUN, 1),
    "python -m mp_jax.gradcheck --backward exercises/lstm_step.py --hint 3": (RUN, 1),
    "python notebooks/bptt_by_hand.py exercises/lstm_step.py":
        (COVERED, "tests/test_notebook.py::test_the_notebook_runs_the_learners_piece_and_draws_its_figures"),
    "MP_JAX_EXERCISE=exercises/lstm_step.py jupyter notebook notebooks/":
        (NOT_RUN, "opens a notebook server for a person (jupyter and jupytext are not dependencies); "
                  "tests/test_notebook.py runs the same file with MP_JAX_EXERCISE set"),
    # docs/recipes.md
    "python -m experiments --recipe handout":
        (COVERED, "tests/test_recipe.py::test_the_main_job_runs_the_handout_recipe_beside_ours"),
    "python -m experiments.q3_activity --recipe handout":
        (COVERED, "tests/test_documented_commands.py::test_the_main_job_with_the_handout_recipe_and_every_option_that_changes_training"),
    "python -m experiments.q2_language_model --recipe handout --quick":
        (COVERED, "tests/test_documented_commands.py::test_the_main_job_with_the_handout_recipe_and_every_option_that_changes_training"),
    "python -m experiments.q3_activity --results-dir R": (COVERED, "tests/test_q3_experiment.py::test_quick_end_to_end"),
    "python -m experiments.q3_activity --recipe handout --results-dir R":
        (COVERED, "tests/test_documented_commands.py::test_the_main_job_with_the_handout_recipe_and_every_option_that_changes_training"),
    "python -m experiments.q2_language_model --results-dir R":
        (COVERED, "tests/test_q2_experiment.py::test_quick_run_writes_every_output"),
    "python -m experiments.q2_language_model --recipe handout --results-dir R":
        (COVERED, "tests/test_documented_commands.py::test_the_main_job_with_the_handout_recipe_and_every_option_that_changes_training"),
    "python -m experiments.recipe_effect --results-dir R --write docs/recipes.md":
        (COVERED, "tests/test_recipe_effect.py::test_the_command_rewrites_only_its_block"),
}
#: A placeholder of a usage line and what the suite puts in its place.
PLACEHOLDERS = {"MODEL": "ae", "R": "{results}"}

#: Every python block, by its first line: (what, detail).
PYTHON = {
    "import jax": (RUN, "README.md: checking a gradient yourself"),
    "dx = dy @ w.T  # (P2)": (NOT_RUN, "docs/README.md: lines of modules, showing how a comment cites a label"),
}


# ----------------------------------------------------------------------------- reading the pages
def _blocks():
    """(page, line, language, text) of every fenced block of the pages."""
    for page in PAGES:
        lines, opened = page.read_text(encoding="utf-8").splitlines(), None
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                if opened is None:
                    opened = (number, line.strip()[3:].strip(), [])
                else:
                    yield page.relative_to(ROOT), opened[0], opened[1], "\n".join(opened[2])
                    opened = None
            elif opened is not None:
                opened[2].append(line)


def _commands(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out += [c.strip() for c in line.split("&&")]
    return out


def _listed():
    commands = {c: where for page, number, lang, text in _blocks() if lang in ("bash", "sh")
                for c in _commands(text) for where in [f"{page}:{number}"]}
    python = {text.splitlines()[0]: f"{page}:{number}" for page, number, lang, text in _blocks() if lang == "python"}
    return commands, python


def _inline_commands() -> list[tuple[str, str]]:
    """(page, span) of every inline code span that starts with ``python -m``."""
    out = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S).replace("\n", " ")
        out += [(str(page.relative_to(ROOT)), m) for m in re.findall(r"`(python -m [^`]+)`", text)]
    return out


def test_every_block_has_a_language():
    bad = [f"{page}:{number}" for page, number, lang, _ in _blocks() if lang not in ("bash", "sh", "python", "text")]
    assert not bad, f"fenced blocks without bash, python or text (say what the block is): {bad}"


def test_every_snippet_is_listed():
    commands, python = _listed()
    unlisted = [f"{where}: {c}" for c, where in commands.items() if c not in COMMANDS]
    unlisted += [f"{where}: python block starting {first!r}" for first, where in python.items() if first not in PYTHON]
    assert not unlisted, ("snippets that the suite neither runs nor lists (add each to COMMANDS or PYTHON in "
                          "tests/test_docs_snippets.py, with how it is run):\n" + "\n".join(unlisted))
    gone = [c for c in COMMANDS if c not in commands] + [p for p in PYTHON if p not in python]
    assert not gone, f"listed snippets that no page holds any more (remove them from the lists): {gone}"


@pytest.mark.parametrize("command", sorted(c for c, (what, _) in COMMANDS.items() if what == COVERED))
def test_a_covered_command_names_a_test_that_exists(command):
    path, _, name = COMMANDS[command][1].partition("::")
    assert (ROOT / path).exists() and name in _test_names(ROOT / path), COMMANDS[command][1]


# ----------------------------------------------------------------------------- parsing a command
class _Parsed(Exception):
    """Raised where an entry point would start its devices or processes: its arguments parsed."""


def _entry(module: str):
    """The ``main`` that ``python -m module`` runs."""
    mod = importlib.import_module(module)
    if hasattr(mod, "__path__"):
        mod = importlib.import_module(f"{module}.__main__")
    return mod.main


def _argv(command: str, results: Path) -> tuple[str, list[str]]:
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    words = [PLACEHOLDERS.get(w, w).format(results=results) for w in words]
    return words[2], words[3:]


def parse(command: str, tmp_path: Path, monkeypatch) -> None:
    """Parse ``command`` with its entry point's own parser and checks, stopping before any device,
    process or data: a usage error fails (argparse's SystemExit)."""
    from experiments import common
    from mp_jax import gradcheck, launch
    from mp_jax.checks import bugzoo

    monkeypatch.chdir(tmp_path)  # default folders (data/, results/) are made here, if at all
    module, argv = _argv(command, tmp_path / "results")

    def stop(*args, **kwargs):
        raise _Parsed

    if module == "mp_jax.gradcheck":
        args = gradcheck.build_parser().parse_args(argv)
        assert args.bug in (None, "list") or args.bug in bugzoo.BUGS, f"{command}: no bug {args.bug!r}"
        assert args.backward is None or (ROOT / args.backward).exists(), command
        return
    if module == "mp_jax.launch":
        monkeypatch.setattr(launch.subprocess, "Popen", stop)
        with pytest.raises(_Parsed):
            launch.main(argv)
        inner = argv[argv.index("--") + 1:]
        return parse(" ".join(shlex.quote(w) for w in inner), tmp_path, monkeypatch)
    if module == "experiments.report":  # no devices: it stops where it would read the results
        from experiments import report

        (tmp_path / "results").mkdir(exist_ok=True)
        monkeypatch.setattr(report, "write_report", stop)
    if module == "experiments.recipe_effect":  # it stops where it would read the results
        from experiments import recipe_effect

        monkeypatch.setattr(recipe_effect, "load", stop)
    if module.startswith("experiments"):
        monkeypatch.setattr(common, "start_devices", stop)
        with pytest.raises(_Parsed):
            _entry(module)(argv)
        return
    raise AssertionError(f"{command}: no parser known for {module}")


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if c.startswith("python -m ") and "pytest" not in c))
def test_every_listed_command_parses(command, tmp_path, monkeypatch):
    parse(command, tmp_path, monkeypatch)


def _help_flags(module: str, sub: list[str]) -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        _entry(module)(sub + ["--help"])
    assert e.value.code == 0
    return set(re.findall(r"--[\w-]+", out.getvalue()))


@pytest.mark.parametrize("where,span", _inline_commands(), ids=lambda x: x if isinstance(x, str) and x.startswith(
    "python") else None)
def test_every_command_in_the_prose_names_flags_its_entry_point_has(where, span, tmp_path, monkeypatch):
    words = shlex.split(span.replace("[", " ").replace("]", " ").replace("|", " "))
    module = words[2]
    if module == "pytest":
        return
    sub = [w for w in words[3:3 + 1] if not w.startswith("-") and module == "mp_jax.data"]
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    unknown = flags - _help_flags(module, sub)
    assert not unknown, f"{where}: `{span}` names flags that `python -m {module} --help` lacks: {sorted(unknown)}"
    if not re.search(r"[\[\]|<>]|\.\.\.|…", span) and module.startswith(("experiments", "mp_jax.gradcheck")):
        parse(span, tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- running
def _run_main(module: str, argv: list[str]) -> tuple[int, str, str]:
    from mp_jax.runtime import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.run_main(_entry(module), argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(c for c, (what, _) in COMMANDS.items() if what == RUN))
def test_every_run_command_exits_as_documented(command, tmp_path, monkeypatch, fast_compile):
    monkeypatch.chdir(ROOT)  # the pages' paths are relative to the repository
    module, argv = _argv(command, tmp_path / "results")
    rc, out, err = _run_main(module, argv)
    assert rc == COMMANDS[command][1], f"{command}: exit status {rc}\n{out[-2000:]}\n{err[-2000:]}"
    if rc == 0 and module == "mp_jax.gradcheck" and "--bug" not in argv:
        assert "all rows PASS" in out, out[-2000:]
    if rc == 1:  # a documented failure is one line, not a traceback
        assert "Traceback" not in err and (err.count("\n") == 1 or "FAIL" in out), err


@pytest.mark.slow
@pytest.mark.parametrize("first", sorted(f for f, (what, _) in PYTHON.items() if what == RUN))
def test_every_run_python_block_runs_as_pasted(first, tmp_path, monkeypatch, fast_compile):
    _, python = _listed()
    page, number = python[first].rsplit(":", 1)
    text = next(t for p, n, lang, t in _blocks() if str(p) == page and n == int(number))
    monkeypatch.chdir(tmp_path)
    exec(compile(text, f"{page}:{number}", "exec"), {"__name__": "__snippet__"})  # noqa: S102
