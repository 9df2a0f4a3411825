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

from experiments import findings
from mp_jax.runtime import atomic, cli
from mp_jax.engine import distributed
from mp_jax.runtime.errors import UserError


def _load(qdir: Path) -> Optional[dict]:
    p = qdir / "metrics.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


class Figures:
    """Figure numbers through the whole document, in the order the figures appear."""

    def __init__(self):
        self.count = 0

    def add(self, lines: list, qdir: Path, name: str, caption: str, used: set) -> Optional[int]:
        """Append figure ``name`` of ``qdir`` (when it exists) as "Figure N: caption"; returns N."""
        if not (qdir / name).exists():
            return None
        self.count += 1
        text = f"Figure {self.count}: {caption}"
        lines += [f"![{text}]({qdir.name}/{name})", "", f"*{text}*", ""]
        used.add(name)
        return self.count


def _text(lines: list, qdir: Path, name: str, used: set, title: Optional[str] = None) -> None:
    p = qdir / name
    if p.exists():
        if title:
            lines += [f"**{title}**", ""]
        body = p.read_text().rstrip()
        lines += (body.splitlines() if name.endswith(".md") else ["```", *body.splitlines(), "```"]) + [""]
        used.add(name)


def _rest(lines: list, qdir: Path, used: set, figs: Figures) -> None:
    for name in sorted(p.name for p in qdir.glob("*.png") if p.name not in used):
        figs.add(lines, qdir, name, name[:-4].replace("_", " "), used)


