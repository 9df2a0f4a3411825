"""What every question's configuration carries (:class:`RunOptions`, the frozen dataclass
each question's extends): the shared options, the recipes (``default`` and the course
handout's), the checkpoint key derived from every field (:meth:`RunOptions.run_key`), the
results folder named from the fields that differ from the defaults
(:meth:`RunOptions.results_name`), and the choice of vmapped or sequential studies
(:func:`use_vmap`)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import ClassVar, Optional

from mp_jax.engine import checkpoint
from mp_jax.runtime import cli

IMPLS = ("fast", "reference")
RECIPES = ("default", "handout")  # --recipe: the defaults, or the course handout's settings (docs/recipes.md)
NAME_MAX = 40  # the longest suffix of a results folder's name spelled out; a longer one is a hash
_NAME_PART = re.compile(r"[A-Za-z0-9._+-]+")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What every question's configuration carries besides its own settings (each
    question's frozen dataclass extends this one; ``quick()`` gives its tiny settings).

    Attributes:
      data_dir: where the ``.h5`` files are (stand-ins are built there when missing).
      results_dir: where each configuration's folder of metrics and figures goes (:meth:`results_name`).
      seed: the PRNG seed (initial parameters, shuffling, subsets, splits).
      is_quick: made by ``quick()``: the tiny settings (every step and output, to check that all runs).
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

    def results_name(self, question: str, precision: Optional[str] = None) -> str:
        """The folder of this configuration's results under ``results_dir`` (and the name of
        its lock): ``question`` (``<question>_handout`` for the handout's recipe) for the
        recipe's defaults, else that name followed by what differs (:meth:`name_parts`), e.g.
        ``q3_quick``, ``q3_quick_models-rnn``, ``q3_seeds-2``. Every configuration that can
        change a number therefore writes its own folder, and no run overwrites another's
        results. ``precision``: the float32 matmul precision of the run (None: this process's,
        :func:`matmul_precision`)."""
        return results_name(question, self.recipe) + "".join("_" + p for p in self.name_parts(precision))

    def reference(self) -> "RunOptions":
        """The configuration this one is named against: the defaults of its recipe, tiny
        when it is (:meth:`make`)."""
        return type(self).make(is_quick=self.is_quick, recipe=self.recipe)

    def differences(self) -> dict:
        """``{field: value}`` of the fields in the run key (every field but :attr:`KEY_EXCLUDED`)
        that differ from :meth:`reference`, ``is_quick`` and ``recipe`` aside (they name the
        reference itself), in the order of the fields."""
        ref = self.reference()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in self.KEY_EXCLUDED and f.name not in ("is_quick", "recipe")
                and getattr(self, f.name) != getattr(ref, f.name)}

    def identity(self, precision: Optional[str] = None) -> dict:
        """What tells this configuration's results apart from any other's: every field in the
        run key, the configuration's type, and the float32 matmul precision when it is not full
        (as :func:`mp_jax.protocols.runs.fit_run` keys a checkpoint)."""
        precision = matmul_precision() if precision is None else precision
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.KEY_EXCLUDED}
        return {"type": type(self).__name__, "config": fields,
                **({} if precision == "highest" else {"matmul_precision": precision})}

    def config_hash(self, precision: Optional[str] = None) -> str:
        """A short hash of :meth:`identity`."""
        return checkpoint.config_hash(self.identity(precision))

    def name_parts(self, precision: Optional[str] = None) -> list:
        """The parts of the folder's name after the question (and recipe): ``quick`` for the
        tiny settings, ``<field>-<value>`` for each of :meth:`differences` (a boolean as
        ``<field>`` or ``no-<field>``, a list joined by ``+``), ``matmul-<precision>`` when
        float32 matmuls ran below full precision; when that is longer than :data:`NAME_MAX`
        characters, or a value has no short spelling, ``quick`` (if so) and a hash of
        :meth:`identity` instead. The devices are not in the name: they change the order of
        float32 sums only."""
        precision = matmul_precision() if precision is None else precision
        parts = [_name_part(k, v, getattr(self.reference(), k)) for k, v in self.differences().items()]
        if precision != "highest":
            parts.append(f"matmul-{precision}")
        head = ["quick"] if self.is_quick else []
        if any(p is None for p in parts) or len("_".join(parts)) > NAME_MAX:
            return head + [self.config_hash(precision)[:8]]
        return head + parts

    def run_key(self, *, data: str, split, **run) -> dict:
        """What keys a run's checkpoint (:func:`mp_jax.engine.checkpoint.run_key`): every field of this
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


def _spell(value) -> Optional[str]:
    """A setting's value in a folder name: numbers as ``%g``, lists joined by ``+``, pairs
    as ``name-value``; None when it has no short spelling."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        if not value:
            return "none"
        items = [_spell(v) if not isinstance(v, tuple) else
                 (f"{_spell(v[0])}-{_spell(v[1])}" if len(v) == 2 and not any(isinstance(x, tuple) for x in v)
                  else None) for v in value]
        return None if any(i is None for i in items) else "+".join(items)
    return None


def _name_part(field: str, value, reference) -> Optional[str]:
    """One part of a folder's name: ``field`` set to ``value`` instead of ``reference``
    (of a list of pairs, such as learning rates per model, the pairs that differ)."""
    if isinstance(value, bool) and reference in (True, False, None):
        return field if value else f"no-{field}"
    if isinstance(value, tuple) and isinstance(reference, tuple) and value and all(
            isinstance(v, tuple) and len(v) == 2 for v in value + reference):
        changed = tuple(v for v in value if v not in reference)
        value = changed or value
    text = _spell(value)
    return f"{field}-{text}" if text is not None and _NAME_PART.fullmatch(text) else None


def matmul_precision() -> str:
    """This process's float32 matmul precision as ``--matmul-precision`` names it: ``highest``
    (full float32), ``default`` (JAX's choice; TensorFloat-32 on recent NVIDIA GPUs) or
    another value JAX was given. Reads JAX's setting without starting a backend."""
    import jax

    value = jax.config.jax_default_matmul_precision
    return "default" if value is None else str(value)


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


def progress_flag(args) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


def seeds_past_max(seed: int, seeds: int) -> list:
    """The usage error of ``--seed`` + ``--seeds`` when the last seed, S + K − 1, passes the
    largest seed JAX's keys hold; [] when it does not."""
    last = seed + seeds - 1
    if last > cli.SEED_MAX:
        return [f"argument --seeds: the seeds run from --seed {seed} to {last}, past {cli.SEED_MAX} (the "
                f"largest seed); give --seed {cli.SEED_MAX - seeds + 1} or lower, or fewer --seeds"]
    return []
