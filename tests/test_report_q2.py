"""Q2's findings on overfitting, the tuned network and the context frequencies, and its part of
REPORT.md: every claim checked against the numbers of two runs that disagree."""
import json
import re

import numpy as np
import pytest

from experiments import findings, report

from test_report import PNG

N_TRAIN = 200_000
SETTINGS = ((32, 256), (16, 128), (8, 64))


def _net(best, run, val_min, gap, test):
    """A course network's record: validation falls to ``val_min`` at epoch ``best`` then rises by
    0.01 per epoch; the training loss keeps falling."""
    val = [val_min + 0.05 * (best - e) for e in range(1, best + 1)] + [val_min + 0.01 * k for k in range(1, run - best + 1)]
    train = [val_min + 0.3 - 0.02 * e for e in range(1, run + 1)]
    return {"best_epoch": best, "epochs_run": run, "val_cross_entropy": val_min, "train_cross_entropy": val_min - gap,
            "test_cross_entropy": test, "perplexity": float(np.exp(test)), "top1_accuracy": 0.3, "top10_accuracy": 0.7,
            "history": {"train_loss": train, "val_loss": val}}


def _q2(nets, tuned_per_seed, kn, mix_per_seed, freq):
    m = {"settings": {"settings": [list(s) for s in SETTINGS]}, "data": {"n_train": N_TRAIN, "vocab_size": 250},
         "kneser_ney": {"test_cross_entropy": kn, "val_cross_entropy": kn - 0.02, "perplexity": float(np.exp(kn)),
                        "top1_accuracy": 0.35, "top10_accuracy": 0.72}}
    for (d, p), net in zip(SETTINGS, nets):
        m[f"D={d},P={p}"] = _net(*net)
    t = np.asarray(tuned_per_seed)
    m["tuned"] = {"setting": {"D": 128, "P": 1024, "dropout": 0.4, "lr": 0.003, "epochs": 15, "batch": 200,
                              "weight_decay": 0.0, "warmup": 0.5, "optimizer": "adam"},
                  "n_params": 250 * 128 + 3 * 128 * 1024 + 1024 + 1024 * 250 + 250, "seeds": [0, 1, 2],
                  "test_cross_entropy": float(t.mean()), "test_cross_entropy_std": float(t.std(ddof=1)),
                  "test_cross_entropy_per_seed": t.tolist(), "val_cross_entropy": float(t.mean()) - 0.01,
                  "train_cross_entropy": float(t.mean()) - 0.25, "perplexity": float(np.exp(t.mean())),
                  "top1_accuracy": 0.37, "top10_accuracy": 0.74, "best_epoch": 14, "epochs_run": 15}
    x = np.asarray(mix_per_seed)
    m["interpolated_tuned"] = {"components": ["tuned", "kneser_ney"], "test_cross_entropy": float(x.mean()),
                               "test_cross_entropy_std": float(x.std(ddof=1)), "test_cross_entropy_per_seed": x.tolist(),
                               "weight": 0.6, "perplexity": float(np.exp(x.mean())), "top1_accuracy": 0.38,
                               "top10_accuracy": 0.75, "seeds": [0, 1, 2]}
    chosen = min((f"D={d},P={p}" for d, p in SETTINGS), key=lambda k: m[k]["val_cross_entropy"])
    share, kn_bins, tuned_bins, chosen_bins = freq
    m["by_context_frequency"] = {"bins": ["0", "1-5", "6-50", ">50"], "share": share, "n": [int(s * 1000) for s in share],
                                 "cross_entropy": {"kneser_ney": kn_bins, "tuned": tuned_bins, chosen: chosen_bins},
                                 "seeds": {"kneser_ney": 1, "tuned": 3, chosen: 1}}
    return m


# run A: the largest network overfits first and widest; the tuned network beats the counts, most where they are fewest
RUN_A = _q2([(12, 17, 2.70, 0.20, 2.71), (20, 25, 2.72, 0.14, 2.75), (40, 40, 2.85, 0.09, 2.88)],
            [2.600, 2.605, 2.596], 2.638, [2.520, 2.523, 2.518],
            ([0.4, 0.3, 0.25, 0.05], [3.5, 2.6, 2.0, 1.5], [3.3, 2.5, 1.99, 1.6], [3.55, 2.7, 2.1, 1.6]))
