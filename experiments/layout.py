"""Where a command line's results and report go: each question's folder under
``--results-dir`` is named by its configuration (:meth:`experiments.config.RunOptions.results_name`:
``q3`` for the defaults, ``q3_quick``, ``q3_seed-1``, ...), and the report of the main job's
flags is ``REPORT.md`` for the defaults, else ``REPORT_<what differs>.md`` (``REPORT_quick.md``),
its parts read from the folders those flags name (the default recipe's; the handout recipe's
beside them for its table)."""
from __future__ import annotations

import importlib
from typing import NamedTuple, Optional

from experiments.config import NAME_MAX
from mp_jax.engine import checkpoint

MODULES = {"q1": "experiments.q1_autoencoder", "q2": "experiments.q2_language_model",
           "q3": "experiments.q3_activity"}


class ReportPlan(NamedTuple):
    name: str  # the report's file name in the results folder
    folders: dict  # question -> the folder of its part (default recipe)
    handout: dict  # question -> the folder of the handout recipe's run (its table)


def configs(args, recipe: Optional[str] = None) -> dict:
    """``{question: configuration}`` that the flags ``args`` ask for, every question, under
    ``recipe`` (default: the flags' own)."""
    import argparse

    if recipe is not None:
        args = argparse.Namespace(**{**vars(args), "recipe": recipe})
    return {q: importlib.import_module(m).Config.from_args(args) for q, m in MODULES.items()}


def report_plan(args, precision: Optional[str] = None) -> ReportPlan:
    """The report of the main job's flags ``args``: its parts from the folders the default
    recipe's configurations name, the handout recipe's table from the handout's, and its name
    from what differs from the defaults in any question (``REPORT.md`` when nothing does;
    the recipe is not part of it: every report sets both side by side). ``precision``: the
    float32 matmul precision the runs used (default: the flags' ``--matmul-precision``)."""
    precision = precision or getattr(args, "matmul_precision", None) or "highest"
    default, handout = configs(args, "default"), configs(args, "handout")
    parts = list(dict.fromkeys(p for c in default.values() for p in c.name_parts(precision)))
    tag = "_".join(parts)
    if len(tag) > NAME_MAX:
        tag = ("quick_" if "quick" in parts else "") + checkpoint.config_hash(parts)[:8]
    return ReportPlan("REPORT.md" if not tag else f"REPORT_{tag}.md",
                      {q: c.results_name(q, precision) for q, c in default.items()},
                      {q: c.results_name(q, precision) for q, c in handout.items()})