def _findings(lines: list, sentences: list) -> None:
    """A findings paragraph (computed sentences, :mod:`experiments.findings`)."""
    if sentences:
        lines += ["**Findings.** " + " ".join(sentences), ""]


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
def _unit_table(lines: list, records, columns: tuple) -> None:
    """A Q1 study's table: ``columns`` ((header, record key) pairs), then the held-out MSE
    ratio and the unit census of each record."""
    if not records:
        return
    heads = [h for h, _ in columns] + ["held-out MSE ratio", "noise units", "dead units", "duplicate units"]
    lines += ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for r in records:
        cells = [_fmt(r.get(k)) for _, k in columns] + [_fmt(r.get("heldout_mse_ratio"))]
        cells += [str(r.get(k, "?")) for k in ("noise_units", "dead_units", "duplicate_units")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")


def q1_section(qdir: Path, figs: Figures) -> list:
    m = _load(qdir)
    lines = ["## Q1 — Sparse autoencoder on natural-image patches", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q1`).*", ""]
    used: set = set()
    sigma = (m.get("data") or {}).get("sigma")
    lines += ["### a) Preprocessing", "",
              "Each RGB patch becomes gray, loses its own mean, is clipped at ±3σ (σ over the whole set"
              + (f", here σ = {_fmt(sigma)}" if isinstance(sigma, float) else "") + ") and is mapped to [0.1, 0.9], "
              "the range of the sigmoid output ([docs/autoencoder.md](../docs/autoencoder.md#preprocessing)):", "",
              "$$ g = 0.2126 R + 0.7152 G + 0.0722 B, \\qquad x = 0.1 + 0.8 \\cdot "
              "\\frac{\\mathrm{clip}(g - \\bar g, -3\\sigma, 3\\sigma) + 3\\sigma}{6\\sigma} $$", ""]
    figs.add(lines, qdir, "patches_rgb.png", "200 random 16×16 RGB patches", used)
    figs.add(lines, qdir, "patches_preprocessed.png", "the same 200 patches after preprocessing", used)
    lines += ["### b) Training", "",
              "The autoencoder (tied weights: the decoder uses $W^\\top$) encodes $h = \\sigma(x W + b_1)$ and "
              "decodes $o = \\sigma(h W^\\top + b_2)$; its cost (AE8) adds Tikhonov decay and a KL sparsity penalty on "
              "the mean activation $\\hat\\rho_b$ of each hidden unit ([cost](../docs/autoencoder.md#cost)); the "
              "backward pass (AE10, AE12, AE13, AE16; [step by step](../docs/autoencoder.md#backward-step-by-step)) "
              "enters the sparsity term into every example's $\\delta_h$ as $s / N$, since $\\hat\\rho_b$ is a mean "
              "over the N examples:", "",
              "$$ J = \\frac{1}{2N} \\sum_n \\lVert x_n - o_n \\rVert^2 + \\lambda \\lVert W \\rVert_F^2 + "
              "\\beta \\sum_b \\mathrm{KL}(\\rho \\parallel \\hat\\rho_b) $$", "",
              "$$ \\delta_o = \\frac{o - x}{N} \\odot o \\odot (1 - o), \\qquad "
              "s_b = \\beta \\left( -\\frac{\\rho}{\\hat\\rho_b} + \\frac{1 - \\rho}{1 - \\hat\\rho_b} \\right), \\qquad "
              "\\delta_h = \\left( \\delta_o W + \\frac{s}{N} \\right) \\odot h \\odot (1 - h) $$", "",
              "$$ \\frac{\\partial J}{\\partial W} = x^\\top \\delta_h + \\left( h^\\top \\delta_o \\right)^\\top + "
              "2 \\lambda W $$", ""]
    if m.get("optimizers"):
        lines += ["| optimizer | final cost | reconstruction | weight decay | sparsity | mean ρ̂ | held-out MSE / "
                  "mean-patch MSE | noise units | dead units | duplicate units | time |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, r in m["optimizers"].items():
            t = r.get("cost_terms", {})
            lines.append(f"| {k} | {_fmt(r.get('final_cost'))} | {_fmt(t.get('reconstruction'))} | "
                         f"{_fmt(t.get('weight_decay'))} | {_fmt(t.get('sparsity'))} | "
                         f"{_fmt(r.get('mean_hidden_activation'))} (ρ = {_fmt(r.get('rho', m.get('rho')))}) | "
                         f"{_fmt(r.get('heldout_mse_ratio'))} | {r.get('noise_units', '?')} | "
                         f"{r.get('dead_units', '?')} | {r.get('duplicate_units', '?')} | "
                         f"{_trained(r.get('seconds'), r.get('loaded', False))} |")
        lines.append("")
    figs.add(lines, qdir, "optimizer_curves.png", "training cost J of the two optimizers", used)
    figs.add(lines, qdir, "reconstructions.png", "held-out patches (top) and the default model's reconstructions", used)
    _findings(lines, findings.q1_training(m))
    lines += ["### c) Hidden features and the sparsity parameters (β, ρ)", "",
              "Each panel shows every hidden unit's weights $W_{:,j}$ as a 16×16 image. ρ sets the target mean "
              "activation of a unit and β how hard the KL term pulls $\\hat\\rho_j$ towards it; a *noise* unit's "
              "image has no spatial structure, a *dead* unit never responds, a *duplicate* repeats another unit.", ""]
    figs.add(lines, qdir, "features.png", "hidden-unit weights of the default model", used)
    figs.add(lines, qdir, "features_optimizers.png", "the same model trained by each optimizer", used)
    figs.add(lines, qdir, "features_beta_rho.png", "hidden-unit weights for five (β, ρ)", used)
    _unit_table(lines, m.get("beta_rho"), (("β", "beta"), ("ρ", "rho"), ("mean ρ̂", "mean_hidden_activation")))
    _findings(lines, findings.q1_beta_rho(m))
    lines += ["### d) L_hid × λ sweep", "",
              "More hidden units can represent more distinct features; a larger λ shrinks the weights, trading "
              "noisy, high-variance features for smooth ones that reconstruct less well (the λ term's gradient "
              "$\\lambda W$ pulls every weight towards 0).", ""]
    figs.add(lines, qdir, "features_sweep.png", "hidden-unit weights for each (L_hid, λ): rows L_hid, columns λ", used)
    _unit_table(lines, m.get("sweep"), (("L_hid", "hidden"), ("λ", "lam"), ("final cost", "final_cost")))
    _findings(lines, findings.q1_sweep(m))
    _rest(lines, qdir, used, figs)
    return lines


# ----------------------------------------------------------------------------- Q2
def q2_section(qdir: Path, figs: Figures) -> list:
    m = _load(qdir)
    lines = ["## Q2 — Neural language model", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q2`).*", ""]
    used: set = set()
    lines += ["### a) Training the three (D, P) settings", "",
              "Three words $w_1, w_2, w_3$ are looked up in the embedding $R \\in \\mathbb{R}^{250 \\times D}$ and "
              "concatenated into $e$; a sigmoid layer of $P$ units and a softmax over the 250 words give the "
              "fourth word's distribution ([docs/language_model.md](../docs/language_model.md#forward)):", "",
              "$$ h = \\sigma(e W_1 + b_1), \\qquad p = \\mathrm{softmax}(h W_2 + b_2), \\qquad "
              "L = -\\frac{1}{N} \\sum_n \\log p_{n, y_n} $$", "",
              "The backward pass ([docs/language_model.md](../docs/language_model.md#backward)) runs "
              "$\\delta_s = (p - \\mathrm{onehot}(y)) / N$, $\\delta_h = \\delta_s W_2^\\top \\odot h (1 - h)$, "
              "$\\delta_e = \\delta_h W_1^\\top$, and adds each of the three slices of $\\delta_e$ into the row of "
              "$R$ of its word (a scatter-add: a word twice in one trigram receives both).", ""]
    for name in findings.q2_settings(m):
        d, p = name[2:].split(",P=")
        figs.add(lines, qdir, f"loss_D{d}_P{p}.png", f"training and validation cross-entropy per epoch, (D, P) = "
                 f"({d}, {p})", used)
    _q2_models_table(lines, m, used)
    _findings(lines, findings.q2_training(m) + findings.q2_overfitting(m))
    lines += ["### b) Predictions", ""]
    _text(lines, qdir, "anchors.txt", used, "The course's trigrams (or trigrams that play their roles)")
    _text(lines, qdir, "samples.txt", used, "Five random test trigrams: top-10 fourth words")
    figs.add(lines, qdir, "samples.png", "top-10 predictions of the chosen model for five random test trigrams", used)
    _text(lines, qdir, "neighbours.txt", used, "Nearest words in embedding space")
    _findings(lines, findings.q2_predictions(m))
    if m.get("tuned") or m.get("by_context_frequency"):
        lines += ["### c) A tuned network against counting", ""]
        t = m.get("tuned") or {}
        if t:
            lines += [f"A fourth network of the same family ({findings._setting_text(t.get('setting') or {})}; "
                      "dropout and its backward: [docs/language_model.md](../docs/language_model.md"
                      "#dropout-on-the-hidden-layer)). Its settings were chosen on the validation split alone by the "
                      "search in `Q2Config`'s docstring (`python -m experiments.q2_language_model --select search` "
                      f"runs it again); it was then trained once per seed ({len(t.get('seeds') or [0])} here; "
                      "`--seeds K` for more) and scored once on the test split.", ""]
            figs.add(lines, qdir, "loss_tuned.png", f"the tuned network's training (with dropout) and validation "
                     f"cross-entropy per epoch, seed {(t.get('seeds') or [0])[0]}", used)
        figs.add(lines, qdir, "context_frequency.png", "test cross-entropy by how often the test trigram was the "
                 "context of a training 4-gram: the networks against Kneser-Ney", used)
        _findings(lines, findings.q2_tuned(m) + findings.q2_context_frequency(m))
    _rest(lines, qdir, used, figs)
    return lines


Q2_ROW_NAMES = {"tuned": "tuned network", "kneser_ney": "Kneser-Ney (4-gram counts)"}


def _q2_value(r: dict, key: str, nd: int = 4) -> str:
    v = r.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "–"
    std = r.get(f"{key}_std") if len(r.get(f"{key}_per_seed") or ()) > 1 else None
    return f"{v:.{nd}f}" + (f" ± {std:.{nd}f}" if isinstance(std, (int, float)) else "")


def _q2_models_table(lines: list, m: dict, used: set) -> None:
    """Q2's models side by side: the course's three (D, P), the tuned network, Kneser-Ney and the
    mixtures; cross-entropies in nats (mean ± std over seeds where there are several)."""
    names = findings.q2_settings(m) + [k for k in ("tuned", "kneser_ney", "interpolated", "interpolated_tuned")
                                       if isinstance(m.get(k), dict)]
    if not names:
        return
    lines += ["**Test set: the course's three networks, the tuned network, the Kneser-Ney count model and their "
              "mixtures** (cross-entropy in nats; mean ± sample standard deviation over seeds where there are "
              "several)", "",
              "| model | parameters | training CE | validation CE | test CE | perplexity | top-1 | top-10 | epochs |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k in names:
        r = m[k]
        if k.startswith("interpolated"):
            parts = " + ".join(Q2_ROW_NAMES.get(c, f"({c[2:].replace(',P=', ', ')})" if c.startswith("D=") else c)
                               for c in r.get("components") or [])
            label = f"mixture: {parts}" + (f" (weight {r['weight']:.2f})" if isinstance(r.get("weight"), float) else "")
        else:
            label = Q2_ROW_NAMES.get(k, f"({k[2:].replace(',P=', ', ')})" if k.startswith("D=") else k)
        n = r.get("n_params", findings.q2_n_params(m, k) if k.startswith("D=") else None)
        epochs = (f"best {r['best_epoch']} of {r['epochs_run']}" if isinstance(r.get("best_epoch"), int) else "–")
        top1 = f"{100 * r['top1_accuracy']:.1f} %" if isinstance(r.get("top1_accuracy"), float) else "–"
        top10 = f"{100 * r['top10_accuracy']:.1f} %" if isinstance(r.get("top10_accuracy"), float) else "–"
        ppl = f"{r['perplexity']:.2f}" if isinstance(r.get("perplexity"), float) else "–"
        lines.append(f"| {label} | {f'{n:,}' if isinstance(n, int) else '–'} | {_q2_value(r, 'train_cross_entropy')} | "
                     f"{_q2_value(r, 'val_cross_entropy')} | {_q2_value(r, 'test_cross_entropy')} | {ppl} | {top1} | "
                     f"{top10} | {epochs} |")
    lines.append("")
    used.add("table.txt")


# ----------------------------------------------------------------------------- Q3
def _confusion_table(names, cm) -> list:
    short = [n[:5] for n in names]
    out = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(names) + 1) + "|"]
    for n, row in zip(names, cm):
        out.append(f"| {n} | " + " | ".join(str(int(v)) for v in row) + " |")
    return out + [""]