# run B: the opposite everywhere
RUN_B = _q2([(40, 40, 2.80, 0.05, 2.81), (10, 15, 2.75, 0.12, 2.76), (8, 13, 2.90, 0.20, 2.91)],
            [2.70, 2.64, 2.66], 2.60, [2.62, 2.59, 2.61],
            ([0.2, 0.3, 0.3, 0.2], [3.2, 2.5, 2.2, 1.8], [3.3, 2.45, 2.3, 1.9], [3.5, 2.6, 2.25, 1.85]))


def _floats(text):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


@pytest.mark.parametrize("run", [RUN_A, RUN_B], ids=["run A", "run B"])
def test_overfitting_claims_match_the_numbers(run):
    sentences = findings.q2_overfitting(run)
    names = findings.q2_settings(run)
    for k, s in zip(names, sentences):
        r = run[k]
        e, last = r["best_epoch"], r["epochs_run"]
        assert s.startswith(f"({k[2:].replace(',P=', ', ')})")
        if e < last:
            assert f"starts to overfit after epoch {e} of {last}" in s and f"over the {last - e} epochs after" in s
            assert "keeps falling" in s  # the training loss does, in these histories
        else:
            assert f"does not overfit within its {last} epochs" in s
        gap = r["val_cross_entropy"] - r["train_cross_entropy"]
        assert f"gap of its kept parameters is {gap:.3g} nats" in s
    summary = sentences[-1]
    n = {k: findings.q2_n_params(run, k) for k in names}
    assert n["D=32,P=256"] == 250 * 32 + 96 * 256 + 256 + 256 * 250 + 250
    order = sorted(names, key=lambda k: -n[k])
    assert summary.startswith("Parameters: " + "; ".join(f"({k[2:].replace(',P=', ', ')}) {n[k]:,}" for k in order[:1]))
    assert f"{n[order[0]] / N_TRAIN:.2g} per training 4-gram" in summary
    turns = [run[k]["best_epoch"] + (run[k]["best_epoch"] == run[k]["epochs_run"]) for k in order]
    gaps = [run[k]["val_cross_entropy"] - run[k]["train_cross_entropy"] for k in order]
    earlier, wider = turns == sorted(turns), gaps == sorted(gaps, reverse=True)
    assert ("no later for a larger network" in summary) == earlier
    assert ("wider for a larger network" in summary) == wider
    verdict = "bears this out" if earlier and wider else "only partly" if earlier or wider else "does not bear"
    assert verdict in summary


def test_the_two_runs_give_opposite_overfitting_verdicts():
    a, b = findings.q2_overfitting(RUN_A)[-1], findings.q2_overfitting(RUN_B)[-1]
    assert "The run bears this out" in a and "does not bear this out" in b


@pytest.mark.parametrize("run", [RUN_A, RUN_B], ids=["run A", "run B"])
def test_tuned_claims_match_the_numbers(run):
    text = " ".join(findings.q2_tuned(run))
    t, kn, mix = run["tuned"], run["kneser_ney"]["test_cross_entropy"], run["interpolated_tuned"]
    a = t["test_cross_entropy"]
    assert f"test cross-entropy of {a:.4g} nats (± {t['test_cross_entropy_std']:.2g} over 3 seeds: " in text
    assert f"{'lower' if a < kn else 'higher'} than Kneser-Ney's {kn:.4g} by {abs(a - kn):.2g} nats" in text
    assert f"{'more than' if abs(a - kn) > t['test_cross_entropy_std'] else 'within'} the spread" in text
    assert f"{sum(v < kn for v in t['test_cross_entropy_per_seed'])} of 3 seeds are below Kneser-Ney" in text
    c = mix["test_cross_entropy"]
    assert ("lower still than either alone" in text) == (c < min(a, kn))
    assert "D = 128, P = 1024; dropout 0.4 on the hidden layer, Adam at a peak rate of 0.003 (0.5 epoch of warm-up" in text
    ratio = t["n_params"] / findings.q2_n_params(run, "D=32,P=256")
    assert f"{t['n_params']:,} parameters, {ratio:.2g} times (32, 256)'s" in text
    big = run["D=32,P=256"]
    g_t = t["val_cross_entropy"] - t["train_cross_entropy"]
    g_b = big["val_cross_entropy"] - big["train_cross_entropy"]
    assert f"gap at its kept epoch is {g_t:.3g} nats against (32, 256)'s {g_b:.3g}" in text
    assert ("keeps the larger network from overfitting more" in text) == (g_t <= g_b)
    if g_t > g_b:
        better = t["val_cross_entropy"] < big["val_cross_entropy"]
        assert f"its validation cross-entropy is {'lower' if better else 'higher'}" in text
        assert f"({t['val_cross_entropy']:.4g} against {big['val_cross_entropy']:.4g})" in text


