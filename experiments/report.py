"""``<results-dir>/REPORT.md``: the mini-project report regenerated from saved results.

Follows the structure of the course report (Q1 a-d, Q2 a-b, Q3 a-c). Everything comes
from the files the experiments saved (``metrics.json``, PNGs, text tables), so the report
can be rebuilt at any time, and a rebuild of the same results gives the same text:
``python -m experiments.report [--results-dir R] [the main job's flags]``.

Each part is read from one results folder, the one its configuration names
(:meth:`experiments.config.RunOptions.results_name`): ``REPORT.md`` shows the default
configuration's folders (``q1/``, ``q2/``, ``q3/``), the report of other flags
(``--quick``, ``--seed 1``, ...) is ``REPORT_<what differs>.md`` beside it
(:func:`experiments.layout.report_plan`). Each part's header says which run made it
(:func:`section_header`: the folder, quick or full, what differs from the defaults, the
configuration's hash, the data's digest, when it finished) and which other results of the
question are in the folder; the software and devices are those the runs recorded
(:func:`environment`), never those of the process that rebuilds the report. A figure or table
that the run which wrote ``metrics.json`` did not write (another run's, left in the folder) is
not shown (:func:`made_by_run`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from experiments import findings
from mp_jax import docs_equations
from mp_jax.runtime import atomic, cli
from mp_jax.engine import distributed
from mp_jax.runtime.errors import UserError

QUESTIONS = ("q1", "q2", "q3")
_LOADED: dict = {}  # metrics.json path -> ((mtime, size), content): read once per version of the file


# ----------------------------------------------------------------------------- equations
# Every equation of the report is quoted from docs/ by its label (mp_jax.docs_equations): the
# report writes no equation of its own, so what it shows is what the pages derive and the code
# computes. Each list is one display block of the report, in its order.
Q1_PREPROCESSING = ("AE1", "AE2", "AE3", "AE4")
Q1_FORWARD = ("AE5", "AE6", "AE7", "AE8", "AE9")
#: The autoencoder's backward, as the code computes it: extended by every label the backward
#: gains in docs/autoencoder.md.
Q1_BACKWARD = ("AE10", "AE11", "AE12", "AE13", "AE17", "AE18", "AE19", "AE20", "AE21", "AE22", "AE14", "AE15",
               "AE16")
Q2_FORWARD = ("LM1", "LM2", "LM3", "LM4")
Q2_BACKWARD = ("LM5", "LM6", "LM7", "LM8", "LM9", "LM10")
Q2_TRAINING = ("CLIP3", "CLIP4", "CLIP6")  # SGD with momentum, early stopping
Q3_HEAD_FORWARD = ("HEAD1", "HEAD2", "HEAD3")
Q3_HEAD_BACKWARD = ("HEAD4", "HEAD5", "HEAD6")
Q3_THROUGH_TIME = ("BPTT1", "BPTT2", "BPTT3", "BPTT5")
#: Per cell: (forward, one step of the backward, the factor that carries dh back through time).
Q3_CELLS = {
    "rnn": (("RNN1", "RNN2"), ("RNN3", "RNN4", "RNN5"), ("RNN6",)),
    "lstm": (("LSTM1", "LSTM2", "LSTM3", "LSTM4"),
             ("LSTM5", "LSTM6", "LSTM7", "LSTM8", "LSTM9", "LSTM10", "LSTM11", "LSTM12"), ("LSTM14",)),
    "gru": (("GRU1", "GRU2", "GRU3", "GRU4", "GRU5"), ("GRU6", "GRU7", "GRU8", "GRU9", "GRU10", "GRU11"), ()),
}
Q3_FLOW = ("BPTT6",)  # the gradient-flow curve of the figure


def quoted_labels() -> tuple:
    """Every label the report quotes, in the order of its sections."""
    cells = tuple(label for parts in Q3_CELLS.values() for part in parts for label in part)
    return (Q1_PREPROCESSING + Q1_FORWARD + Q1_BACKWARD + Q2_FORWARD + Q2_BACKWARD + Q2_TRAINING + Q3_HEAD_FORWARD
            + Q3_HEAD_BACKWARD + Q3_THROUGH_TIME + cells + Q3_FLOW)


def _equations(lines: list, labels) -> None:
    """Append the display equations ``labels``, each quoted from docs/ byte for byte."""
    for label in labels:
        lines += [docs_equations.quote(label), ""]


def _load(qdir: Path) -> Optional[dict]:
    p = Path(qdir) / "metrics.json"
    try:
        st = p.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _LOADED.get(str(p))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        m = json.loads(p.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    _LOADED[str(p)] = (stamp, m)
    return m


def _provenance(m: Optional[dict]) -> Optional[dict]:
    p = m.get("provenance") if isinstance(m, dict) else None
    return p if isinstance(p, dict) else None


def made_by_run(qdir: Path, name: str) -> bool:
    """Whether file ``name`` of ``qdir`` is the one the run that wrote ``qdir/metrics.json``
    wrote (its digest is in the run's list of files). A ``metrics.json`` that predates the
    list vouches for every file."""
    files = (_provenance(_load(qdir)) or {}).get("files")
    if not isinstance(files, dict):
        return True
    from experiments.provenance import file_digest

    return name in files and (Path(qdir) / name).is_file() and file_digest(Path(qdir) / name) == files[name]


def _question_of(folder_name: str) -> str:
    return folder_name.split("_")[0].split(".")[0]


def _setting(v) -> str:
    if isinstance(v, list):
        return ", ".join(_setting(x) if not isinstance(x, list) else " ".join(map(_setting, x)) for x in v) or "none"
    if isinstance(v, float):
        return f"{v:g}"
    if v is None:
        return "none"
    return str(v).lower() if isinstance(v, bool) else str(v)


def describe_run(m: Optional[dict]) -> str:
    """What made a folder's results, in a few words: "a quick run (tiny settings ...)" or "a
    full run", the recipe, and the settings that differ from its defaults."""
    p = _provenance(m)
    if p is None:
        s = (m or {}).get("settings") or {}
        quick = bool(s.get("is_quick") or (m or {}).get("quick"))
        return ("a quick run" if quick else "a run") + " that recorded no provenance (made by an earlier version)"
    text = "a quick run (tiny settings: its numbers are not meaningful)" if p.get("quick") else "a full run"
    text += " of the course handout's recipe" if p.get("recipe") == "handout" else ""
    differs = p.get("differs") or {}
    if differs:
        text += ", with " + "; ".join(f"{k} {_setting(v)}" for k, v in differs.items())
    if p.get("matmul_precision") not in (None, "highest"):
        text += f", float32 matmuls at {p['matmul_precision']} precision"
    return text


def other_results(results_dir: Path, question: str, shown: str) -> list:
    """``[(folder name, description)]`` of the other results of ``question`` in ``results_dir``
    (other configurations' folders, and folders moved aside by ``--fresh``)."""
    out = []
    for d in sorted(Path(results_dir).iterdir()) if Path(results_dir).is_dir() else ():
        if d.name == shown or not d.is_dir() or _question_of(d.name) != question or d.name.startswith("."):
            continue
        if d.name != question and not d.name.startswith((f"{question}_", f"{question}.old-")):
            continue
        m = _load(d)
        if m is None:
            continue
        aside = ".old-" in d.name
        out.append((d.name, ("moved aside by --fresh: " if aside else "") + describe_run(m)))
    return out


def section_header(qdir: Path, m: Optional[dict]) -> list:
    """The lines under a part's title: which run made it (folder, quick or full, what differs
    from the defaults, the configuration's hash, the data's digest, when it finished), the
    files left in its folder by another run (not shown), and the other results of the
    question in the results folder."""
    qdir = Path(qdir)
    lines = []
    if m is not None:
        p = _provenance(m) or {}
        facts = [f"config {p['config_hash']}" if p.get("config_hash") else None,
                 f"data {p['data_digest']}" if p.get("data_digest") else None,
                 f"finished {p['finished']}" if p.get("finished") else None]
        facts = [f for f in facts if f]
        lines.append(f"*Made by `{qdir.name}/`: " + "; ".join([describe_run(m), *facts]) + ".*")
        stale = sorted(n for n in (x.name for x in qdir.iterdir() if x.is_file())
                       if n.endswith((".png", ".md", ".txt")) and not made_by_run(qdir, n))
        if stale:
            lines.append("*Not shown: " + ", ".join(f"`{n}`" for n in stale) + " (not written by the run that wrote "
                         "this `metrics.json`).*")
    others = other_results(qdir.parent, _question_of(qdir.name), qdir.name)
    if others:
        lines.append("*Also in this results folder: " + "; ".join(f"`{n}/`, {d}" for n, d in others) + ".*")
    return lines + [""] if lines else []


class Figures:
    """Figure numbers through the whole document, in the order the figures appear."""

    def __init__(self):
        self.count = 0

    def add(self, lines: list, qdir: Path, name: str, caption: str, used: set) -> Optional[int]:
        """Append figure ``name`` of ``qdir`` (when it exists) as "Figure N: caption"; returns N."""
        if not (qdir / name).exists() or not made_by_run(qdir, name):
            return None
        self.count += 1
        text = f"Figure {self.count}: {caption}"
        lines += [f"![{text}]({qdir.name}/{name})", "", f"*{text}*", ""]
        used.add(name)
        return self.count


def _text(lines: list, qdir: Path, name: str, used: set, title: Optional[str] = None) -> None:
    p = qdir / name
    if p.exists() and made_by_run(qdir, name):
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


def _environment_of(p: dict) -> list:
    """The software and device lines of one run's provenance."""
    pk = p.get("packages") or {}
    git = p.get("git")
    d = p.get("devices") or {}
    precision = p.get("matmul_precision")
    lines = [f"- Python {p.get('python', '?')} on {p.get('system', '?')}, {p.get('cpu_count', '?')} CPU cores"]
    if pk:
        lines.append("- " + ", ".join(f"{k} {v}" for k, v in pk.items()))
    if git:
        lines.append(f"- code: git commit {str(git.get('commit'))[:12]}"
                     + (" with uncommitted changes" if git.get("dirty") else ""))
    if d:
        kinds = ", ".join(f"{d.get('platform')}:{k}" for k in d.get("kinds") or ["?"])
        lines.append(f"- JAX devices: {d.get('count')} × {kinds}"
                     + (f", {d['processes']} processes" if (d.get("processes") or 1) > 1 else "")
                     + (f"; batches split over {d['split_over']} of them (`--devices`)" if d.get("split_over") else ""))
    lines.append("- float32 matmuls: " + ("full precision" if precision == "highest" else
                                          "JAX's default (TensorFloat-32 on recent NVIDIA GPUs)" if precision == "default"
                                          else str(precision)) + " (`--matmul-precision`)")
    return lines


def environment(runs: dict) -> list:
    """The software and devices that made the parts shown, from each run's ``metrics.json``
    (``{question: metrics or None}``), never from the process that writes the report: one
    list when every part shares them, else one per group of parts. The packages are those
    the run imported."""
    groups: dict = {}
    missing = []
    for q, m in runs.items():
        p = _provenance(m)
        if p is None:
            if m is not None:
                missing.append(q)
            continue
        groups.setdefault(json.dumps(_environment_of(p)), []).append(q)
    lines = []
    for text, qs in groups.items():
        if len(groups) > 1 or missing:
            lines += [f"{', '.join(qs)}:", ""]
        lines += json.loads(text) + ([""] if len(groups) > 1 or missing else [])
    if missing:
        lines.append(f"- {', '.join(missing)}: not recorded (written by an earlier version; run again to record it)")
    return lines or ["- no run recorded its environment"]


# ----------------------------------------------------------------------------- Q1
SETTING_KEYS = ("hidden", "lam", "beta", "rho")  # what names a Q1 setting (the rest is measured)


def _unit_table(lines: list, records, columns: tuple) -> None:
    """A Q1 study's table: ``columns`` ((header, record key) pairs), then the held-out MSE
    ratio and the unit census of each record."""
    if not records:
        return
    heads = [h for h, _ in columns] + ["held-out MSE ratio", "noise units", "dead units", "duplicate units"]
    lines += ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for r in records:
        diverged = r.get("diverged")
        cells = [_fmt(r.get(k)) if not diverged or k in SETTING_KEYS else "–" for _, k in columns]
        if diverged:  # a member that diverged: a result of the study, with where and why
            cells += [f"diverged: {diverged.get('reason', '')}"] + ["–"] * 3
        else:
            cells += [_fmt(r.get("heldout_mse_ratio"))]
            cells += [str(r.get(k, "?")) for k in ("noise_units", "dead_units", "duplicate_units")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")


def _q1_optimizer_table(lines: list, m: dict) -> None:
    """Part (b)'s table: the default setting by each optimiser, J and its terms, ρ̂, the units."""
    if not m.get("optimizers"):
        return
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


def _q1_handout(qdir: Path, m: dict, default: Optional[dict], figs: Figures) -> list:
    """Q1 under the course handout's recipe (``<question>_handout/``: SGD on 32-patch minibatches
    trains the default model and both studies), beside the default recipe's section."""
    used: set = set()
    lines = ["### The course handout's recipe: SGD for the model and both studies", "",
             f"The same question trained with the course handout's settings (`--recipe handout`, results in "
             f"`{qdir.name}/`; [docs/recipes.md](../docs/recipes.md)): minibatch SGD with momentum makes the default "
             "model and every member of (c) and (d), where the default recipe uses full-batch L-BFGS.", ""]
    _q1_optimizer_table(lines, m)
    _findings(lines, findings.q1_training(m))
    figs.add(lines, qdir, "features_beta_rho.png", "handout's recipe (SGD): hidden-unit weights for five (β, ρ)", used)
    _unit_table(lines, m.get("beta_rho"), (("β", "beta"), ("ρ", "rho"), ("mean ρ̂", "mean_hidden_activation")))
    _findings(lines, findings.q1_beta_rho(m, default))
    figs.add(lines, qdir, "features_sweep.png", "handout's recipe (SGD): hidden-unit weights for each (L_hid, λ)", used)
    _unit_table(lines, m.get("sweep"), (("L_hid", "hidden"), ("λ", "lam"), ("final cost", "final_cost")))
    _findings(lines, findings.q1_sweep(m))
    return lines


def q1_section(qdir: Path, figs: Figures, handout_dir: Optional[Path] = None) -> list:
    m = _load(qdir)
    handout = _load(handout_dir) if handout_dir is not None else None
    only_handout = m is None and handout is not None
    if only_handout:  # only the handout's recipe ran: its results are the section
        m, qdir, handout = handout, handout_dir, None
    lines = ["## Q1 — Sparse autoencoder on natural-image patches", "", *section_header(qdir, m)]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q1`).*", ""]
    if only_handout:
        lines += [f"*The course handout's recipe (`--recipe handout`: SGD in place of L-BFGS), results in "
                  f"`{qdir.name}/`; the default recipe has not been run here.*", ""]
    used: set = set()
    sigma = (m.get("data") or {}).get("sigma")
    lines += ["### a) Preprocessing", "",
              "Each RGB patch becomes grey (AE1), loses its own mean (AE2), is clipped at three times one scale for "
              "the whole set (AE3" + (f"; here that scale is {_fmt(sigma)}" if isinstance(sigma, float) else "")
              + ") and is mapped to [0.1, 0.9], the range of the sigmoid output (AE4) "
              "([docs/autoencoder.md](../docs/autoencoder.md#preprocessing)):", ""]
    _equations(lines, Q1_PREPROCESSING)
    figs.add(lines, qdir, "patches_rgb.png", "200 random 16×16 RGB patches", used)
    figs.add(lines, qdir, "patches_preprocessed.png", "the same 200 patches after preprocessing", used)
    lines += ["### b) Training", "",
              "The autoencoder encodes and decodes with sigmoid layers; with tied weights (the default) one matrix "
              "$W$ serves both: the encoder's $W_1$ is $W$ and the decoder's $W_2$ is its transpose "
              "([forward](../docs/autoencoder.md#forward)). Its cost $J$ adds Tikhonov decay and a KL sparsity "
              "penalty on the mean activation $\\hat\\rho_b$ of each hidden unit "
              "([cost](../docs/autoencoder.md#cost)):", ""]
    _equations(lines, Q1_FORWARD)
    lines += ["The backward pass, one equation per line of the code's backward "
              "([step by step](../docs/autoencoder.md#backward-step-by-step)). The textbook sparsity term $s$ (AE12) "
              "enters every example's $\\delta_h$ divided by $N$, since $\\hat\\rho_b$ is a mean over the $N$ "
              "examples (AE13); in float32 that product is 0 times infinity wherever a unit's sigmoid underflows on "
              "every example, so the code computes the same quantity in the log domain, finite wherever the "
              "pre-activations are "
              "(AE18-AE22; [why](../docs/autoencoder.md)). The tied $W$ gets the sum of its two uses, decay "
              "$2\\lambda W$ included (AE16):", ""]
    _equations(lines, Q1_BACKWARD)
    _q1_optimizer_table(lines, m)
    figs.add(lines, qdir, "optimizer_curves.png", "training cost J of the two optimizers", used)
    figs.add(lines, qdir, "reconstructions.png", "held-out patches (top) and the default model's reconstructions", used)
    _findings(lines, findings.q1_training(m))
    lines += ["### c) Hidden features and the sparsity parameters (β, ρ)", "",
              "Each panel shows every hidden unit's weights (its column of $W$) as a 16×16 image. $\\rho$ sets the "
              "target mean activation of a unit and $\\beta$ how hard the KL term pulls $\\hat\\rho_b$ towards it; "
              "a *noise* unit's image has no spatial structure, a *dead* unit never responds, a *duplicate* repeats "
              "another unit.", ""]
    figs.add(lines, qdir, "features.png", "hidden-unit weights of the default model", used)
    figs.add(lines, qdir, "features_optimizers.png", "the same model trained by each optimizer", used)
    figs.add(lines, qdir, "features_beta_rho.png", "hidden-unit weights for five (β, ρ)", used)
    _unit_table(lines, m.get("beta_rho"), (("β", "beta"), ("ρ", "rho"), ("mean ρ̂", "mean_hidden_activation")))
    _findings(lines, findings.q1_beta_rho(m, handout))
    lines += ["### d) L_hid × λ sweep", "",
              "More hidden units can represent more distinct features; a larger λ shrinks the weights, trading "
              "noisy, high-variance features for smooth ones that reconstruct less well (the decay term's gradient "
              "$2\\lambda W$ in (AE16) pulls every weight towards 0).", ""]
    figs.add(lines, qdir, "features_sweep.png", "hidden-unit weights for each (L_hid, λ): rows L_hid, columns λ", used)
    _unit_table(lines, m.get("sweep"), (("L_hid", "hidden"), ("λ", "lam"), ("final cost", "final_cost")))
    _findings(lines, findings.q1_sweep(m))
    _rest(lines, qdir, used, figs)
    if handout is not None:
        lines += _q1_handout(handout_dir, handout, m, figs)
    return lines


# ----------------------------------------------------------------------------- Q2
def _q2_training(s: dict) -> list:
    """The training settings of the run that wrote ``metrics.json["settings"]`` (its
    configuration), then the update and the stopping rule quoted from docs/training.md."""
    parts = [f"learning rate {_fmt(s['learning_rate'])}, constant" if "learning_rate" in s else None,
             f"momentum {_fmt(s['momentum'])}" if "momentum" in s else None,
             f"batch {s['batch_size']}" if "batch_size" in s else None,
             f"at most {s.get('max_epochs', s.get('epochs'))} epochs" if ("max_epochs" in s or "epochs" in s) else None,
             f"early stopping on the validation cross-entropy with patience {s['patience']}, the best epoch kept"
             if "patience" in s else None,
             f"weights and biases drawn from a normal distribution of standard deviation {_fmt(s['init_std'])}"
             if "init_std" in s else None]
    if not any(parts):
        return []
    lines = ["Training, as this run was configured: minibatch SGD with momentum (optax's form, "
             "[docs/training.md](../docs/training.md#sgd-with-momentum-as-optax-applies-it)), "
             + "; ".join(x for x in parts if x) + ":", ""]
    _equations(lines, Q2_TRAINING)
    return lines


def q2_section(qdir: Path, figs: Figures) -> list:
    m = _load(qdir)
    lines = ["## Q2 — Neural language model", "", *section_header(qdir, m)]
    if m is None:
        return lines + ["*Not run yet (`python -m experiments --only q2`).*", ""]
    used: set = set()
    lines += ["### a) Training the three (D, P) settings", "",
              "The three words of a trigram are looked up in the embedding $R$ (one row of $D$ numbers per word of "
              "the vocabulary) and laid side by side in $e$; a sigmoid layer of $P$ units and a softmax over the "
              "vocabulary give the fourth word's distribution ([forward](../docs/language_model.md#forward)):", ""]
    _equations(lines, Q2_FORWARD)
    lines += ["The backward pass ([backward](../docs/language_model.md#backward)) ends in a scatter-add: each of the "
              "three blocks of $de$ is added into the row of $R$ of its word, so a word twice in one trigram "
              "receives both (LM10):", ""]
    _equations(lines, Q2_BACKWARD)
    lines += _q2_training(m.get("settings") or {})
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
    "| cell | forward (one step) | backward (one step) | what carries $dh_t$ back to step $t - 1$ |",
    "|---|---|---|---|",
    "| RNN | (RNN1)-(RNN2) | (RNN3)-(RNN5) | the matrix $W_h$ and tanh' at every step (RNN6): a product of such "
    "factors shrinks or grows geometrically (RNN7) |",
    "| LSTM | (LSTM1)-(LSTM4) | (LSTM5)-(LSTM12) | along the cell path, the forget gate $f$ alone, unit by unit "
    "(LSTM12, LSTM14); the path through $W_h$ (LSTM11) behaves like the RNN's |",
    "| GRU | (GRU1)-(GRU5) | (GRU6)-(GRU11) | the first term of (GRU11): the update gate $z$ alone, unit by unit, "
    "beside the paths through $U_n$ (GRU8) and through the gates' blocks of $W_h$ |",
]
CELL_NAMES = {"rnn": ("RNN", "#rnn"), "lstm": ("LSTM", "#lstm"), "gru": ("GRU", "#gru")}


def q3_section(qdir: Path, figs: Figures) -> list:
    m = _load(qdir)
    lines = ["## Q3 — RNN, LSTM and GRU for activity recognition", "", *section_header(qdir, m)]
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
              "Each cell reads the 150 steps of a window; an MLP head (a ReLU layer, then a softmax) classifies the "
              "last state $h_T$ ([the classifier head](../docs/recurrent.md#the-classifier-head)):", ""]
    _equations(lines, Q3_HEAD_FORWARD)
    lines += ["The backward starts at the loss and ends in $dh_T$, which starts the reverse scan:", ""]
    _equations(lines, Q3_HEAD_BACKWARD)
    lines += ["Backpropagation through time carries $dh_t$ (the LSTM also $dc_t$) from the last step $T$ back to "
              "step 1, one step's Jacobian at a time, and sums each weight's per-step terms "
              "([through time](../docs/recurrent.md#through-time)); the gradient that reaches $h_t$ is a product of "
              "Jacobians (BPTT5):", ""]
    _equations(lines, Q3_THROUGH_TIME)
    lines += ["The cells differ in what that product looks like "
              "([why gradients vanish or explode](../docs/recurrent.md#why-gradients-vanish-or-explode), "
              "[the cell-state path](../docs/recurrent.md#the-cell-state-path)):", "", *CELL_TABLE, ""]
    for cell, (forward, backward, path) in Q3_CELLS.items():
        name, anchor = CELL_NAMES[cell]
        lines += [f"**{name}**, forward ([docs/recurrent.md]({'../docs/recurrent.md' + anchor})):", ""]
        _equations(lines, forward)
        lines += [f"{name}, one step of the backward, given $dh_t$"
                  + (" and $dc_t$" if cell == "lstm" else "") + ":", ""]
        _equations(lines, backward + path)
    if (qdir / "gradient_flow.png").exists():
        lines += ["The next figure draws, for each cell, the mean norm over windows of the gradient each window's "
                  "loss sends back to $h_t$:", ""]
        _equations(lines, Q3_FLOW)
    figs.add(lines, qdir, "gradient_flow.png", "$\\gamma_t$ (BPTT6), the mean norm over windows of the gradient "
             "of each window's loss at $h_t$, against t for each cell (and the LSTM with its forget-gate bias at 1, "
             "when run), at initialisation (top) and after training (bottom), from the manual BPTT (solid), with the "
             "slopes predicted from the forward pass: the gated path alone (dashed, BPTT7; the RNN's λ of RNN8) and "
             "the whole step (dotted, BPTT8)", used)
    lines += ["How the predictions are made: [docs/recurrent.md, predicting the slope of the gradient flow]"
              "(../docs/recurrent.md#predicting-the-slope-of-the-gradient-flow).", ""]
    _findings(lines, findings.q3_gradients(m))
    _findings(lines, findings.q3_gradient_slopes(m))
    _findings(lines, findings.q3_gradient_reasons(m))
    for name in findings.q3_ablations(m):
        figs.add(lines, qdir, f"{name}_loss.png", f"training loss per epoch of the LSTM's refit (seed "
                 f"{(m[name].get('seeds') or ['S'])[0]}) with the forget-gate bias at its default and at "
                 f"{m[name].get('forget_bias', '?'):g}", used)
    _findings(lines, findings.q3_forget_bias(m))
    lines += ["### b) Accuracy, loss and training time", ""]
    _text(lines, qdir, "comparison.md", used)
    figs.add(lines, qdir, "loss_all.png", "training (dashed) and validation loss per epoch of the three validation "
             "runs", used)
    for cell in ("rnn", "lstm", "gru"):
        if m.get(cell):
            figs.add(lines, qdir, f"{cell}_loss.png", f"{cell.upper()}: loss per epoch of the validation run and of "
                     f"the refit", used)
    _findings(lines, findings.q3_results(m))
    _findings(lines, findings.q3_overfitting(m))
    _findings(lines, findings.q3_choice(m))
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


def recipe_section(results_dir: Path, folders: Optional[dict] = None, handout: Optional[dict] = None) -> list:
    """Both recipes side by side (test numbers from each ``metrics.json``) when a handout run's
    metrics are in ``results_dir``; else one line saying how to produce them. ``folders`` and
    ``handout``: each question's folder under the default recipe and under the handout's
    (default ``q2``, ``q2_handout``, ...)."""
    folders = {**{q: q for q in QUESTIONS}, **(folders or {})}
    handout = {**{q: f"{q}_handout" for q in QUESTIONS}, **(handout or {})}
    lines = ["## The course handout's recipe beside the default", ""]
    runs = {q: (_load(results_dir / folders[q]), _load(results_dir / handout[q])) for q in ("q2", "q3")}
    if not any(h for _, h in runs.values()):
        return lines + [RECIPE_HOWTO, ""]
    lines += ["The same data and code trained with the defaults and with the course handout's settings "
              "(`--recipe handout`; where the two differ and why: [docs/recipes.md](../docs/recipes.md)). Test "
              "numbers; Q2: cross-entropy in nats and top-1 accuracy, Q3: accuracy and loss.", ""]
    for q, title in (("q2", "Q2 networks"), ("q3", "Q3 models")):
        default, ho = runs[q]
        rows = recipe_rows(default, ho, q)
        if not rows:
            continue
        lines += [f"**{title}** (default: `{folders[q]}/`, handout: `{handout[q]}/`)", "",
                  "| model | default | handout |", "|---|---|---|"]
        lines += [f"| {m} | {a} | {b} |" for m, a, b in rows] + [""]
        if ho and ho.get("protocol"):
            lines += ["Handout protocol: " + "; ".join(f"{k}: {v}" for k, v in ho["protocol"].items()), ""]
    return lines


def _data_line(m: dict) -> Optional[str]:
    d = m.get("data") if isinstance(m, dict) else None
    if not isinstance(d, dict) or not d.get("source"):
        return None
    return f"{d['path']} — {d['source']}" if d.get("path") else str(d["source"])


def write_report(results_dir: os.PathLike, *, folders: Optional[dict] = None, handout: Optional[dict] = None,
                 name: str = "REPORT.md") -> Path:
    """Write ``<results_dir>/<name>`` from the results saved there: each question's part from
    its folder in ``folders`` (default ``q1``, ``q2``, ``q3``), the handout recipe's table from
    ``handout`` (default ``q2_handout``, ``q3_handout``). Only what the runs saved goes in, so
    the same results give the same text."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    folders = {**{q: q for q in QUESTIONS}, **(folders or {})}
    runs = {q: _load(results_dir / folders[q]) for q in QUESTIONS}
    described = {q: describe_run(m) for q, m in runs.items() if m is not None}
    lines = ["# Mini project report (regenerated by mp_jax)", "",
             "Built from the results saved beside it (`python -m experiments.report` with the main job's flags "
             "rebuilds it); the header of each part names the run that made it.", ""]
    if any("quick run" in d for d in described.values()):
        lines += ["Parts made by a quick run (`--quick`: tiny settings) say so: their numbers are not meaningful.", ""]
    if len(set(described.values())) > 1:
        lines += ["The parts come from runs of different configurations: " + "; ".join(
            f"{q} from `{folders[q]}/`, {d}" for q, d in described.items()) + ".", ""]
    lines += ["Every model is trained with hand-derived gradients (checked against `jax.grad` in the test suite).", "",
              "## Data", ""]
    lines += [f"- {q}: {line}" for q, m in runs.items() if (line := _data_line(m))]
    lines += ["", "## Software and device", ""] + environment(runs)
    trained = [line for q in QUESTIONS if (line := training_line(q, runs[q] or {}))]
    if trained:
        lines += ["", "Training time: " + "; ".join(trained) + "."]
    walls = {q: p["wall_seconds"] for q, m in runs.items()
             if isinstance((p := _provenance(m) or {}).get("wall_seconds"), (int, float))}
    if walls:
        lines += ["", "Wall time of each part's run: " + ", ".join(f"{q} {s:.0f} s" for q, s in walls.items()) + "."]
    others = sorted(p.name for p in results_dir.glob("REPORT*.md") if p.name != name)
    if others:
        lines += ["", "Other reports in this folder: " + ", ".join(f"[{n}]({n})" for n in others) + "."]
    lines.append("")
    figs = Figures()
    handout = {**{q: f"{q}_handout" for q in QUESTIONS}, **(handout or {})}
    lines += q1_section(results_dir / folders["q1"], figs, results_dir / handout["q1"])
    for section in (q2_section, q3_section):
        lines += section(results_dir / folders[section.__name__[:2]], figs)
    lines += recipe_section(results_dir, folders, handout)
    path = results_dir / name
    if distributed.is_writer():  # atomically: a reader sees the old report or the new one
        atomic.write_text(path, "\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    from experiments import common, layout

    p = common.base_parser("python -m experiments.report", __doc__.split("\n\n")[0] + " Takes the main job's "
                           "flags: those that name a configuration (--quick, --seed, --impl, --vmap, "
                           "--matmul-precision) pick the report and its folders; the others are ignored.")
    p.add_argument("--only", help="ignored: the report shows every question (accepted as the main job takes it)")
    args = p.parse_args(argv)
    if not Path(args.results_dir).is_dir():
        raise UserError(f"--results-dir {args.results_dir}: no such folder",
                        hint="Run python -m experiments first, or give the folder it wrote to.")
    plan = layout.report_plan(args)
    print(write_report(args.results_dir, folders=plan.folders, handout=plan.handout, name=plan.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
