"""The text tables the experiments write beside their figures: Q2's ``table.txt`` and
``samples.txt``, Q3's ``comparison.md``. Each takes the records of ``metrics.json``."""
from __future__ import annotations


def q2_table(rows: dict) -> str:
    """Test cross-entropy, perplexity, top-1 / top-10 accuracy per model (``rows``: name -> record).
    A record over seeds (``test_cross_entropy_per_seed``) shows its means and says so."""
    head = f"{'model':<24}{'test CE':>9}{'perplexity':>12}{'top-1':>8}{'top-10':>8}  notes"
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        note = f"best epoch {m['best_epoch']} of {m['epochs_run']}" if "best_epoch" in m else ""
        if "weight" in m:
            note = f"weight of the network {m['weight']:.2f} (chosen on validation)"
        if len(m.get("test_cross_entropy_per_seed") or ()) > 1:
            k = len(m["test_cross_entropy_per_seed"])
            over = f"mean of {k} seeds, std {m['test_cross_entropy_std']:.4f}"
            note = over + ("; mean " + note if "weight" in m else f"; seed {m['seeds'][0]}'s {note}" if note else "")
        lines.append(f"{name:<24}{m['test_cross_entropy']:>9.4f}{m['perplexity']:>12.3f}"
                     f"{100 * m['top1_accuracy']:>7.2f}%{100 * m['top10_accuracy']:>7.2f}%  {note}")
    return "\n".join(lines) + "\n"


def q2_samples(samples: list) -> str:
    """Each sample trigram: the true fourth word, its probability and rank, and the top 10."""
    out = []
    for i, s in enumerate(samples, 1):
        out.append(f"sample {i} (test row {s['index']}): “{s['trigram']}” → true “{s['true']}” "
                   f"p={s['p_true']:.4f}, rank {s['rank_true'] + 1}; Kneser-Ney p={s['p_true_kneser_ney']:.4f}")
        out += [f"  {j:>2}. {w:<12} {p:.4f}" + ("  ← true" if w == s["true"] else "")
                for j, (w, p) in enumerate(s["top10"], 1)]
    return "\n".join(out) + "\n"


def q3_comparison(results: dict, chance: float) -> str:
    """The Markdown table of Q3's models (``results``: name -> record of
    :func:`mp_jax.protocols.activity.run_model` or ``run_baseline``): the validation run's
    accuracy, the test accuracy and loss over seeds (mean ± sample std, and each seed's),
    the training accuracy, the time; then every pair's gap against the spread over seeds."""
    seeds = next(iter(results.values()))["seeds"]
    per = f"test acc. per seed ({', '.join(map(str, seeds))})"
    head = (f"| model | peak learning rate | epochs (best val.) | val. acc. (seed {seeds[0]}) | test acc. (mean ± std) | "
            f"test loss (mean ± std) | {per} | train acc. | s / epoch | seconds |")
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    for name, r in results.items():
        rows.append(
            f"| {label(name)} | {r['learning_rate']:g} | {r['epochs']}{best_epoch(r)} | {r['val_accuracy']:.1%} | "
            f"{100 * r['test_accuracy']:.1f} ± {100 * r['test_accuracy_std']:.1f} % | "
            f"{r['test_loss']:.3f} ± {r['test_loss_std']:.3f} | "
            + ", ".join(f"{100 * v:.1f}" for v in r["test_accuracy_per_seed"]) + " % | "
            f"{r['train_accuracy']:.1%} | {r['seconds_per_epoch']:.2f} | {r['seconds']:.0f} |")
    rows.append(f"| chance (1/C) | | | | {chance:.1%} | | | | | |")
    if len(seeds) < 2:
        return "\n".join(rows + ["", "One seed: no spread over seeds to weigh the gaps against (`--seeds 3`)."]) + "\n"
    lines = ["", f"Gaps in mean test accuracy over the {len(seeds)} seeds, against the spread (the sum of the two "
             "standard deviations; a gap larger than the spread is one the seeds do not explain):", ""]
    for a, b, cmp in seed_gaps(results):
        lines.append(f"- {label(a)} − {label(b)}: {100 * cmp['gap']:+.1f} points, spread {100 * cmp['spread']:.1f}: "
                     + ("larger than the spread" if cmp["exceeds"] else "within the spread"))
    return "\n".join(rows + lines) + "\n"


def best_epoch(r: dict) -> str:
    """ " (43)": the validation run's epoch of lowest validation loss, when recorded."""
    e = (r.get("validation") or {}).get("best_epoch")
    return f" ({e})" if isinstance(e, int) else ""


def label(name: str) -> str:
    """A Q3 model's name in tables and prose."""
    return "logistic baseline" if name == "baseline" else name.upper()


def seed_gaps(results: dict) -> list:
    """``[(a, b, metrics.compare_over_seeds)]`` of the test accuracies, for every pair of
    models in ``results`` order."""
    from mp_jax.engine import metrics

    names = list(results)
    return [(a, b, metrics.compare_over_seeds(results[a]["test_accuracy_per_seed"], results[b]["test_accuracy_per_seed"]))
            for i, a in enumerate(names) for b in names[i + 1:]]
