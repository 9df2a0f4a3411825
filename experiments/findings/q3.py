"""Q3's findings: the gradient flow and its predicted slopes, the forget-bias ablation, accuracy,
overfitting, the choice, confusions.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from experiments.findings.common import _num, _pct, compare, label, cap


def q3_gradients(m: dict) -> list:
    """Part (a): how much of the gradient reaches the first step, at initialisation and trained."""
    out = []
    flows = {k: m[k]["gradient_flow"] for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict)
             and m[k].get("gradient_flow")}
    for when, word in (("init", "At initialisation"), ("trained", "After training")):
        decay = {k: f[when][0] / f[when][-1] for k, f in flows.items() if f.get(when) and f[when][-1] > 0}
        if not decay:
            continue
        t = len(next(iter(flows.values()))[when])
        parts = ", ".join(f"{k.upper()} 10^{np.log10(v):.1f}" if v > 0 else f"{k.upper()} 0 (below float32's range)"
                          for k, v in decay.items())
        most = max(decay, key=decay.get)
        out.append(f"{word}, the gradient reaching step 1 is, relative to the one at step {t}: {parts}; "
                   f"{most.upper()} carries the most of it back through the {t} steps.")
    return out


def q3_results(m: dict) -> list:
    """Part (b): the ranking, each gap against the spread over seeds, the gated cells against
    the baseline, and how validation tracked test."""
    from experiments import tables

    models = [k for k in ("rnn", "lstm", "gru", "baseline") if isinstance(m.get(k), dict)
              and "test_accuracy_per_seed" in m[k]]
    if not models:
        return []
    out = []
    seeds = m[models[0]].get("seeds", [])
    ranked = sorted(models, key=lambda k: -m[k]["test_accuracy"])
    ranking = label(ranked[0]) + f" {_pct(m[ranked[0]]['test_accuracy'])}"
    for prev, k in zip(ranked, ranked[1:]):
        same = _pct(m[prev]["test_accuracy"]) == _pct(m[k]["test_accuracy"])
        ranking += (" = " if same else " > ") + f"{label(k)} {_pct(m[k]['test_accuracy'])}"
    out.append("Mean test accuracy over " + (f"{len(seeds)} seeds" if len(seeds) != 1 else "one seed") + ": "
               + ranking + ".")
    if len(seeds) > 1:
        out.append("A gap counts as larger than the seeds explain when it exceeds the spread, the sum of the two "
                   "models' standard deviations over seeds.")
        for a, b, g in tables.seed_gaps({k: m[k] for k in ranked}):
            out.append(f"{cap(label(a))} exceeds {label(b)} by {100 * g['gap']:.1f} points, "
                       + ("more than" if g["exceeds"] else "within") + f" the spread of {100 * g['spread']:.1f}.")
    else:
        out.append("With one seed there is no spread to tell a gap from noise.")
    for k in ("rnn", "lstm", "gru"):
        r = m.get(k)
        if not isinstance(r, dict) or "members" not in r or not r["members"]:
            continue
        v, t = r.get("val_accuracy"), r["members"][0].get("test_accuracy")
        if isinstance(v, (int, float)) and isinstance(t, (int, float)):
            out.append(f"{k.upper()}: validation accuracy (training part, seed {r['members'][0].get('seed')}) "
                       f"{_pct(v)}, test accuracy after the refit {_pct(t)}.")
    return out


def q3_confusions(m: dict) -> list:
    """Part (c): each model's most confused pair of classes (seed S, test windows) and the time per epoch."""
    out = []
    names = (m.get("data") or {}).get("class_names") or []
    desc = (m.get("data") or {}).get("class_descriptions") or {}
    for k in ("rnn", "lstm", "gru", "baseline"):
        r = m.get(k)
        if not isinstance(r, dict) or not r.get("confusion_test") or not names:
            continue
        cm = np.asarray(r["confusion_test"], dtype=float)
        off = cm.copy()
        np.fill_diagonal(off, 0)
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        if off[i, j] == 0:
            out.append(f"{cap(label(k))}: no test window is misclassified.")
            continue
        share = off[i, j] / max(cm[i].sum(), 1)
        out.append(f"{cap(label(k))}: the most frequent error puts {int(off[i, j])} {names[i]} windows "
                   f"({desc.get(names[i], names[i])}; {_pct(share)} of them) into {names[j]} "
                   f"({desc.get(names[j], names[j])}).")
    secs = {k: m[k].get("seconds_per_epoch") for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict)}
    if secs.get("rnn") and all(isinstance(v, (int, float)) for v in secs.values()):
        out.append("Time per epoch of the refits: " + ", ".join(f"{k.upper()} {v:.2f} s" for k, v in secs.items())
                   + "; " + ", ".join(f"{k.upper()} {secs[k] / secs['rnn']:.1f} × the RNN" for k in secs if k != "rnn")
                   + ".")
    return out


