"""The findings paragraphs of REPORT.md, written from a run's own numbers.

Each function takes one question's ``metrics.json`` (a dict) and returns sentences. Every
comparison a sentence makes ("higher", "within the spread", "six times ρ") is computed
from the numbers it quotes, so another data set or seed gives other words, never a false
claim; a number a run did not record gives no sentence. ``tests/test_report.py`` builds
the paragraphs from two different runs and checks each claim against its numbers.

One module per question (:mod:`experiments.findings.q1`, ``q2``, ``q3``) and the wording they
share (:mod:`experiments.findings.common`); this package exposes them under one name.
"""
from experiments.findings.common import *  # noqa: F401,F403
from experiments.findings.common import _num, _pct  # noqa: F401
from experiments.findings.q1 import *  # noqa: F401,F403
from experiments.findings.q1 import _lbfgs_records, _q  # noqa: F401
from experiments.findings.q2 import *  # noqa: F401,F403
from experiments.findings.q2 import _setting_text  # noqa: F401
from experiments.findings.q3 import *  # noqa: F401,F403
