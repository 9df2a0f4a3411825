"""What every experiment entry point shares: arguments, the options every question's
configuration carries (:class:`RunOptions`), logging, devices, result files, and the one
line each question prints about its data.

Failure handling: bad flags stop at parsing (exit status 2, one line naming the flag), and so
do settings that do not fit together (:func:`check_config`: ``--devices`` not dividing a batch,
Q3's seeds past the PRNG's range), before JAX starts or any data is read; each
question's results folder is locked while a run uses it (:func:`question_lock`, a lock file
``<results-dir>/.<question>.lock`` beside the folder, so that ``--fresh`` can move the folder
aside); results are written atomically (:mod:`mp_jax.atomic`), by process 0 only in a
distributed run (:mod:`mp_jax.distributed`)."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np

from mp_jax import atomic, checkpoint, cli, distributed
from mp_jax.errors import storage_error
from mp_jax.lock import FolderLock


MATMUL_PRECISIONS = ("highest", "default")
IMPLS = ("fast", "reference")
RECIPES = ("default", "handout")  # --recipe: the defaults, or the course handout's settings (docs/recipes.md)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What every question's configuration carries besides its own settings (each
    question's frozen dataclass extends this one; ``quick()`` gives its tiny settings).

    Attributes:
      data_dir: where the ``.h5`` files are (stand-ins are built there when missing).
      results_dir: where ``<question>/`` with metrics and figures goes.
      seed: the PRNG seed (initial parameters, shuffling, subsets, splits).
      is_quick: made by ``quick()``: the tiny settings (every step and output, about a minute in all).
      progress: None: a bar on a terminal, log lines otherwise; False: log lines.
      vmap: train a study's members as one ``jax.vmap`` program (True) or one after another
        (False); None picks by device (:func:`use_vmap`).
      recipe: "default" (the defaults) or "handout" (the course handout's settings, :attr:`HANDOUT`
        over the defaults; its results go to ``<results-dir>/<question>_handout/``).
    """

    FLAGS: ClassVar[tuple] = ()  # a question's own flags: fields taken from the arguments when given
    HANDOUT: ClassVar[dict] = {}  # the course handout's settings where they differ from the defaults
    # The fields that cannot change a result, and so are left out of every run's checkpoint key
    # (run_key); every other field, a question's own included, is in it.
    KEY_EXCLUDED: ClassVar[dict] = {
        "data_dir": "where the data file is found: the key holds the digest of its content",
        "results_dir": "where results and checkpoints are written",
        "progress": "how training shows its progress (a bar or log lines)",
    }

    data_dir: Path = Path("data")
    results_dir: Path = Path("results")
    seed: int = 0
    is_quick: bool = False
    progress: Optional[bool] = None
    vmap: Optional[bool] = None
    recipe: str = "default"

    @classmethod
    def quick(cls, **changes):
        """The tiny settings (a question overrides this with its own)."""
        return cls(**{"is_quick": True, **changes})

    @classmethod
    def handout(cls, **changes):
        """The course handout's recipe: :attr:`HANDOUT` over the defaults, then ``changes``."""
        return cls.make(recipe="handout", **changes)

    @classmethod
    def make(cls, *, is_quick: bool = False, recipe: str = "default", **changes):
        """The configuration of ``recipe`` ("default" or "handout"), tiny with ``is_quick``: the
        defaults, then the recipe's fields (:attr:`HANDOUT`), then the tiny sizes of
        :meth:`quick` (which keep their own values of the fields they set), then ``changes``."""
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, found {recipe!r}")
        fields = {**cls.HANDOUT, "recipe": "handout"} if recipe == "handout" else {}
        if not is_quick:
            return cls(**{**fields, **changes})
        plain, tiny = cls(), cls.quick()
        fields = {k: v for k, v in fields.items() if getattr(tiny, k) == getattr(plain, k)}
        return cls.quick(**{**fields, **changes})

    def results_name(self, question: str) -> str:
        """The folder of this configuration's results under ``results_dir`` (and the name of
        its lock): ``question`` for the default recipe, ``<question>_handout`` for the handout's."""
        return results_name(question, self.recipe)

    def run_key(self, *, data: str, split, **run) -> dict:
        """What keys a run's checkpoint (:func:`mp_jax.checkpoint.run_key`): every field of this
        configuration except :attr:`KEY_EXCLUDED`, the data's digest ``data``, the ``split`` of
        it the run trains on and the run's own settings ``run``."""
        return checkpoint.run_key(self, self.KEY_EXCLUDED, data=data, split=split, **run)

    def batch_sizes(self) -> dict:
        """``{what: batch size}`` of the runs that ``--devices`` splits over a mesh (each must
        divide by the device count; :func:`check_devices_divide`). None here."""
        return {}

    def usage_errors(self) -> list:
        """What is wrong with these settings as a whole, one line each, naming the flags (a
        question checks its flags together here; each flag's own range is checked by its
        parser). Checked before any data is read (:func:`check_config`)."""
        return []

    @classmethod
    def options_from_args(cls, args) -> dict:
        """The :class:`RunOptions` fields from parsed arguments (absent flags: defaults),
        and the fields named in ``FLAGS`` that the arguments set."""
        own = {k: getattr(args, k) for k in cls.FLAGS if getattr(args, k, None) is not None}
        return dict(data_dir=Path(getattr(args, "data_dir", "data")),
                    results_dir=Path(getattr(args, "results_dir", "results")),
                    seed=int(getattr(args, "seed", 0)), is_quick=bool(getattr(args, "quick", False)),
                    progress=progress_flag(args), vmap=getattr(args, "vmap", None),
                    recipe=getattr(args, "recipe", None) or "default", **own)

    @classmethod
    def from_args(cls, args):
        """The configuration a command line asks for (:meth:`make`): the ``--recipe``'s
        settings, tiny with ``--quick``, with the flags given."""
        return cls.make(**cls.options_from_args(args))