# ----------------------------------------------------------------------------- Q3: why the gradient flows as it does
AGREE_DECADES = 1.0  # a predicted line agrees with the measured one when they part by at most a factor 10 over the fit
GATED = ("lstm", "gru")
GATE_NAME = {"lstm": "forget gate", "gru": "update gate"}


def q3_ablations(m: dict) -> list:
    """The keys of Q3's forget-bias ablations in ``m`` ("lstm_forget_bias_1", ...)."""
    return [k for k in m if k.startswith("lstm_forget_bias_") and isinstance(m[k], dict)]


def _forget_bias(m: dict) -> float:
    b = (m.get("settings") or {}).get("forget_bias", 0.0)
    return float(b) if isinstance(b, (int, float)) else 0.0


def flow_label(m: dict, k: str) -> str:
    """ "RNN", "GRU", "LSTM" ("LSTM (b_f = 0)" beside an ablation) or "LSTM with b_f = 1"."""
    if k.startswith("lstm_forget_bias_"):
        return f"LSTM with b_f = {m[k].get('forget_bias', '?'):g}"
    if k == "lstm" and q3_ablations(m):
        return f"LSTM (b_f = {_forget_bias(m):g})"
    return k.upper()


def _prediction(m: dict, k: str, when: str) -> Optional[dict]:
    """The recorded prediction of ``k``'s gradient flow ``when`` ("init", "trained") with its
    span: None unless the three factors and the fitted steps are numbers."""
    r = m.get(k)
    p = ((r or {}).get("gradient_flow") or {}).get("predicted", {}).get(when) if isinstance(r, dict) else None
    if not isinstance(p, dict) or not all(isinstance(p.get(f), (int, float)) and p[f] > 0
                                          for f in ("factor_measured", "factor_path", "factor_whole")):
        return None
    steps = p.get("fit_steps")
    if not (isinstance(steps, list) and len(steps) == 2 and steps[1] > steps[0]):
        return None
    return {**p, "span": steps[1] - steps[0]}


def decades(factor: float, span: int) -> float:
    """log10 of ``factor`` to the power ``span``: the decades a line of that factor per step
    falls (negative) or rises over ``span`` steps."""
    return span * math.log10(factor)


def agreement(predicted: float, measured: float, span: int) -> str:
    """Whether a predicted factor per step agrees with the measured one over ``span`` steps:
    "agrees (within 0.3 decades)" when the two lines part by at most :data:`AGREE_DECADES`
    decades, else whether the prediction under- or overestimates what reaches the first
    fitted step, and by how much."""
    off = decades(predicted, span) - decades(measured, span)
    if abs(off) <= AGREE_DECADES:
        return f"agrees (within {abs(off):.1f} decades)"
    return f"{'under' if off < 0 else 'over'}estimates what reaches the early steps (by {abs(off):.1f} decades)"


