"""An entry point's start-up: the flags every experiment takes (:func:`base_parser`), the
check of the settings they ask for (:func:`check_config`), the devices and float32
precision (:func:`start_devices`), logging, and the session each question runs in (its
results folder locked, ``--fresh``, its :class:`mp_jax.protocols.runs.RunContext`), all
put together by :func:`run_main`. A question's configuration base class is in
:mod:`experiments.config`; the files the entry points read and write in
:mod:`experiments.files`.

Failure handling: bad flags stop at parsing (exit status 2, one line naming the flag), and so
do settings that do not fit together (:func:`check_config`: ``--devices`` not dividing a batch,
Q3's seeds past the PRNG's range), before JAX starts or any data is read; each
question's results folder is locked while a run uses it (:func:`question_lock`, a lock file
``<results-dir>/.<question>.lock`` beside the folder, so that ``--fresh`` can move the folder
aside); results are written atomically (:mod:`mp_jax.runtime.atomic`), by process 0 only in a
distributed run (:mod:`mp_jax.engine.distributed`)."""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from experiments.config import IMPLS, RECIPES, RunOptions
from mp_jax.runtime import cli
from mp_jax.engine import distributed
from mp_jax.runtime.errors import storage_error
from mp_jax.runtime.lock import FolderLock


MATMUL_PRECISIONS = ("highest", "default")


Parser = cli.Parser  # one-line usage errors (mp_jax.runtime.cli.Parser)


def _value(config, field: str) -> str:
    value = getattr(config, field)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value}/" if isinstance(value, Path) else f"{value:g}" if isinstance(value, float) else str(value)


def defaults_help(cls, field: str, show: Callable = _value) -> str:
    """What a flag that sets ``field`` of ``cls`` (a question's configuration dataclass) takes
    when it is not given, read from the dataclass itself so that ``--help`` cannot disagree with
    it: "default V", then "--quick V" and "--recipe handout V" where those differ from it.
    ``show(config, field)`` writes a value."""
    plain = show(cls(), field)
    parts = [f"default {plain}"]
    for flag, config in (("--quick", cls.make(is_quick=True)), ("--recipe handout", cls.make(recipe="handout"))):
        if show(config, field) != plain:
            parts.append(f"{flag} {show(config, field)}")
    return "; ".join(parts)


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every experiment takes (their defaults: :class:`RunOptions`'s)."""
    p = Parser(prog=prog, description=description)
    o = RunOptions()
    p.add_argument("--data-dir", type=cli.folder, default=str(o.data_dir),
                   help=f"where the .h5 files are ({defaults_help(RunOptions, 'data_dir')})")
    p.add_argument("--results-dir", type=cli.folder, default=str(o.results_dir),
                   help=f"where results go ({defaults_help(RunOptions, 'results_dir')})")
    p.add_argument("--seed", type=cli.seed, default=o.seed,
                   help=f"PRNG seed, 0 to {cli.SEED_MAX} ({defaults_help(RunOptions, 'seed')})")
    p.add_argument("--quick", action="store_true",
                   help="every step and output with tiny settings: checks that everything runs, in minutes; "
                        "its numbers mean nothing")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars")
    p.add_argument("--devices", type=cli.device_count(), default=None,
                   help="train data-parallel over N local devices (default: all; the batch size must divide by N)")
    p.add_argument("--cpu-devices", type=cli.positive_int, default=None,
                   help="on a CPU, expose N devices to JAX (default: one per core); the recurrences (Q3) split each "
                        "batch over them, since their scans run on one core each; 1 turns this off")
    p.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default="highest",
                   help="float32 matmuls at full float32 precision (highest, the default), or at JAX's default, "
                        "which on NVIDIA GPUs from Ampere on is TensorFloat-32 (10-bit mantissa: gradients off by "
                        "1e-3 to 2e-2 relative); no difference on a CPU")
    p.add_argument("--fresh", action="store_true",
                   help="start over: move the earlier results of this configuration (its folder) aside; nothing is "
                        "deleted")
    p.add_argument("--vmap", action=argparse.BooleanOptionalAction, default=None,
                   help="train the members of a study (Q1's (beta, rho) study and L_hid x lambda sweep, Q3's "
                        "--seeds K) as one jax.vmap program (--vmap) or one after another (--no-vmap); default: "
                        "vmapped on an accelerator, one after another on a CPU, where that is faster")
    p.add_argument("--impl", choices=IMPLS, default="fast",
                   help="Q2 and Q3: train with the fast manual gradients (fast, the default) or the readable "
                        "reference ones (reference); the same function, equal to float rounding (each is its own "
                        "checkpointed run)")
    p.add_argument("--recipe", choices=RECIPES, default="default",
                   help="default (the package's settings) or handout: train with the course handout's settings instead "
                        "(docs/recipes.md), the results in <results-dir>/<question>_handout/ beside the default recipe's")
    cli.add_debug_flag(p)
    distributed.add_arguments(p)
    return p


