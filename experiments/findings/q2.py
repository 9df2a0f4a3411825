"""Q2's findings: the course's three settings, overfitting, the tuned network, Kneser-Ney by
context frequency, predictions.
"""
from __future__ import annotations

import math
from typing import Optional

from experiments.findings.common import _num, _pct, compare


Q2_ORDER = ((32, 256), (16, 128), (8, 64))


def q2_settings(m: dict) -> list:
    """The (D, P) keys of Q2's metrics in the course's order (32, 256), (16, 128), (8, 64),
    then any others as recorded."""
    names = [k for k in m if k.startswith("D=") and isinstance(m[k], dict)]
    order = [f"D={d},P={p}" for d, p in (m.get("settings", {}).get("settings") or Q2_ORDER)]
    first = [k for k in order if k in names]
    return first + [k for k in names if k not in first]


def q2_chosen(m: dict) -> Optional[str]:
    """The (D, P) with the lowest validation cross-entropy (the model-selection rule)."""
    names = [k for k in q2_settings(m) if isinstance(m[k].get("val_cross_entropy"), (int, float))]
    return min(names, key=lambda k: m[k]["val_cross_entropy"]) if names else None


def q2_training(m: dict) -> list:
    """Part (a): the validation cross-entropies that chose the model, and the baseline."""
    out = []
    names = q2_settings(m)
    best = q2_chosen(m)
    if best:
        vals = ", ".join(f"({k[2:].replace(',P=', ', ')}) {_num(m[k]['val_cross_entropy'], 4)}" for k in names
                         if isinstance(m[k].get("val_cross_entropy"), (int, float)))
        out.append(f"Validation cross-entropy (nats) at each setting's best epoch: {vals}. The rule keeps the lowest: "
                   f"({best[2:].replace(',P=', ', ')}).")
    kn = m.get("kneser_ney") or {}
    if best and isinstance(kn.get("test_cross_entropy"), (int, float)):
        a, b = m[best]["test_cross_entropy"], kn["test_cross_entropy"]
        out.append(f"On the test trigrams the chosen network's cross-entropy is {_num(a, 4)} (perplexity "
                   f"{_num(math.exp(a))}), {compare(a, b)} than the Kneser-Ney trigram baseline's {_num(b, 4)} "
                   f"(perplexity {_num(math.exp(b))}).")
    return out


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _dp(name: str) -> str:
    """ "D=32,P=256" -> "(32, 256)"."""
    return f"({name[2:].replace(',P=', ', ')})"


def q2_n_params(m: dict, name: str) -> Optional[int]:
    """A (D, P) network's parameter count: recorded, or V·D + 3D·P + P + P·V + V."""
    r = m.get(name) or {}
    if isinstance(r.get("n_params"), int):
        return r["n_params"]
    v = (m.get("data") or {}).get("vocab_size", 250)
    try:
        d, p = (int(x) for x in name[2:].split(",P="))
    except ValueError:
        return None
    return v * d + 3 * d * p + p + p * v + v


def q2_gap(r: dict) -> Optional[float]:
    """Validation minus training cross-entropy of a network's kept parameters (recorded), else of
    its history at the best epoch (the training loss there is the mean over that epoch)."""
    if _real(r.get("val_cross_entropy")) and _real(r.get("train_cross_entropy")):
        return r["val_cross_entropy"] - r["train_cross_entropy"]
    h, e = r.get("history") or {}, r.get("best_epoch")
    tr, va = h.get("train_loss"), h.get("val_loss")
    if tr and va and isinstance(e, int) and 1 <= e <= min(len(tr), len(va)):
        return va[e - 1] - tr[e - 1]
    return None