@pytest.mark.parametrize("run", [RUN_A, RUN_B], ids=["run A", "run B"])
def test_context_frequency_claims_match_the_numbers(run):
    sentences = findings.q2_context_frequency(run)
    f = run["by_context_frequency"]
    assert "never seen in training for 40.0 % of the test rows" in sentences[0] or f["share"][0] != 0.4
    words = findings.FREQ_WORDS
    kn = f["cross_entropy"]["kneser_ney"]
    chosen = findings.q2_chosen(run)
    for s, name in zip(sentences[1:], ("tuned", chosen)):
        d = [a - b for a, b in zip(f["cross_entropy"][name], kn)]
        first = s.split(". ")[0]
        lower = first.partition(" and higher in contexts ")[0] if " is lower " in first else ""
        for b, x in zip(f["bins"], d):
            assert (words[b] in lower) == (x < 0), (b, x, s)
            assert f"{words[b]} (by {abs(x):.2g})" in first
        if name == "tuned":
            lead = f["bins"][int(np.argmin(d))]
            assert f"Its lead is largest in {'the ' if lead == '0' else ''}contexts {words[lead]}" in s
            assert ("as the reason predicts" in s) == (lead == "0")
        else:
            parts = [x * w for x, w in zip(d, f["share"])]
            assert f"whole gap of {sum(parts):.2g} nats" in s
            k = int(np.argmax(parts))
            assert f"contexts {words[f['bins'][k]]} contribute the most ({max(parts):.2g})" in s
            seen = sum(parts[1:])
            if seen > parts[0]:
                assert f"contexts seen in training, whose continuations the counts record and a network has to fit, " \
                       f"make {seen:.2g} of it" in s
                assert ("one of fitting, not of generalising" in s) == (d[0] <= 0)
                td = [a - b for a, b in zip(f["cross_entropy"]["tuned"], kn)]
                a, b = run["tuned"]["train_cross_entropy"], run[name]["train_cross_entropy"]
                assert f"fits the training 4-grams {'more' if a < b else 'less'} closely" in s
                assert f"is below Kneser-Ney in {sum(x < 0 for x in td[1:])} of the 3 groups of seen contexts" in s
            else:
                assert f"contexts never seen in training make the larger part ({parts[0]:.2g})" in s


def test_findings_stay_silent_without_their_numbers():
    m = {"settings": {"settings": [list(s) for s in SETTINGS]}}
    assert findings.q2_overfitting(m) == [] and findings.q2_tuned(m) == [] and findings.q2_context_frequency(m) == []


def test_the_report_shows_the_models_table_and_the_tuned_part(tmp_path):
    q2 = tmp_path / "q2"
    q2.mkdir()
    (q2 / "metrics.json").write_text(json.dumps(RUN_A))
    for name in ("loss_D32_P256", "loss_D16_P128", "loss_D8_P64", "loss_tuned", "context_frequency"):
        (q2 / f"{name}.png").write_bytes(PNG)
    lines = report.q2_section(q2, report.Figures())
    text = "\n".join(lines)
    assert "| model | parameters | training CE | validation CE | test CE |" in text
    t = RUN_A["tuned"]
    assert (f"| tuned network | {t['n_params']:,} | {t['train_cross_entropy']:.4f} | {t['val_cross_entropy']:.4f} | "
            f"{t['test_cross_entropy']:.4f} ± {t['test_cross_entropy_std']:.4f} |") in text
    assert "| mixture: tuned network + Kneser-Ney (4-gram counts) (weight 0.60) |" in text
    assert text.index("| (32, 256) |") < text.index("| (16, 128) |") < text.index("| tuned network |")
    assert "### c) A tuned network against counting" in text
    figures = re.findall(r"!\[Figure (\d+): ([^\]]+)\]\(q2/(\w+)\.png\)", text)
    assert [f[2] for f in figures] == ["loss_D32_P256", "loss_D16_P128", "loss_D8_P64", "loss_tuned",
                                       "context_frequency"]
    assert [int(f[0]) for f in figures] == [1, 2, 3, 4, 5]
    c = text.split("### c)")[1]
    assert "starts to overfit" not in c and "The tuned network (D = 128" in c and "By how often" in c