def move_aside(path: os.PathLike) -> Optional[Path]:
    """Rename an existing results folder to ``<name>.old-<timestamp>`` (never deletes).
    Only the writing process (:func:`mp_jax.engine.distributed.is_writer`) moves anything."""
    import time

    path = Path(path)
    if not path.exists() or not distributed.is_writer():
        return None
    aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    try:
        path.rename(aside)
    except OSError as e:
        raise storage_error(e, path, doing="moving aside") from e
    logging.getLogger("experiments").info("--fresh: moved %s aside to %s", path, aside)
    return aside


def question_lock(results_dir: os.PathLike, question: str):
    """The lock of ``<results_dir>/<question>/`` while a run uses it: a lock file
    ``<results_dir>/.<question>.lock`` (beside the folder, which ``--fresh`` may move aside)
    holding the run's pid and host (:class:`mp_jax.runtime.lock.FolderLock`). A second run on the
    same folder stops at once with a one-line error naming the holder. In a distributed run
    only process 0 takes it (the others write nothing; on one machine they would otherwise
    stop each other); there this is a context that does nothing."""
    if not distributed.is_writer():
        return contextlib.nullcontext()
    return FolderLock(results_dir, name=f".{question}.lock", what="results folder",
                      guards=Path(results_dir) / question)


@contextlib.contextmanager
def session(args, question: str, *, lock: bool = True, progress: Optional[bool] = None):
    """What every experiment's ``run`` trains inside: the question's results folder locked
    (:func:`question_lock`; ``lock=False`` when the caller already holds it), and the
    question's :class:`mp_jax.protocols.runs.RunContext`: the device mesh (``--devices``) and
    per-epoch checkpoints in ``<results-dir>/<question>/checkpoints`` (``--fresh`` moves the
    folder's earlier results aside first, under the lock). ``question``: the results folder's
    name, which the configuration gives (:meth:`experiments.config.RunOptions.results_name`:
    ``q3``, ``q3_quick`` ...). Yields ``(results folder, context)``."""

    from mp_jax.protocols import runs

    qdir = Path(args.results_dir) / question
    with question_lock(args.results_dir, question) if lock else contextlib.nullcontext():
        if getattr(args, "fresh", False):
            move_aside(qdir)
        try:
            qdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, qdir, doing="creating") from e
        yield qdir, runs.RunContext.start(qdir / "checkpoints", getattr(args, "devices", None), progress)


def check_config(parser: argparse.ArgumentParser, args, configs: Sequence[RunOptions]) -> None:
    """Right after parsing, before JAX starts or any data is read: each configuration's
    :meth:`RunOptions.usage_errors`, and ``--devices`` dividing every batch size it splits
    (:func:`check_devices_divide`). A problem is a usage error (exit status 2)."""
    for c in configs:
        for message in c.usage_errors():
            parser.error(message)
    if getattr(args, "devices", None) is not None:  # the default count is known only once JAX has
        check_devices_divide(parser, configs, args.devices)  # started: start_devices checks it


def check_devices_divide(parser: argparse.ArgumentParser, configs: Sequence[RunOptions],
                         n: Optional[int] = None) -> None:
    """Stop with a usage error naming ``--devices`` when ``n`` devices do not divide the batch
    size of every run that splits its batches over them (:meth:`RunOptions.batch_sizes`).
    ``n`` None: the devices the runs take by default, checked once JAX has started (every
    accelerator; on a CPU nothing is split unless asked, so nothing to check)."""
    default = n is None
    if default:
        import jax

        if jax.default_backend() == "cpu" or jax.device_count() == 1:
            return
        n = jax.device_count()
    sizes = {what: int(b) for c in configs for what, b in c.batch_sizes().items()}
    if n == 1 or not any(b % n for b in sizes.values()):
        return
    g = math.gcd(*sizes.values())
    fits = ", ".join(str(d) for d in range(1, g + 1) if g % d == 0)
    listed = ", ".join(f"{what} {b}" for what, b in sizes.items())
    if default:
        parser.error(f"argument --devices: not given, so every run would split its batches over the {n} devices JAX "
                     f"sees, which do not divide every batch size ({listed}); give --devices with one of {fits}")
    parser.error(f"argument --devices: expected a device count that divides every batch size ({listed}), found {n}; "
                 f"choose one of {fits}")