CELL_TABLE = [
    "| cell | forward (one step) | the path the gradient takes back through time |",
    "|---|---|---|",
    "| RNN | $h_t = \\tanh(x_t W_x + h_{t-1} W_h + b)$ | $\\partial h_t / \\partial h_{t-1} = "
    "\\mathrm{diag}(1 - h_t^2) W_h^\\top$: a product of 150 such factors shrinks or grows geometrically |",
    "| LSTM | $i, f, o = \\sigma(\\cdot)$, $g = \\tanh(\\cdot)$ of $x_t W_x + h_{t-1} W_h + b$; "
    "$c_t = f \\odot c_{t-1} + i \\odot g$, $h_t = o \\odot \\tanh(c_t)$ | $\\partial c_t / \\partial c_{t-1} = "
    "\\mathrm{diag}(f_t)$: the cell state carries the gradient back scaled only by the forget gate |",
    "| GRU | $z, r = \\sigma(\\cdot)$, $n = \\tanh(x_t W_{xn} + r \\odot (h_{t-1} W_{hn} + b_{hn}) + b_{xn})$; "
    "$h_t = (1 - z) \\odot n + z \\odot h_{t-1}$ | the direct term $\\mathrm{diag}(z_t)$ of "
    "$\\partial h_t / \\partial h_{t-1}$ passes the gradient through unchanged where $z \\approx 1$ |",
]


