"""The counts and times README.md states: each count is computed here from the code, each time is
stated with the date (and the machine) it was measured on."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = re.sub(r"\s+", " ", (ROOT / "README.md").read_text(encoding="utf-8"))
WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def _value(text: str):
    return WORDS[text] if text in WORDS else float(text) if re.fullmatch(r"[0-9.e+-]+", text) else text


def _facts():
    from experiments.q1_autoencoder import Q1Config
    from experiments.q2_language_model import Q2Config
    from experiments.q3_activity import Q3Config
    from mp_jax.checks import bugzoo, gradtable, registry
    from mp_jax.engine import distributed
    from mp_jax.runtime import cli

    q1, q2, q3 = Q1Config(), Q2Config(), Q3Config()
    exercises = [p for p in (ROOT / "exercises").glob("*.py") if not p.name.startswith("_")]
    return [  # (pattern with the stated numbers as groups, the values the code gives)
        (r"Every manual backward \(the (\d+) models of `mp_jax/checks/registry.py`", (len(registry.MODELS),)),
        (r"A zoo of (\d+) published kinds of mistake", (len(bugzoo.BUGS),)),
        (r"`exercises/` holds (\w+) starter files", (len(exercises),)),
        (r"at float64 ([0-9e.-]+) and float32 ([0-9e.-]+) relative",
         (gradtable.TOLERANCES["float64"], gradtable.TOLERANCES["float32"])),
        (r"seeds 0 to (\d+)", (cli.SEED_MAX,)),
        (r"counts at most (\d+)", (cli.INT_MAX,)),
        (r"\(Q1's SGD (\d+), Q2's (\d+), Q3's (\d+)\)", (q1.sgd_batch, q2.batch_size, q3.batch_size)),
        (r"refits each recurrent model K times \(default (\d+)\)", (q3.seeds,)),
        (r"Q3 (\d+): its three models over (\d+) seeds", (None, q3.seeds)),
        (r"\((\d+) % of the training windows", (100 * q3.val_fraction,)),
        (r"SGD with momentum ([0-9.]+), clipping at ([0-9.]+), one epoch of warm-up",
         (q3.momentum, q3.clip_norm)),
        (r"otherwise after `--heartbeat-timeout` seconds \(default (\d+)\)", (distributed.DEFAULT_HEARTBEAT_S,)),
        (r"split each batch of (\d+) over them", (q3.batch_size,)),
    ]


@pytest.mark.parametrize("pattern,values", _facts(), ids=lambda x: x[:40] if isinstance(x, str) else "")
def test_a_count_readme_states_is_the_codes(pattern, values):
    m = re.search(pattern, TEXT)
    assert m, f"README.md no longer says {pattern!r}: update this test with the sentence that states the number"
    for stated, actual in zip(m.groups(), values):
        if actual is not None:
            assert _value(stated) == actual, f"README.md states {stated} ({pattern}), the code gives {actual}"


#: a measured time or speed-up: "44 s", "5 min 32 s", "12½ minutes", "1.5×", "a few minutes"
TIME = re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|min|minutes|seconds|hours)\b|½ minutes|\b\d+(?:\.\d+)?×(?!\d)"
                  r"|a few minutes|under a minute")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def _paragraphs() -> list[str]:
    """README.md's paragraphs and bullets, each on one line, code blocks left out."""
    text = re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    out = []
    for chunk in re.split(r"\n\s*\n", text):
        out += [re.sub(r"\s+", " ", b) for b in re.split(r"\n(?=- )", chunk) if b.strip()]
    return out


def test_every_time_readme_states_has_the_date_it_was_measured():
    undated = [p[:160] for p in _paragraphs() if TIME.search(p) and not DATE.search(p)]
    assert not undated, ("README.md states times without the date they were measured on (add 'measured on "
                         "YYYY-MM-DD on <machine>', or compute them in a test):\n" + "\n".join(undated))


def test_the_time_check_reads_times():
    found = [p for p in _paragraphs() if TIME.search(p)]
    assert len(found) >= 4 and all(TIME.search(s) for s in ("5 min 32 s", "12½ minutes", "1.5× faster"))
    assert not TIME.search("16×16 patches")