def _flow_keys(m: dict) -> list:
    return [k for k in ("rnn", "lstm", "gru", *q3_ablations(m)) if isinstance(m.get(k), dict)]


def _reach(m: dict, k: str, when: str) -> Optional[float]:
    """log10 of g_1 / g_T: the share of the gradient at T that reaches step 1 (None when not recorded or 0)."""
    g = ((m.get(k) or {}).get("gradient_flow") or {}).get(when)
    if not g or not all(isinstance(v, (int, float)) for v in (g[0], g[-1])) or g[0] <= 0 or g[-1] <= 0:
        return None
    return math.log10(g[0] / g[-1])


def q3_gradient_slopes(m: dict) -> list:
    """Figure 13 checked, one sentence per cell (and ablation): what sets its path's factor
    (the RNN's λ from W_h and the mean tanh', (RNN8); the mean forget or update gate), the
    factor per step back predicted by the path alone (BPTT7) and by the whole step (BPTT8)
    against the measured one, at initialisation and after training, and whether each
    prediction agrees over the fitted steps (:func:`agreement`)."""
    out = []
    for k in _flow_keys(m):
        ps = [(w, p) for w, p in (("at initialisation", _prediction(m, k, "init")),
                                  ("after training", _prediction(m, k, "trained"))) if p is not None]
        if not ps:
            continue
        arrow = lambda f: " → ".join(f(p) for _, p in ps)  # noqa: E731
        if k == "rnn" and all(isinstance(p.get(f), (int, float)) for _, p in ps
                              for f in ("w_h_spectral_radius", "mean_tanh_prime")):
            why = (f"W_h's spectral radius {arrow(lambda p: format(p['w_h_spectral_radius'], '.3f'))} and the mean "
                   f"tanh' {arrow(lambda p: format(p['mean_tanh_prime'], '.3f'))}, so λ (RNN8) "
                   f"{arrow(lambda p: format(p['factor_path'], '.3f'))}")
        elif all(isinstance(p.get("mean_gate"), (int, float)) for _, p in ps):
            why = (f"mean {GATE_NAME['lstm' if k.startswith('lstm') else k]} "
                   f"{arrow(lambda p: format(p['mean_gate'], '.3f'))}")
        else:
            why = ""
        steps = sorted({f"{p['fit_steps'][0]}-{p['fit_steps'][1]}" for _, p in ps})
        text = (f"{flow_label(m, k)}, {' → '.join(w for w, _ in ps)}: " + (f"{why}; " if why else "")
                + f"factor per step back measured {arrow(lambda p: format(p['factor_measured'], '.3f'))} "
                f"(fitted over steps {', '.join(steps)}), predicted by the path alone (BPTT7) "
                f"{arrow(lambda p: format(p['factor_path'], '.3f'))} and by the whole step (BPTT8) "
                f"{arrow(lambda p: format(p['factor_whole'], '.3f'))}: ")
        for name, key in (("the path alone", "factor_path"), ("the whole step", "factor_whole")):
            text += name + " " + " and ".join(f"{agreement(p[key], p['factor_measured'], p['span'])} {w}"
                                              for w, p in ps) + ("; " if key == "factor_path" else ".")
        out.append(text)
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def q3_gradient_reasons(m: dict) -> list:
    """Why Figure 13 looks as it does, each reason checked against the run's numbers: the
    gates at initialisation against σ(bias) and what their paths alone would keep; whether
    the other paths of the step carry what the gated paths lose (the whole step agrees where
    the path alone does not); the RNN's λ against 1; and after training, the measured factor,
    the mean gate and the path's factor against their values at initialisation."""
    out = []
    init = {k: _prediction(m, k, "init") for k in ("rnn", *GATED)}
    gated = {k: p for k, p in init.items() if k in GATED and p and isinstance(p.get("mean_gate"), (int, float))}
    if gated:
        bias = {"lstm": _forget_bias(m), "gru": 0.0}
        parts = []
        for k, p in gated.items():
            s, steps = _sigmoid(bias[k]), len(m[k]["gradient_flow"]["init"]) - 1
            near = "near" if abs(p["mean_gate"] - s) <= 0.05 else "away from"
            parts.append(f"the {k.upper()}'s mean {GATE_NAME[k]} is {p['mean_gate']:.3f}, {near} σ({bias[k]:g}) = "
                         f"{s:.3f}, and a path that multiplies by it at every step keeps {p['mean_gate']:.2f}^{steps} "
                         f"≈ 10^{decades(p['mean_gate'], steps):.0f} of the gradient over the window")
        out.append("At initialisation the gates' pre-activations are centred near their biases, so "
                   + "; ".join(parts) + ".")
        slow = {k: p for k, p in gated.items()
                if decades(p["factor_path"], p["span"]) - decades(p["factor_measured"], p["span"]) < -AGREE_DECADES
                and abs(decades(p["factor_whole"], p["span"]) - decades(p["factor_measured"], p["span"]))
                <= AGREE_DECADES}
        if slow:
            out.append("The measured gradient of the " + " and the ".join(k.upper() for k in slow)
                       + " keeps more than its gated path alone predicts ("
                       + ", ".join(f"{k.upper()} {p['factor_measured']:.3f} against {p['factor_path']:.3f} per step"
                                   for k, p in slow.items())
                       + ") and as the whole step (BPTT8) predicts: the gradient also returns through h_{t−1} and "
                         "W_h (LSTM11; the last two terms of GRU11), and these paths carry what the gate loses.")
    p = init.get("rnn")
    if p and isinstance(p.get("w_h_spectral_radius"), (int, float)):
        off = decades(p["factor_measured"], p["span"])
        what = ("keeps its gradient" if off >= -AGREE_DECADES else "loses its gradient geometrically")
        out.append(f"The RNN {what} at initialisation (10^{off:.1f} over {p['span']} steps): Xavier's W_h "
                   f"(entries of variance 1/H) has spectral radius {p['w_h_spectral_radius']:.3f}, the mean tanh' "
                   f"{p['mean_tanh_prime']:.3f} scales it to λ = {p['factor_path']:.3f}, "
                   + ("near 1." if abs(decades(p["factor_path"], p["span"])) <= 2 * AGREE_DECADES
                      else "away from 1."))
    for k in (*GATED, *q3_ablations(m)):
        a, b = _prediction(m, k, "init"), _prediction(m, k, "trained")
        if not (a and b and isinstance(a.get("mean_gate"), (int, float)) and isinstance(b.get("mean_gate"),
                                                                                      (int, float))):
            continue
        carries = "carries more of its gradient" if b["factor_measured"] > a["factor_measured"] else \
            "carries less of its gradient"
        gate = GATE_NAME["lstm" if k.startswith("lstm") else k]
        moved = abs(b["mean_gate"] - a["mean_gate"])
        text = (f"After training the {flow_label(m, k)} {carries}: {b['factor_measured']:.3f} per step against "
                f"{a['factor_measured']:.3f} at initialisation; its mean {gate} moved from {a['mean_gate']:.3f} to "
                f"{b['mean_gate']:.3f} while its path's factor (BPTT7) went from {a['factor_path']:.3f} to "
                f"{b['factor_path']:.3f}")
        path_up = b["factor_path"] - a["factor_path"]
        if path_up > 2 * moved and path_up > 0:
            text += (": the gradient travels on the units and windows whose gates stay near 1, which the product of "
                     "(BPTT7) weights and the mean gate hides")
        out.append(text + ".")
    return out