def q2_overfitting(m: dict) -> list:
    """Part (a): where each (D, P) starts to overfit (its best epoch, the validation curve after
    it, the validation-training gap), and whether the largest network does so first, as its
    parameters per training 4-gram predict."""
    out, rows = [], []
    n_train = (m.get("data") or {}).get("n_train")
    for k in q2_settings(m):
        r = m[k]
        h = r.get("history") or {}
        tr, va, e = h.get("train_loss") or [], h.get("val_loss") or [], r.get("best_epoch")
        if not (isinstance(e, int) and 1 <= e <= len(va) == len(tr)):
            continue
        last, gap = len(va), q2_gap(r)
        rows.append((k, e, last, gap, q2_n_params(m, k)))
        gap_text = f"; the validation-training gap of its kept parameters is {_num(gap)} nats" if _real(gap) else ""
        if e < last:
            rise, fall = va[-1] - va[e - 1], tr[e - 1] - tr[-1]
            trend = (f"while its training loss keeps falling (by {_num(fall)})" if fall > 0 else
                     f"and its training loss does not fall either (it changes by {_num(-fall)})")
            out.append(f"{_dp(k)} starts to overfit after epoch {e} of {last}: its validation cross-entropy is "
                       f"lowest there and {'rises' if rise > 0 else 'does not fall below it again'} over the "
                       f"{last - e} epoch{'s' if last - e > 1 else ''} after (by {_num(abs(rise))}) {trend}{gap_text}.")
        else:
            out.append(f"{_dp(k)} does not overfit within its {last} epochs: its validation cross-entropy is lowest at "
                       f"the last one, still falling when training stops{gap_text}.")
    if len(rows) >= 2 and all(n for *_, n in rows):
        rows.sort(key=lambda r: -r[4])
        big = rows[0]
        per = (lambda n: f", {_num(n / n_train, 2)} per training 4-gram") if isinstance(n_train, int) and n_train else (
            lambda n: "")
        sizes = "; ".join(f"{_dp(k)} {n:,}{per(n)}" for k, *_, n in rows)
        # the turn comes no later for a larger network; a capped run turns "after" its last epoch
        turn = [e if e < last else last + 1 for _, e, last, _, _ in rows]
        earlier = all(a <= b for a, b in zip(turn, turn[1:]))
        gaps = [g for *_, g, _ in rows]
        wider = all(_real(g) for g in gaps) and all(a >= b for a, b in zip(gaps, gaps[1:]))
        verdict = ("bears this out" if earlier and wider else "only partly bears this out" if earlier or wider else
                   "does not bear this out")
        text = (f"Parameters: {sizes}. A network with more parameters per training example can fit the accidents of "
                f"the training 4-grams (which words happened to follow a context) sooner, so the largest should overfit "
                f"first and widest. The run {verdict}: "
                f"from the largest to the smallest, the best epochs are "
                f"{', '.join(str(e) + ('' if e < last else ' (the last)') for _, e, last, _, _ in rows)} "
                f"({'no later for a larger network' if earlier else 'not in the order of size'})")
        if all(_real(g) for g in gaps):
            text += (f" and the gaps {', '.join(_num(g) for g in gaps)} nats "
                     f"({'wider for a larger network' if wider else 'not in the order of size'})")
        out.append(text + f"; {_dp(big[0])} is the largest.")
    return out


def _setting_text(s: dict) -> str:
    opt = {"adam": "Adam", "sgd": "SGD with momentum"}.get(s.get("optimizer"), str(s.get("optimizer")))
    wd = s.get("weight_decay")
    rate = (f"a constant rate of {_num(s.get('lr'))}" if s.get("schedule") == "constant" else
            f"a peak rate of {_num(s.get('lr'))} ({_num(s.get('warmup', 0.5))} epoch of warm-up, then a cosine decay)")
    return (f"D = {s.get('D')}, P = {s.get('P')}; dropout {_num(s.get('dropout'))} on the hidden layer, {opt} at "
            f"{rate} for {s.get('epochs')} epochs, batch {s.get('batch')}"
            + (f", weight decay {_num(wd)}" if _real(wd) and wd > 0 else ""))


def _over_seeds(r: dict, key: str = "test_cross_entropy") -> str:
    """ "2.601 nats (± 0.0045 over 3 seeds: 2.600, 2.605, 2.596)", or "2.601 nats" for one seed."""
    per = r.get(f"{key}_per_seed") or []
    if len(per) < 2:
        return f"{_num(r[key], 4)} nats"
    return (f"{_num(r[key], 4)} nats (± {_num(r[f'{key}_std'], 2)} over {len(per)} seeds: "
            f"{', '.join(_num(v, 4) for v in per)})")


