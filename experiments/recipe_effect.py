"""``python -m experiments.recipe_effect --results-dir R [--write docs/recipes.md]``: the measured
effect of the course handout's recipe, written from the results' ``metrics.json``.

docs/recipes.md states what the handout's settings do to the test numbers. Those numbers are
not typed by hand: this command reads ``R/q2``, ``R/q2_handout``, ``R/q3`` and ``R/q3_handout``
(each written by the entry points, e.g. ``python -m experiments.q3_activity --recipe handout
--results-dir R``) and renders the block between ``<!-- measured-effect -->`` and
``<!-- /measured-effect -->``: the date, the commit and the machine of the measurement, the
test numbers of both recipes side by side, and each comparison computed from them. Without
``--write`` it prints the block; with it, it replaces the block of that page and nothing else.
:func:`verify` re-renders a page's block from the metrics it cites and names every line that
differs, so a block cannot keep numbers that its results no longer give.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional

from mp_jax.runtime import atomic, cli
from mp_jax.runtime.errors import UserError

OPEN, CLOSE = "<!-- measured-effect -->", "<!-- /measured-effect -->"
ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ("q2", "q3")
Q3_MODELS = (("rnn", "RNN"), ("lstm", "LSTM"), ("gru", "GRU"), ("baseline", "baseline (logistic regression)"))
NOT_MEASURED = ("*Not yet measured at full size with the current code: the commands above measure it, and the "
                "last one writes the numbers here, with the date, the commit and the machine.*")


class Stamp(NamedTuple):
    """When, at which commit and on what the measurement was written."""

    date: str
    commit: str
    machine: str

    def line(self) -> str:
        return f"Measured on {self.date} at commit `{self.commit}`, on {self.machine}."

    @classmethod
    def parse(cls, block: str) -> Optional["Stamp"]:
        m = re.search(r"Measured on (\S+) at commit `([^`]*)`, on (.*?)\.$", block, re.M)
        return cls(*m.groups()) if m else None


def stamp_now() -> Stamp:
    """Today, the repository's commit (``-dirty`` with uncommitted changes) and this machine."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    machine = f"{platform.system()} {platform.machine()} with {os.cpu_count()} CPU cores"
    try:
        import jax

        machine += f", JAX {jax.__version__} on {jax.devices()[0].device_kind}"
    except Exception:  # noqa: BLE001 - the stamp says what it knows
        pass
    return Stamp(datetime.date.today().isoformat(), commit, machine)


# ----------------------------------------------------------------------------- reading
def load(results_dir: Path) -> dict:
    """``{"q2": m, "q2_handout": m, "q3": m, "q3_handout": m}`` from ``results_dir`` (a run's
    ``metrics.json`` each); a missing or unreadable one is a :class:`UserError` naming it."""
    out = {}
    for q in QUESTIONS:
        for name in (q, f"{q}_handout"):
            path = Path(results_dir) / name / "metrics.json"
            try:
                out[name] = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                flag = " --recipe handout" if name.endswith("_handout") else ""
                module = {"q2": "q2_language_model", "q3": "q3_activity"}[q]
                raise UserError(f"{path}: no such file; the measured effect needs both recipes' runs",
                                hint=f"Run python -m experiments.{module}{flag} --results-dir {results_dir} first.")
            except (OSError, json.JSONDecodeError) as e:
                raise UserError(f"{path}: cannot read it as JSON ({e})", hint="Run that question again.")
    return out


def _quick(m: dict) -> bool:
    return bool((m.get("settings") or {}).get("is_quick") or m.get("quick"))


# ----------------------------------------------------------------------------- writing
def _pct(x) -> str:
    return f"{100 * x:.1f} %" if isinstance(x, (int, float)) else "–"


def _q3_default(r: dict) -> str:
    per_seed = r.get("test_accuracy_per_seed") or [r.get("test_accuracy")]
    if len(per_seed) > 1:
        return (f"{100 * r['test_accuracy']:.1f} ± {100 * r['test_accuracy_std']:.1f} % "
                f"(seed {r['seeds'][0]}: {_pct(per_seed[0])})")
    return _pct(r.get("test_accuracy"))