def start_devices(args, parser: Optional[argparse.ArgumentParser] = None,
                  configs: Sequence[RunOptions] = ()) -> int:
    """First thing after parsing (and :func:`check_config`), before any JAX computation: the
    CPU as ``--cpu-devices`` devices (default one per core; see :mod:`mp_jax.engine.parallel`), the
    distributed run the flags describe, if any
    (:func:`mp_jax.engine.distributed.initialize_from_args`), ``--devices`` checked against the
    devices JAX then has (with ``parser``: a usage error, exit status 2) and, when not
    given, the devices the runs would take against ``configs``' batch sizes
    (:func:`check_devices_divide`), and float32 matmuls at ``--matmul-precision`` (see
    :func:`set_matmul_precision`). Returns the CPU device count."""
    from mp_jax.engine import parallel

    n = parallel.use_cpu_cores(getattr(args, "cpu_devices", None))
    distributed.initialize_from_args(args, parser)
    if parser is not None:
        cli.check_device_count(parser, getattr(args, "devices", None))
        if getattr(args, "devices", None) is None and configs:
            check_devices_divide(parser, configs)
    set_matmul_precision(getattr(args, "matmul_precision", "highest"))
    return n


def set_matmul_precision(name: str) -> None:
    """Every float32 matmul of the process at full precision (``"highest"``) or at JAX's
    default (``"default"``).

    JAX's default on NVIDIA GPUs from Ampere on is TensorFloat-32: operands rounded to a
    10-bit mantissa. Measured on an H200 (jax 0.11.2), manual against ``jax.grad`` float32
    gradients of the LSTM at T = 150, N = 64: 3e-3 to 6e-3 in the cell's leaves and 2.1e-2
    in the MLP head's bias under TensorFloat-32, at most 7.8e-7 at full precision, as on a
    CPU. A CPU computes float32 either way (the compiled programs differ only in the
    attribute).
    """
    import jax

    if name not in MATMUL_PRECISIONS:
        raise ValueError(f"--matmul-precision must be one of {MATMUL_PRECISIONS}, found {name!r}")
    jax.config.update("jax_default_matmul_precision", None if name == "default" else "highest")


def run_main(question: str, parser: argparse.ArgumentParser, config_from_args, run, argv=None) -> int:
    """An entry point's ``main``: parse ``argv``, check the configuration it asks for
    (:func:`check_config`), start the devices (:func:`start_devices`) and logging, then
    ``run(config, ctx)`` with the question's :func:`session` (mesh, checkpoints, ``--fresh``)."""
    args = parser.parse_args(argv)
    config = config_from_args(args)
    check_config(parser, args, [config])
    start_devices(args, parser, [config])
    setup_logging()
    with session(args, config.results_name(question), progress=config.progress) as (_, ctx):
        run(config, ctx)
    return 0


def parse_names(text: str, choices: tuple, flag: str) -> tuple:
    """``"gru, rnn"`` -> ``("gru", "rnn")``, each one of ``choices``; for argparse's ``type=``
    (a bad list raises ``ArgumentTypeError``: argparse's one line naming ``flag``, exit status 2)."""
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in choices]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown name(s) {bad or text!r}; expected a comma-separated list of "
                                         f"{','.join(choices)} ({flag})")
    return names


def parse_assignments(text: str, choices: tuple, flag: str, defaults: tuple,
                      number: Callable[[str], float] = float, what: str = "NUMBER",
                      allowed: Optional[str] = None) -> tuple:
    """``"rnn=0.01,all=0.1"`` applied in order over ``defaults`` ((name, value) pairs), as such
    pairs; ``all`` sets every one of ``choices``. ``number`` reads a value (a ValueError or
    ``ArgumentTypeError`` refuses it; e.g. :func:`mp_jax.runtime.cli.positive_number`), ``what`` names
    it in the message and ``allowed`` says which values it takes."""
    values = dict(defaults)
    for item in text.split(","):
        name, _, raw = item.partition("=")
        name = name.strip().lower()
        try:
            value = number(raw)
        except (ValueError, argparse.ArgumentTypeError):
            value = None
        if name != "all" and name not in choices or value is None:
            raise argparse.ArgumentTypeError(f"expected NAME={what} items (NAME in {','.join(choices)} "
                                             f"or all{f'; {what} {allowed}' if allowed else ''}), found {item!r} "
                                             f"({flag})")
        values.update({t: value for t in (choices if name == "all" else (name,))})
    return tuple(values.items())


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("jax", "absl", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