def q2_tuned(m: dict) -> list:
    """The tuned network against Kneser-Ney and the course's networks, its mixture with the
    counts, and why it beats the counts where the course's networks do not: its capacity, and
    its validation-training gap under dropout."""
    t, kn = m.get("tuned") or {}, m.get("kneser_ney") or {}
    if not (_real(t.get("test_cross_entropy")) and _real(kn.get("test_cross_entropy"))):
        return []
    a, b = t["test_cross_entropy"], kn["test_cross_entropy"]
    per = t.get("test_cross_entropy_per_seed") or [a]
    below = sum(v < b for v in per)
    spread = t.get("test_cross_entropy_std") or 0.0
    out = [f"The tuned network ({_setting_text(t.get('setting') or {})}; chosen on the validation split) reaches a test "
           f"cross-entropy of {_over_seeds(t)}, {compare(a, b)} than Kneser-Ney's {_num(b, 4)} by "
           f"{_num(abs(a - b), 2)} nats"
           + (f", {'more than' if abs(a - b) > spread else 'within'} the spread over seeds; {below} of {len(per)} "
              f"seeds are below Kneser-Ney." if len(per) > 1 else ".")]
    mix = m.get("interpolated_tuned") or {}
    if _real(mix.get("test_cross_entropy")):
        c = mix["test_cross_entropy"]
        lower = c < min(a, b)
        out.append(f"Mixed with Kneser-Ney (the network's weight {_num(mix.get('weight'), 2)}, chosen on validation) it "
                   f"reaches {_over_seeds(mix)}, "
                   + ("lower still than either alone: the two models err on different trigrams (the next finding says "
                      "which)." if lower else f"{compare(c, min(a, b))} than the better of the two alone."))
    names = [k for k in q2_settings(m) if _real(m[k].get("test_cross_entropy"))]
    if names:
        big = max(names, key=lambda k: q2_n_params(m, k) or 0)
        n_t, n_b = t.get("n_params"), q2_n_params(m, big)
        g_t, g_b = q2_gap({"val_cross_entropy": t.get("val_cross_entropy"),
                           "train_cross_entropy": t.get("train_cross_entropy")}), q2_gap(m[big])
        best_course = min(m[k]["test_cross_entropy"] for k in names)
        text = (f"The course's networks reach {_num(best_course, 4)} at best ({compare(best_course, b)} than "
                f"Kneser-Ney). What the tuned network adds is capacity, held back by dropout")
        if isinstance(n_t, int) and n_b:
            text += f": {n_t:,} parameters, {_num(n_t / n_b, 2)} times {_dp(big)}'s"
        if _real(g_t) and _real(g_b):
            text += f". Its validation-training gap at its kept epoch is {_num(g_t)} nats against {_dp(big)}'s {_num(g_b)}"
            v_t, v_b = t.get("val_cross_entropy"), m[big].get("val_cross_entropy")
            tr_t, tr_b = t.get("train_cross_entropy"), m[big].get("train_cross_entropy")
            if g_t <= g_b:
                text += ": dropout keeps the larger network from overfitting more than the small one"
            elif _real(v_t) and _real(v_b) and _real(tr_t) and _real(tr_b):
                text += (f": it overfits more, but fits the training 4-grams so much "
                         f"{'better' if tr_t < tr_b else 'worse'} (training cross-entropy {_num(tr_t, 4)} against "
                         f"{_num(tr_b, 4)}) that its validation cross-entropy is {compare(v_t, v_b)} "
                         f"({_num(v_t, 4)} against {_num(v_b, 4)})")
        out.append(text + ".")
    return out


FREQ_WORDS = {"0": "never seen in training", "1-5": "seen 1-5 times", "6-50": "seen 6-50 times",
              ">50": "seen more than 50 times"}