def _num(x, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, (int, float)) else "–"


def q3_rows(default: dict, handout: dict) -> list[tuple]:
    """(model, default accuracy, default loss, handout accuracy, handout loss) per Q3 model."""
    rows = []
    for key, name in Q3_MODELS:
        a, b = default.get(key), handout.get(key)
        if a or b:
            rows.append((name, _q3_default(a) if a else "not run", _num((a or {}).get("test_loss")),
                         _pct((b or {}).get("test_accuracy")) if b else "not run", _num((b or {}).get("test_loss"))))
    return rows


def _q2_settings(m: dict) -> list[str]:
    return [k for k in m if re.fullmatch(r"D=\d+,P=\d+", k)]


def q2_rows(default: dict, handout: dict) -> list[tuple]:
    """(network, default: CE and top-1, handout: CE and top-1) per Q2 setting."""
    def cell(r):
        return f"{_num(r.get('test_cross_entropy'))} nats, {_pct(r.get('top1_accuracy'))}" if r else "not run"

    names = list(dict.fromkeys(_q2_settings(default) + _q2_settings(handout)))
    return [(f"({n[2:].replace(',P=', ', ')})", cell(default.get(n)), cell(handout.get(n))) for n in names]


def findings(m: dict) -> list[str]:
    """The comparisons the tables support, each computed from the numbers."""
    out = []
    q2d, q2h = m["q2"], m["q2_handout"]
    same = [n for n in _q2_settings(q2d) if n in q2h
            and _num(q2d[n].get("test_cross_entropy")) == _num(q2h[n].get("test_cross_entropy"))]
    if same and len(same) == len(_q2_settings(q2d)):
        out.append("Q2: every network's test cross-entropy is the same under both recipes to the digits shown "
                   "(the defaults are the handout's settings).")
    elif _q2_settings(q2d):
        diffs = [f"({n[2:].replace(',P=', ', ')}) {q2h[n]['test_cross_entropy'] - q2d[n]['test_cross_entropy']:+.3f}"
                 for n in _q2_settings(q2d) if n in q2h]
        out.append("Q2: the handout's recipe minus the default's test cross-entropy, in nats: "
                   + ", ".join(diffs) + ".")
    q3d, q3h = m["q3"], m["q3_handout"]
    for key, name in Q3_MODELS[:3]:
        a, b = q3d.get(key), q3h.get(key)
        if not (a and b):
            continue
        per_seed = a.get("test_accuracy_per_seed") or [a["test_accuracy"]]
        lo, hi = min(per_seed), max(per_seed)
        gap = 100 * (b["test_accuracy"] - a["test_accuracy"])
        inside = lo <= b["test_accuracy"] <= hi
        out.append(f"Q3, {name}: the handout's recipe {gap:+.1f} points against the default's mean; "
                   + ("within" if inside else "outside")
                   + f" the default's {len(per_seed)} refits ({_pct(lo)} to {_pct(hi)}).")
    for key, name in Q3_MODELS[:3]:
        b = q3h.get(key)
        if b and isinstance(b.get("val_accuracy"), (int, float)):
            a = q3d.get(key) or {}
            default_val = (f"; the default's whole-subject validation {_pct(a['val_accuracy'])} against its test "
                           f"{_pct(a['test_accuracy'])}" if isinstance(a.get("val_accuracy"), (int, float)) else "")
            out.append(f"Q3, {name}: the handout's validation accuracy {_pct(b['val_accuracy'])} against its test "
                       f"accuracy {_pct(b['test_accuracy'])}{default_val}.")
    times = {k: (m[k].get("training") or {}).get("train_seconds") for k in ("q3", "q3_handout")}
    if all(isinstance(v, (int, float)) for v in times.values()):
        out.append(f"Training time as recorded: Q3 {times['q3']:.0f} s under the default recipe, "
                   f"{times['q3_handout']:.0f} s under the handout's.")
    return out


