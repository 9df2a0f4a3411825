"""What every question's configuration carries (:class:`RunOptions`, the frozen dataclass
each question's extends): the shared options, the recipes (``default`` and the course
handout's), the checkpoint key derived from every field (:meth:`RunOptions.run_key`), and
the choice of vmapped or sequential studies (:func:`use_vmap`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Optional

from mp_jax.engine import checkpoint

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

    def results_name(self, question: str) -> str:
        """The folder of this configuration's results under ``results_dir`` (and the name of
        its lock): ``question`` for the default recipe, ``<question>_handout`` for the handout's."""
        return results_name(question, self.recipe)

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