def q3_forget_bias(m: dict) -> list:
    """The forget-gate bias ablation against the default LSTM: its gate and gradient flow at
    initialisation and after training, and its test accuracy on the same seeds against the
    spread over seeds (twice the default's standard deviation when the ablation has one
    seed), reported whichever way it comes out."""
    out = []
    d = m.get("lstm")
    for k in q3_ablations(m):
        r = m[k]
        if not isinstance(d, dict):
            continue
        seeds = r.get("seeds") or []
        b, b0 = r.get("forget_bias"), _forget_bias(m)
        if not isinstance(b, (int, float)):
            continue
        many = (m.get("settings") or {}).get("seeds")
        head = (f"The LSTM with its forget-gate bias at b_f = {b:g} instead of {b0:g} ("
                + (f"seed {seeds[0]} only; `--ablation-seeds {many}` trains all {many} seeds" if len(seeds) == 1
                   and isinstance(many, int) and many > 1 else f"seed {seeds[0]}" if len(seeds) == 1
                   else f"seeds {', '.join(map(str, seeds))}")
                + ", each from the default's initial weights, so that b_f is the only difference)")
        pa, pd = _prediction(m, k, "init"), _prediction(m, "lstm", "init")
        ra, rd = _reach(m, k, "init"), _reach(m, "lstm", "init")
        if pa and pd and isinstance(pa.get("mean_gate"), (int, float)) and isinstance(pd.get("mean_gate"),
                                                                                        (int, float)):
            head += (f": at initialisation its mean forget gate is {pa['mean_gate']:.3f} (σ({b:g}) = "
                     f"{_sigmoid(b):.3f}) against {pd['mean_gate']:.3f}, and its gradient's factor per step back is "
                     f"{pa['factor_measured']:.3f} against {pd['factor_measured']:.3f}")
            if ra is not None and rd is not None:
                head += f", so step 1 receives 10^{ra:.1f} of the gradient at T against 10^{rd:.1f}"
        ta, td = _prediction(m, k, "trained"), _prediction(m, "lstm", "trained")
        if ta and td:
            head += (f"; after training the factor is {ta['factor_measured']:.3f} against "
                     f"{td['factor_measured']:.3f}")
        out.append(head + ".")
        la, ld = ((x.get("history") or {}).get("train_loss") for x in (r, d))
        if la and ld and len(la) == len(ld):
            out.append(f"Its training loss (seed {seeds[0]}, mean over the last epoch) ends at {_num(la[-1])} against "
                       f"the default's {_num(ld[-1])}: {compare(la[-1], ld[-1])}.")
        acc_a = r.get("test_accuracy_per_seed") or []
        by_seed = {mm.get("seed"): mm for mm in d.get("members") or []}
        same = [by_seed[s] for s in seeds if s in by_seed]
        if len(same) != len(seeds) or not acc_a:
            continue
        acc_d = [mm["test_accuracy"] for mm in same]
        gap = float(np.mean(acc_a) - np.mean(acc_d))
        if len(seeds) > 1:
            spread = float(np.std(acc_a, ddof=1) + np.std(acc_d, ddof=1))
            spread_text = "the sum of the two standard deviations over these seeds"
        elif len(d.get("test_accuracy_per_seed") or []) > 1:
            spread = 2.0 * float(d["test_accuracy_std"])
            spread_text = (f"twice the default's standard deviation over its {len(d['test_accuracy_per_seed'])} "
                           "seeds; one ablation seed has none of its own")
        else:
            spread = None
        text = (f"Its test accuracy is {_pct(float(np.mean(acc_a)))} against the default LSTM's "
                f"{_pct(float(np.mean(acc_d)))} on the same seed{'s' if len(seeds) > 1 else ''}")
        loss_a, loss_d = r.get("test_loss"), (float(np.mean([mm["test_loss"] for mm in same]))
                                              if all("test_loss" in mm for mm in same) else None)
        if isinstance(loss_a, (int, float)) and loss_d is not None:
            text += f" (test loss {_num(loss_a)} against {_num(loss_d)})"
        text += f": {compare(gap, 0.0, 'higher', 'lower')} by {abs(100 * gap):.1f} points"
        if spread is None:
            text += ", with no spread over seeds to weigh the gap against."
        else:
            within = abs(gap) <= spread
            text += (f", {'within' if within else 'more than'} the spread of {100 * spread:.1f} ({spread_text}): "
                     + ("the seeds alone move the accuracy as much, so this run does not show that the bias changes it."
                        if within else "a change the seeds do not explain."))
        out.append(text)
    return out