def render(m: dict, stamp: Stamp) -> str:
    """The block's lines between the markers, from the four runs' metrics ``m`` (:func:`load`)."""
    quick = [k for k, v in m.items() if _quick(v)]
    d3, d2 = m["q3"].get("data") or {}, m["q2"].get("data") or {}
    lines = [f"*Written by `python -m experiments.recipe_effect` from the runs' `metrics.json`; do not edit by hand.* "
             + stamp.line(), ""]
    if quick:
        lines += [f"**With `--quick` ({', '.join(sorted(quick))}): tiny settings, numbers that mean nothing.**", ""]
    seed = (m["q3"].get("settings") or {}).get("seed")
    lines += [f"Data: Q3 {d3.get('n_train', '?')} training and {d3.get('n_test', '?')} test windows; Q2 "
              f"{d2.get('n_train', '?')} / {d2.get('n_val', '?')} / {d2.get('n_test', '?')} trigrams (training, "
              f"validation, test); seed {seed}. Test numbers; the default recipe's Q3 accuracy is the mean ± standard "
              "deviation over its refits (its first seed's alone in brackets), the handout's is its one run.", "",
              "| question | model | default: test accuracy | default: test loss | handout: test accuracy | "
              "handout: test loss |", "|---|---|---|---|---|---|"]
    lines += [f"| Q3 | {' | '.join(row)} |" for row in q3_rows(m["q3"], m["q3_handout"])]
    lines += ["", "| question | network (D, P) | default: test cross-entropy, top-1 | handout: test cross-entropy, "
              "top-1 |", "|---|---|---|---|"]
    lines += [f"| Q2 | {' | '.join(row)} |" for row in q2_rows(m["q2"], m["q2_handout"])]
    lines += [""] + [f"- {s}" for s in findings(m)]
    return "\n".join(lines)


def block(text: str) -> str:
    """The text between the markers of a page."""
    if text.count(OPEN) != 1 or text.count(CLOSE) != 1 or text.index(OPEN) > text.index(CLOSE):
        raise UserError(f"the page has no single block between {OPEN} and {CLOSE}",
                        hint="Put the two markers, each once, where the measured effect goes.")
    return text[text.index(OPEN) + len(OPEN):text.index(CLOSE)].strip("\n")


def replace_block(text: str, body: str) -> str:
    block(text)  # checks the markers
    return text[:text.index(OPEN) + len(OPEN)] + "\n" + body + "\n" + text[text.index(CLOSE):]


def verify(page_text: str, results_dir: Path) -> list[str]:
    """The lines of the page's block that the metrics in ``results_dir`` do not give (the
    block re-rendered with its own stamp); empty when every number is the metrics'."""
    written = block(page_text)
    stamp = Stamp.parse(written)
    if stamp is None:
        return [f"the block has no 'Measured on ... at commit ...' line: {written[:120]!r}"]
    expected = render(load(results_dir), stamp).splitlines()
    got = written.splitlines()
    return [f"the block says {g!r}, the metrics give {e!r}" for g, e in zip(got, expected) if g != e] + (
        [f"the block has {len(got)} lines, the metrics give {len(expected)}"] if len(got) != len(expected) else [])


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m experiments.recipe_effect", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", type=Path, default=Path("results"),
                   help="where q2/, q2_handout/, q3/ and q3_handout/ are (default results/)")
    p.add_argument("--write", type=Path, metavar="PAGE",
                   help="replace the measured-effect block of PAGE (docs/recipes.md) instead of printing it")
    cli.add_debug_flag(p)
    args = p.parse_args(argv)
    body = render(load(args.results_dir), stamp_now())
    if args.write is None:
        print(body)
        return 0
    try:
        text = args.write.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"--write {args.write}: cannot read it ({e.strerror or e})", hint="Give the page to update.")
    atomic.write_text(args.write, replace_block(text, body))
    print(f"wrote the measured effect into {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