def q3_section(qdir: Path, figs: Figures) -> list:
    m = _load(qdir)
    lines = ["## Q3 — RNN, LSTM and GRU for activity recognition", ""]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q3`).*", ""]
    used: set = set()
    data = m.get("data") or {}
    names = data.get("class_names") or []
    desc = data.get("class_descriptions") or {}
    if names:
        lines += ["Classes: " + "; ".join(f"{n} = {desc.get(n, n)}" for n in names) + ".", ""]
    proto = m.get("protocol") or {}
    if proto:
        lines += ["Protocol ([docs/training.md](../docs/training.md#q3s-protocol)):", ""]
        lines += [f"- {k}: {v}" for k, v in proto.items()] + [""]
    lines += ["### a) The three cells and backpropagation through time", "",
              "Each cell reads the 150 steps of a window; an MLP head (ReLU layer, softmax) classifies $h_T$. "
              "Backpropagation through time carries $\\partial L / \\partial h_t$ backwards from $t = T$ "
              "([docs/recurrent.md](../docs/recurrent.md#through-time)):", "",
              "$$ \\frac{\\partial L}{\\partial h_{t-1}} = \\frac{\\partial L}{\\partial h_t} "
              "\\frac{\\partial h_t}{\\partial h_{t-1}}, \\qquad "
              "\\frac{\\partial L}{\\partial W} = \\sum_{t=1}^{T} \\frac{\\partial L}{\\partial h_t} "
              "\\frac{\\partial h_t}{\\partial W}\\Big|_{\\text{step } t} $$", "",
              "so the gradient that reaches step 1 is a product of T − 1 Jacobians; the cells differ in what that "
              "product looks like ([RNN](../docs/recurrent.md#why-gradients-vanish-or-explode), "
              "[LSTM cell-state path](../docs/recurrent.md#the-cell-state-path), [GRU](../docs/recurrent.md#gru)):",
              "", *CELL_TABLE, ""]
    figs.add(lines, qdir, "gradient_flow.png", "mean ‖∂ℓ/∂h_t‖ against t for the three cells, at initialisation "
             "and after training (manual BPTT)", used)
    _findings(lines, findings.q3_gradients(m))
    lines += ["### b) Accuracy, loss and training time", ""]
    _text(lines, qdir, "comparison.md", used)
    figs.add(lines, qdir, "loss_all.png", "training (dashed) and validation loss per epoch of the three validation "
             "runs", used)
    for cell in ("rnn", "lstm", "gru"):
        if m.get(cell):
            figs.add(lines, qdir, f"{cell}_loss.png", f"{cell.upper()}: loss per epoch of the validation run and of "
                     f"the refit", used)
    _findings(lines, findings.q3_results(m))
    lines += ["### c) Confusion matrices", ""]
    for cell in ("rnn", "lstm", "gru"):
        r = m.get(cell)
        if not r:
            continue
        figs.add(lines, qdir, f"{cell}_confusion.png", f"{cell.upper()}: training and test confusion matrices "
                 "(counts and row-normalized)", used)
        if names and r.get("confusion_test"):
            lines += [f"{cell.upper()} test confusion matrix (counts):", ""] + _confusion_table(names, r["confusion_test"])
    figs.add(lines, qdir, "baseline_confusion.png", "the baseline (logistic regression on window statistics): "
             "confusion matrices", used)
    _findings(lines, findings.q3_confusions(m))
    _rest(lines, qdir, used, figs)
    return lines


# ----------------------------------------------------------------------------- the two recipes
RECIPE_HOWTO = ("*The course handout's recipe has not been run here: `python -m experiments --recipe handout` (or "
                "`--only q2,q3`) writes `q2_handout/` and `q3_handout/` beside these results, and this section then "
                "sets the two side by side ([docs/recipes.md](../docs/recipes.md)).*")


def _pct(x) -> str:
    return f"{100 * x:.1f} %" if isinstance(x, (int, float)) else "–"


def _num(x, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if isinstance(x, (int, float)) else "–"


def _q2_cell(r: Optional[dict]) -> str:
    if not r:
        return "not run"
    return f"CE {_num(r.get('test_cross_entropy'))}, top-1 {_pct(r.get('top1_accuracy'))}"


def _q3_cell(r: Optional[dict]) -> str:
    if not r:
        return "not run"
    n = len(r.get("seeds") or [])
    spread = f" ± {100 * r['test_accuracy_std']:.1f}" if n > 1 and isinstance(r.get("test_accuracy_std"), float) else ""
    text = (f"{_pct(r.get('test_accuracy'))}{spread}, loss {_num(r.get('test_loss'))} "
            f"({'mean of ' + str(n) + ' seeds' if n > 1 else 'one seed'})")
    return text + (f"; diverged ({r['diverged']})" if r.get("diverged") else "")


def recipe_rows(default: Optional[dict], handout: Optional[dict], question: str) -> list:
    """``[(model, default, handout)]`` of ``question``'s test numbers under the two recipes, from
    their ``metrics.json`` (either may be None): Q2 per (D, P) network, Q3 per cell and the baseline."""
    default, handout = default or {}, handout or {}
    if question == "q2":
        names = list(dict.fromkeys(n for m in (default, handout) for n in findings.q2_settings(m)))
        return [(n, _q2_cell(default.get(n)), _q2_cell(handout.get(n))) for n in names]
    models = [k for k in ("rnn", "lstm", "gru", "baseline") if default.get(k) or handout.get(k)]
    return [(k.upper() if k != "baseline" else "baseline (logistic)", _q3_cell(default.get(k)), _q3_cell(handout.get(k)))
            for k in models]


def recipe_section(results_dir: Path) -> list:
    """Both recipes side by side (test numbers from each ``metrics.json``) when a handout run's
    metrics are in ``results_dir``; else one line saying how to produce them."""
    lines = ["## The course handout's recipe beside the default", ""]
    runs = {q: (_load(results_dir / q), _load(results_dir / f"{q}_handout")) for q in ("q2", "q3")}
    if not any(h for _, h in runs.values()):
        return lines + [RECIPE_HOWTO, ""]
    lines += ["The same data and code trained with the defaults and with the course handout's settings "
              "(`--recipe handout`; where the two differ and why: [docs/recipes.md](../docs/recipes.md)). Test "
              "numbers; Q2: cross-entropy in nats and top-1 accuracy, Q3: accuracy and loss.", ""]
    for q, title in (("q2", "Q2 networks"), ("q3", "Q3 models")):
        default, handout = runs[q]
        rows = recipe_rows(default, handout, q)
        if not rows:
            continue
        lines += [f"**{title}**", "", "| model | default | handout |", "|---|---|---|"]
        lines += [f"| {m} | {a} | {b} |" for m, a, b in rows] + [""]
        if handout and handout.get("protocol"):
            lines += ["Handout protocol: " + "; ".join(f"{k}: {v}" for k, v in handout["protocol"].items()), ""]
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
    figs = Figures()
    for section in (q1_section, q2_section, q3_section):
        lines += section(results_dir / section.__name__[:2], figs)
    lines += recipe_section(results_dir)
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