# ----------------------------------------------------------------------------- Q3: overfitting and the choice
def _val_turn(r: dict) -> Optional[dict]:
    """The validation run's turn: the epoch of lowest validation loss, its loss, the last
    epoch's, the training loss at both, and the validation accuracy at both (None when the
    history lacks them)."""
    h = (r.get("validation") or {}).get("history") or {}
    vl, tl = h.get("val_loss"), h.get("train_loss")
    if not vl or not tl or len(vl) != len(tl):
        return None
    e = int(np.argmin(vl)) + 1
    va = h.get("val_accuracy")
    return {"epoch": e, "epochs": len(vl), "val_min": vl[e - 1], "val_last": vl[-1], "train_at": tl[e - 1],
            "train_last": tl[-1], "acc_at": va[e - 1] if va else None, "acc_last": va[-1] if va else None}


def q3_overfitting(m: dict) -> list:
    """Per recurrent model: training against test accuracy and loss (means over the refit's
    seeds), the epoch where its validation run's validation loss turns upwards and what the
    training loss and validation accuracy do after it, which iterate the refit keeps, and
    its parameters per training window."""
    out = []
    keep = (m.get("settings") or {}).get("keep")
    n_train = (m.get("data") or {}).get("n_train")
    for k in ("rnn", "lstm", "gru"):
        r = m.get(k)
        if not isinstance(r, dict) or not all(isinstance(r.get(f), (int, float)) for f in
                                              ("train_accuracy", "test_accuracy", "train_loss", "test_loss")):
            continue
        n = len(r.get("seeds") or [])
        gap = r["train_accuracy"] - r["test_accuracy"]
        text = (f"{k.upper()}: training accuracy {_pct(r['train_accuracy'])} against {_pct(r['test_accuracy'])} on "
                f"the test windows (loss {_num(r['train_loss'])} against {_num(r['test_loss'])}; "
                + (f"means over {n} seeds" if n > 1 else "one seed") + f"), a gap of {100 * gap:.1f} points")
        turn = _val_turn(r)
        if turn:
            e, last = turn["epoch"], turn["epochs"]
            if e < last:
                rise = turn["val_last"] - turn["val_min"]
                text += (f". In its validation run the validation loss is lowest at epoch {e} of {last} "
                         f"({_num(turn['val_min'])}) and ends {_num(rise)} above it, while the training loss goes "
                         f"from {_num(turn['train_at'])} to {_num(turn['train_last'])}")
                acc = [turn[a] for a in ("acc_at", "acc_last") if isinstance(turn[a], (int, float))]
                if len(acc) == 2:
                    text += f"; its validation accuracy goes from {_pct(acc[0])} at epoch {e} to {_pct(acc[1])}"
                if turn["train_last"] < turn["train_at"]:
                    if len(acc) == 2 and acc[1] > acc[0]:
                        text += (f": after epoch {e} it fits the training subjects more closely and still classifies "
                                 "more held-out windows right, but gives the true class of some of them less "
                                 "probability, so the overfitting shows in the validation loss before the accuracy")
                    else:
                        text += (f": after epoch {e} it fits the training subjects more closely without classifying "
                                 "the held-out subjects better")
            else:
                text += (f". Its validation run's validation loss is lowest at its last epoch, {last}: no turn, no "
                         "sign of overfitting within its epochs")
        if keep == "last" and isinstance(r.get("epochs"), int):
            text += (f". The refit keeps the last iterate, epoch {r['epochs']}"
                     + (", so the test numbers include the epochs after the turn" if turn and turn["epoch"] < last
                        else ""))
        if isinstance(r.get("n_params"), int) and isinstance(n_train, int) and n_train > 0:
            text += (f"; its {r['n_params']:,} parameters are {r['n_params'] / n_train:.0f} per training window "
                     f"({n_train:,})")
        out.append(text + ".")
    return out


