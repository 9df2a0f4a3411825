"""``<results-dir>/REPORT.md``: the mini-project report regenerated from saved results.

Follows the structure of the course report (Q1 a-d, Q2 a-b, Q3 a-c). Everything comes
from the files the experiments saved (``metrics.json``, PNGs, text tables), so the report
can be rebuilt at any time: ``python -m experiments.report [--results-dir R]``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Optional

from mp_jax import atomic, cli, distributed
from mp_jax.errors import UserError


def _load(qdir: Path) -> Optional[dict]:
    p = qdir / "metrics.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def _fig(lines: list, qdir: Path, name: str, caption: str, used: set) -> None:
    if (qdir / name).exists():
        lines += [f"![{caption}]({qdir.name}/{name})", "", f"*{caption}*", ""]
        used.add(name)


def _text(lines: list, qdir: Path, name: str, used: set, title: Optional[str] = None) -> None:
    p = qdir / name
    if p.exists():
        if title:
            lines += [f"**{title}**", ""]
        body = p.read_text().rstrip()
        lines += (body.splitlines() if name.endswith(".md") else ["```", *body.splitlines(), "```"]) + [""]
        used.add(name)


def _rest(lines: list, qdir: Path, used: set) -> None:
    others = sorted(p.name for p in qdir.glob("*.png") if p.name not in used)
    if others:
        lines += ["Other figures:", ""]
        for name in others:
            lines += [f"![{name}]({qdir.name}/{name})", ""]


def _fmt(x, nd=4):
    if isinstance(x, float):
        return f"{x:.{nd}g}"
    return str(x)


def _trained(seconds, loaded: bool = False) -> str:
    """ "trained in 27 s", or "loaded (trained in 27 s)" for runs read back from checkpoints."""
    text = f"trained in {seconds:.0f} s" if isinstance(seconds, (int, float)) else "trained earlier"
    return f"loaded ({text})" if loaded else text


def training_line(q: str, m: dict) -> Optional[str]:
    """One question's training time from its ``metrics.json["training"]``: "trained in X s"
    when it trained (or resumed) runs in the call that wrote it, "loaded" when every run was
    read back from its checkpoint (with the time they took when they were trained)."""
    t = m.get("training") if isinstance(m, dict) else None
    if not t:
        return None
    n_now, n_loaded = t.get("trained", 0) + t.get("resumed", 0), t.get("loaded", 0)
    if n_now == 0 and n_loaded:
        return f"{q} loaded ({n_loaded} runs, trained in {t.get('train_seconds', 0):.0f} s)"
    more = f", {n_loaded} of its runs loaded" if n_loaded else ""
    return f"{q} trained in {t.get('train_seconds', 0):.0f} s ({n_now + n_loaded} runs{more})"


def environment() -> list:
    lines = []
    try:
        from importlib.metadata import version

        pkgs = ["jax", "jaxlib", "optax", "chex", "numpy", "h5py", "matplotlib"]
        vers = ", ".join(f"{p} {version(p)}" for p in pkgs)
    except Exception:  # noqa: BLE001
        vers = "unknown"
    try:
        import jax

        devices = ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}))
        n_dev = jax.device_count()
        precision = jax.config.jax_default_matmul_precision
    except Exception:  # noqa: BLE001
        devices, n_dev, precision = "unknown", 0, None
    lines += [f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
              f"{os.cpu_count()} CPU cores", f"- {vers}", f"- JAX devices: {n_dev} × {devices}",
              "- float32 matmuls: " + ("full precision" if precision == "highest" else
                                       "JAX's default (TensorFloat-32 on recent NVIDIA GPUs)" if precision is None
                                       else str(precision)) + " (`--matmul-precision`)"]
    return lines


# ----------------------------------------------------------------------------- Q1
def q1_section(qdir: Path) -> list:
    m = _load(qdir)
    lines = ["## Q1 — Sparse autoencoder on natural-image patches", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q1`).*", ""]
    used: set = set()
    lines += ["### a) Preprocessing", "",
              "Gray = 0.2126 R + 0.7152 G + 0.0722 B; each patch's mean removed; clipped at ±3σ "
              "(σ over the whole set) and mapped to [0.1, 0.9].", ""]
    _fig(lines, qdir, "patches_rgb.png", "Figure 1: 200 random 16×16 RGB patches", used)
    _fig(lines, qdir, "patches_preprocessed.png", "Figure 2: the same 200 patches preprocessed", used)
    lines += ["### b) Training", ""]
    main = m.get("main") or {}
    if m.get("optimizers"):
        lines += ["| optimizer | final cost | reconstruction | weight decay | sparsity | mean ρ̂ | held-out MSE / mean-patch MSE | duplicate units | time |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, r in m["optimizers"].items():
            t = r.get("cost_terms", {})
            lines.append(f"| {k} | {_fmt(r.get('final_cost'))} | {_fmt(t.get('reconstruction'))} | "
                         f"{_fmt(t.get('weight_decay'))} | {_fmt(t.get('sparsity'))} | "
                         f"{_fmt(r.get('mean_hidden_activation'))} (ρ = {_fmt(r.get('rho', m.get('rho')))}) | "
                         f"{_fmt(r.get('heldout_mse_ratio'))} | {r.get('duplicate_units', '?')} | "
                         f"{_trained(r.get('seconds'), r.get('loaded', False))} |")
        lines.append("")
    for key in ("final_cost", "heldout_reconstruction_mse", "mean_hidden_activation", "rho"):
        if key in m:
            lines.append(f"- `{key}`: {_fmt(m[key])}")
    if main:
        lines.append(f"- default run: {json.dumps({k: v for k, v in main.items() if not isinstance(v, (dict, list))})}")
    lines.append("")
    _fig(lines, qdir, "optimizer_curves.png", "Training cost of the two optimizers", used)
    _fig(lines, qdir, "reconstructions.png", "Held-out patches and their reconstructions", used)
    lines += ["### c) Hidden features", ""]
    _fig(lines, qdir, "features.png", "Figure 3: hidden-unit weights of the default model", used)
    _fig(lines, qdir, "features_optimizers.png", "Features learned by each optimizer", used)
    _fig(lines, qdir, "features_beta_rho.png", "Figure 4: features for the report's five (β, ρ)", used)
    if m.get("beta_rho"):
        lines += ["| β | ρ | mean ρ̂ | held-out MSE ratio | duplicate units |", "|---|---|---|---|---|"]
        for r in m["beta_rho"]:
            lines.append(f"| {_fmt(r.get('beta'))} | {_fmt(r.get('rho'))} | {_fmt(r.get('mean_hidden_activation'))} | "
                         f"{_fmt(r.get('heldout_mse_ratio'))} | {r.get('duplicate_units', '?')} |")
        lines.append("")
    lines += ["### d) L_hid × λ sweep", ""]
    _fig(lines, qdir, "features_sweep.png", "Figure 5: features for each (L_hid, λ)", used)
    if m.get("sweep"):
        lines += ["| L_hid | λ | final cost | held-out MSE ratio | duplicate units |", "|---|---|---|---|---|"]
        for r in m["sweep"]:
            lines.append(f"| {r.get('hidden')} | {_fmt(r.get('lam'))} | {_fmt(r.get('final_cost'))} | "
                         f"{_fmt(r.get('heldout_mse_ratio'))} | {r.get('duplicate_units', '?')} |")
        lines.append("")
    _rest(lines, qdir, used)
    return lines


# ----------------------------------------------------------------------------- Q2
def q2_section(qdir: Path) -> list:
    m = _load(qdir)
    lines = ["## Q2 — Neural language model", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q2`).*", ""]
    used: set = set()
    lines += ["### a) Training the three (D, P) settings", ""]
    for name in sorted(p.name for p in qdir.glob("loss_*.png")):
        _fig(lines, qdir, name, f"Training and validation cross-entropy, {name[5:-4].replace('_', ', ')}", used)
    _text(lines, qdir, "table.txt", used, "Test set: cross-entropy, perplexity, accuracy (with the Kneser-Ney baseline)")
    lines += ["### b) Predictions", ""]
    _text(lines, qdir, "samples.txt", used, "Five random test trigrams: top-10 fourth words")
    _fig(lines, qdir, "samples.png", "Top-10 predictions for five test trigrams", used)
    _text(lines, qdir, "anchors.txt", used, "The report's trigrams")
    _text(lines, qdir, "neighbours.txt", used, "Nearest words in embedding space")
    _rest(lines, qdir, used)
    return lines


# ----------------------------------------------------------------------------- Q3
def _confusion_table(names, cm) -> list:
    short = [n[:5] for n in names]
    out = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(names) + 1) + "|"]
    for n, row in zip(names, cm):
        out.append(f"| {n} | " + " | ".join(str(int(v)) for v in row) + " |")
    return out + [""]


def q3_section(qdir: Path) -> list:
    m = _load(qdir)
    lines = ["## Q3 — RNN, LSTM and GRU for activity recognition", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q3`).*", ""]
    used: set = set()
    lines += ["### Accuracy, training time", ""]
    _text(lines, qdir, "comparison.md", used)
    names = m.get("class_names") or (m.get("data") or {}).get("class_names")
    for cell in ("rnn", "lstm", "gru"):
        r = m.get(cell)
        if not r:
            continue
        lines += [f"### {cell.upper()}", "",
                  f"Test accuracy {100 * r['test_accuracy']:.1f} %, training accuracy {100 * r['train_accuracy']:.1f} %, "
                  f"{r['epochs_run']} epochs, {r['seconds_per_epoch']:.2f} s per epoch after compile, "
                  f"learning rate {r['learning_rate']}.", ""]
        _fig(lines, qdir, f"{cell}_loss.png", f"{cell.upper()}: training and validation loss per epoch", used)
        _fig(lines, qdir, f"{cell}_confusion.png", f"{cell.upper()}: training and test confusion matrices", used)
        if names and r.get("confusion_test"):
            lines += [f"{cell.upper()} test confusion matrix (counts):", ""] + _confusion_table(names, r["confusion_test"])
    _fig(lines, qdir, "loss_all.png", "Loss curves of the three models", used)
    _fig(lines, qdir, "baseline_confusion.png", "Baseline (logistic regression on window statistics)", used)
    _rest(lines, qdir, used)
    return lines


def write_report(results_dir: os.PathLike, *, sources: Optional[dict] = None, timings: Optional[dict] = None,
                 quick: bool = False) -> Path:
    """Write ``<results_dir>/REPORT.md`` from whatever results are saved there."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Mini project report (regenerated by mp_jax)", "",
             f"Generated {datetime.datetime.now().isoformat(timespec='seconds')}"
             + (" with `--quick` (tiny settings: the numbers are not meaningful)" if quick else "") + ".", "",
             "Every model is trained with hand-derived gradients (checked against `jax.grad` in the test suite).", "",
             "## Data", ""]
    for q in ("q1", "q2", "q3"):
        m = _load(results_dir / q) or {}
        line = (sources or {}).get(q)
        if not line and isinstance(m.get("data"), dict):
            line = m["data"].get("source")
        if line:
            lines.append(f"- {q}: {line}")
    lines += ["", "## Software and device", ""] + environment()
    trained = [line for q in ("q1", "q2", "q3") if (line := training_line(q, _load(results_dir / q) or {}))]
    if trained:
        lines += ["", "Training time: " + "; ".join(trained) + "."]
    if timings:
        lines += ["", "Wall time of the call that wrote this report: "
                  + ", ".join(f"{q} {s:.0f} s" for q, s in timings.items()) + "."]
    lines.append("")
    for section in (q1_section, q2_section, q3_section):
        lines += section(results_dir / section.__name__[:2])
    path = results_dir / "REPORT.md"
    if distributed.is_writer():  # atomically: a reader sees the old report or the new one
        atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    from experiments.common import Parser

    p = Parser(prog="python -m experiments.report", description=__doc__)
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    cli.add_debug_flag(p)
    args = p.parse_args(argv)
    if not args.results_dir.is_dir():
        raise UserError(f"--results-dir {args.results_dir}: no such folder",
                        hint="Run python -m experiments first, or give the folder it wrote to.")
    print(write_report(args.results_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