def q2_context_frequency(m: dict) -> list:
    """Where each model wins by how often the test trigram was a training context: the network
    against Kneser-Ney per frequency group, whether the difference rises as the counts grow (the
    reason: a count model has only shorter contexts to back off to for a trigram it never saw, the
    network scores every trigram through its words' embeddings), and which groups make the chosen
    course network's gap to Kneser-Ney."""
    f = m.get("by_context_frequency") or {}
    ce, bins, share = f.get("cross_entropy") or {}, f.get("bins") or [], f.get("share") or []
    kn = ce.get("kneser_ney")
    if not kn or len(bins) != len(share):
        return []
    out = ["By how often the test trigram was the context of a training 4-gram: "
           + ", ".join(f"{FREQ_WORDS.get(b, b)} for {_pct(s)} of the test rows" for b, s in zip(bins, share)) + "."]
    diffs = {n: [None if a is None or k is None else a - k for a, k in zip(ce[n], kn)] for n in ce}
    for name in [n for n in ("tuned", q2_chosen(m)) if n and n in ce]:
        d = diffs[name]
        who = "The tuned network" if name == "tuned" else f"The chosen course network {_dp(name)}"
        wins = [FREQ_WORDS.get(b, b) + f" (by {_num(-x, 2)})" for b, x in zip(bins, d) if x is not None and x < 0]
        loses = [FREQ_WORDS.get(b, b) + f" (by {_num(x, 2)})" for b, x in zip(bins, d) if x is not None and x >= 0]
        if wins:
            text = f"{who} is lower than Kneser-Ney in contexts {'; '.join(wins)}"
            text += f" and higher in contexts {'; '.join(loses)}" if loses else ": in every group"
        else:
            text = f"{who} is higher than Kneser-Ney in every group: contexts {'; '.join(loses)}"
        seen = [(b, x) for b, x in zip(bins, d) if x is not None]
        if name == "tuned":
            lead = min(seen, key=lambda bx: bx[1])
            if lead[0] == bins[0] and lead[1] < 0:
                text += (f". Its lead is largest in the contexts {FREQ_WORDS.get(lead[0], lead[0])}, as the reason "
                         "predicts: for a trigram it never saw a count model can only back off to the last two words, "
                         "then one, while the network scores every trigram through the embeddings of its words, which "
                         "words used in similar places share; where a context was seen, its counts are evidence the "
                         "network has to match")
            else:
                text += (f". Its lead is largest in contexts {FREQ_WORDS.get(lead[0], lead[0])}, not in the unseen "
                         "ones, against the reason one would give (a count model backs off to shorter contexts for a "
                         "trigram it never saw, the network generalises through its words' embeddings)")
        else:
            parts = [(b, x * s) for b, x, s in zip(bins, d, share) if x is not None]
            total = sum(x for _, x in parts)
            worst = max(parts, key=lambda p: p[1])
            text += (f". Weighted by each group's share of the test rows, the differences add up to its whole gap of "
                     f"{_num(total, 2)} nats, and contexts {FREQ_WORDS.get(worst[0], worst[0])} contribute the most "
                     f"({_num(worst[1], 2)})")
            seen_part = sum(x for b, x in parts if b != bins[0])
            unseen = d[0]
            if seen_part > total - seen_part:
                text += (f"; contexts seen in training, whose continuations the counts record and a network has to "
                         f"fit, make {_num(seen_part, 2)} of it")
                if unseen is not None and unseen <= 0:
                    text += (f", while in unseen contexts it is {'level with' if unseen == 0 else 'below'} Kneser-Ney: "
                             f"its gap is one of fitting, not of generalising")
                t, r = m.get("tuned") or {}, m.get(name) or {}
                td = diffs.get("tuned")
                if td and _real(t.get("train_cross_entropy")) and _real(r.get("train_cross_entropy")):
                    below = [b for b, x in zip(bins[1:], td[1:]) if x is not None and x < 0]
                    text += (f". The tuned network fits the training 4-grams "
                             f"{'more' if t['train_cross_entropy'] < r['train_cross_entropy'] else 'less'} closely "
                             f"(training cross-entropy {_num(t['train_cross_entropy'], 4)} against "
                             f"{_num(r['train_cross_entropy'], 4)}) and is below Kneser-Ney in {len(below)} of the "
                             f"{len(bins) - 1} groups of seen contexts")
            else:
                text += (f"; contexts never seen in training make the larger part ({_num(total - seen_part, 2)}): it "
                         f"generalises worse than the counts' back-off")
        out.append(text + ".")
    return out


def q2_predictions(m: dict) -> list:
    """Part (b): the top prediction after each anchor trigram, beside Kneser-Ney's."""
    out = []
    for tri, a in (m.get("anchors") or {}).items():
        if not isinstance(a, dict) or not a.get("neural"):
            continue
        w, p = a["neural"][0]
        used = a.get("trigram", tri)
        role = a.get("role")
        sub = a.get("stands_for", tri) if a.get("source") == "substitute" else None
        lead = f"“{used}”" + (f" ({role}" + (f", standing in for “{sub}”" if sub else "") + ")" if role else "")
        text = f"After {lead} the network's top word is “{w}” (p = {_num(p)})"
        kn = a.get("kneser_ney")
        if kn:
            text += (", as Kneser-Ney's" if kn[0][0] == w else f"; Kneser-Ney's is “{kn[0][0]}”")
        out.append(text + ".")
    ranks = [s.get("rank_true") for s in m.get("samples") or [] if isinstance(s.get("rank_true"), int)]
    if ranks:
        top10 = sum(r < 10 for r in ranks)
        out.append(f"Of the {len(ranks)} random test trigrams, the true fourth word is among the network's top 10 "
                   f"in {top10}.")
    return out