def q3_choice(m: dict) -> list:
    """The final choice between the three cells: the highest mean test accuracy; among the
    cells whose gap to it is within the spread over seeds, the one that trains in the least
    time (epochs × seconds per epoch); with the overfitting of the chosen one and the
    baseline for scale. Says that the choice reads the test windows."""
    cells = [k for k in ("rnn", "lstm", "gru") if isinstance(m.get(k), dict) and m[k].get("test_accuracy_per_seed")]
    if len(cells) < 2:
        return []
    from mp_jax.engine import metrics

    best = max(cells, key=lambda k: m[k]["test_accuracy"])
    n = len(m[best]["test_accuracy_per_seed"])
    gaps = {k: metrics.compare_over_seeds(m[best]["test_accuracy_per_seed"], m[k]["test_accuracy_per_seed"])
            for k in cells if k != best}
    tied = [k for k, g in gaps.items() if not g["exceeds"]] if n > 1 else []

    def cost(k):
        r = m[k]
        return r["epochs"] * r["seconds_per_epoch"] if isinstance(r.get("epochs"), int) and isinstance(
            r.get("seconds_per_epoch"), (int, float)) else math.inf

    pick = min([best, *tied], key=cost)
    parts = [f"{k.upper()} {_pct(m[k]['test_accuracy'])}" for k in sorted(cells, key=lambda k: -m[k]["test_accuracy"])]
    text = f"Final choice: the {pick.upper()}. Mean test accuracy: " + ", ".join(parts)
    if n < 2:
        text += "; with one seed there is no spread, so the choice rests on these point estimates"
    elif not tied:
        text += (f"; the {best.upper()} exceeds " + " and ".join(
            f"the {k.upper()} by {100 * g['gap']:.1f} points (spread {100 * g['spread']:.1f})" for k, g in gaps.items())
            + ", more than the seeds explain")
    else:
        text += ("; " + " and ".join(f"the {k.upper()}'s gap of {100 * gaps[k]['gap']:.1f} points to the "
                                     f"{best.upper()} is within the spread of {100 * gaps[k]['spread']:.1f}"
                                     for k in tied)
                 + ", so the seeds do not separate " + ("them" if len(tied) == 1 else "these"))
    if pick != best or tied:
        text += ("; among those the " + pick.upper() + " trains in the least time: "
                 + ", ".join(f"{k.upper()} {m[k]['epochs']} epochs × {m[k]['seconds_per_epoch']:.2f} s = "
                             f"{cost(k):.0f} s" for k in [best, *tied] if math.isfinite(cost(k))))
    out = [text + "."]
    r = m[pick]
    if isinstance(r.get("train_accuracy"), (int, float)):
        out.append(f"Its training accuracy is {_pct(r['train_accuracy'])} against {_pct(r['test_accuracy'])} on the "
                   f"test windows, a gap of {100 * (r['train_accuracy'] - r['test_accuracy']):.1f} points (overfitting "
                   "above).")
    base = m.get("baseline")
    if isinstance(base, dict) and isinstance(base.get("test_accuracy"), (int, float)):
        out.append(f"The logistic baseline on window statistics reaches {_pct(base['test_accuracy'])}, "
                   f"{compare(base['test_accuracy'], r['test_accuracy'])} than the chosen cell's "
                   f"{_pct(r['test_accuracy'])}.")
    out.append("The choice reads the test windows (the protocol's selection of rates and epochs did not), so "
               "the chosen cell's test accuracy is slightly optimistic as an estimate for new subjects.")
    return out