def results_name(question: str, recipe: str = "default") -> str:
    """``q3`` for the default recipe, ``q3_handout`` for the handout's: the folder under
    ``--results-dir`` (and the lock) of a question's run under that recipe."""
    return question if recipe == "default" else f"{question}_{recipe}"


def use_vmap(flag: Optional[bool] = None) -> bool:
    """Whether a study's members train as one vmapped program: ``flag`` when given, else
    on an accelerator yes and on a CPU no. On a CPU a batched matmul of a few members runs
    no faster per FLOP than each member's own, and the members one after another finished
    sooner (Q1's (β, ρ) study 154 s against 204 s vmapped, its sweep 150 s against 349 s on 2
    cores: BENCHMARKS.md); on an accelerator one member leaves the device mostly idle."""
    if flag is not None:
        return bool(flag)
    import jax

    return jax.default_backend() != "cpu"


Parser = cli.Parser  # one-line usage errors (mp_jax.cli.Parser)


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flags every experiment takes."""
    p = Parser(prog=prog, description=description)
    p.add_argument("--data-dir", type=cli.folder, default="data", help="where the .h5 files are (default data/)")
    p.add_argument("--results-dir", type=cli.folder, default="results", help="where results go (default results/)")
    p.add_argument("--seed", type=cli.seed, default=0, help=f"PRNG seed, 0 to {cli.SEED_MAX} (default 0)")
    p.add_argument("--quick", action="store_true", help="every step and output with tiny settings (< 1 min)")
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
                   help="start over: move earlier results of this question aside (nothing is deleted)")
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
    Only the writing process (:func:`mp_jax.distributed.is_writer`) moves anything."""
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
    holding the run's pid and host (:class:`mp_jax.lock.FolderLock`). A second run on the
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
    question's :class:`experiments.runs.RunContext`: the device mesh (``--devices``) and
    per-epoch checkpoints in ``<results-dir>/<question>/checkpoints`` (``--fresh`` moves the
    question's earlier results aside first, under the lock). Yields ``(results folder, context)``."""

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
    CPU as ``--cpu-devices`` devices (default one per core; see :mod:`mp_jax.parallel`), the
    distributed run the flags describe, if any
    (:func:`mp_jax.distributed.initialize_from_args`), ``--devices`` checked against the
    devices JAX then has (with ``parser``: a usage error, exit status 2) and, when not
    given, the devices the runs would take against ``configs``' batch sizes
    (:func:`check_devices_divide`), and float32 matmuls at ``--matmul-precision`` (see
    :func:`set_matmul_precision`). Returns the CPU device count."""
    from mp_jax import parallel

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
    ``ArgumentTypeError`` refuses it; e.g. :func:`mp_jax.cli.positive_number`), ``what`` names
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


def progress_flag(args) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


def question_dir(results_dir: os.PathLike, question: str) -> Path:
    d = Path(results_dir) / question
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise storage_error(e, d, doing="creating") from e
    return d


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist"):  # numpy / jax arrays and scalars
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_json(path: os.PathLike, obj: Any) -> Path:
    """Write JSON (arrays as lists, non-finite floats as null) atomically
    (:func:`mp_jax.atomic.write_json`: a reader sees the old file or the new one, never a
    part; no space left raises a one-line error naming the folder). Only the writing
    process of a distributed run writes (:func:`mp_jax.distributed.is_writer`)."""
    path = Path(path)
    if not distributed.is_writer():
        return path
    return atomic.write_json(path, _jsonable(obj))


def write_text(path: os.PathLike, text: str) -> Path:
    """Write a text file atomically (:func:`mp_jax.atomic.write_text`); process 0 only."""
    path = Path(path)
    if not distributed.is_writer():
        return path
    return atomic.write_text(path, text)


def read_json(path: os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def file_digest(path: os.PathLike, n_hex: int = 16) -> str:
    """A content hash of a data file (keys checkpoints to the exact data used)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def resolve_data(question: str, data_dir: os.PathLike) -> Path:
    """The question's data file: the course file in ``data_dir`` when present, else the
    stand-in, built there on the fly (never overwriting anything). Logs which one."""
    from mp_jax.data import builders
    from mp_jax.data.course import find_course_file

    log = logging.getLogger(f"experiments.{question}")
    path = find_course_file(data_dir, question)
    if path is None:
        log.info("%s: no course file in %s/; building the stand-in from public data", question, data_dir)
        path = builders.build(question, data_dir)
    return path


def describe_source(attrs: dict) -> str:
    """Where the data came from, in full (stand-in attributes with their credits and
    licence, or the course file): for ``metrics.json`` and REPORT.md."""
    if attrs.get("source_kind") == "stand-in":
        return f"stand-in: {attrs.get('source', '?')} (licence: {attrs.get('licence', '?')})"
    return "course file"


def short_source(attrs: dict, limit: int = 100) -> str:
    """Where the data came from in a few words: "course file", or "stand-in from" the
    names of the stand-in's sources (a file path shortened to its stem; credits dropped)."""
    if attrs.get("source_kind") != "stand-in":
        return "course file"
    names = []
    for part in str(attrs.get("source", "")).split("; "):
        name = part.split(" (")[0].split(": ")[0].strip()
        if "/" in name:
            name = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if name:
            names.append(name)
    text = "stand-in from " + (", ".join(names) or "?")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def announce_data(question: str, path: os.PathLike, attrs: dict) -> str:
    """Print (and return) the one line a question says about its data."""
    line = f"{question} data: {path} ({short_source(attrs)}" + \
        ("; credits in REPORT.md and data/README.md)" if attrs.get("source_kind") == "stand-in" else ")")
    print(line, flush=True)
    return line
