"""The text tables the experiments write beside their figures: Q2's ``table.txt`` and
``samples.txt``, Q3's ``comparison.md``. Each takes the records of ``metrics.json``."""
from __future__ import annotations


def q2_table(rows: dict) -> str:
    """Test cross-entropy, perplexity, top-1 / top-10 accuracy per model (``rows``: name -> record)."""
    head = f"{'model':<24}{'test CE':>9}{'perplexity':>12}{'top-1':>8}{'top-10':>8}  notes"
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        note = f"best epoch {m['best_epoch']} of {m['epochs_run']}" if "best_epoch" in m else ""
        if "weight" in m:
            note = f"weight of the network {m['weight']:.2f} (chosen on validation)"
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
    """The Markdown table of Q3's models (``results``: name -> record). With repeated seeds
    (``over_seeds`` in a record) two more columns, the test accuracy's mean ± std over seeds
    and each seed's; the other columns are then the first seed's run."""
    seeds = next((r["over_seeds"]["seeds"] for r in results.values() if "over_seeds" in r), None)
    head = "| model | learning rate | epochs (best) | train acc. | val. acc. | test acc. | s / epoch |"
    if seeds:
        head += f" test acc. over {len(seeds)} seeds (mean ± std) | test acc. per seed ({', '.join(map(str, seeds))}) |"
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    for name, r in results.items():
        row = (f"| {'logistic baseline' if name == 'baseline' else name.upper()} | {r['learning_rate']:g} | "
               f"{r['epochs_run']} ({r['best_epoch']}) | {r['train_accuracy']:.1%} | {r['val_accuracy']:.1%} | "
               f"{r['test_accuracy']:.1%} | {r['seconds_per_epoch']:.2f} |")
        acc = r.get("over_seeds", {}).get("test_accuracy")
        if seeds:
            row += (f" {100 * acc['mean']:.1f} ± {100 * acc['std']:.1f} % | "
                    + ", ".join(f"{100 * v:.1f}" for v in acc["per_seed"]) + " % |") if acc else " | |"
        rows.append(row)
    rows.append(f"| chance (1/C) | | | | | {chance:.1%} | |" + (" | |" if seeds else ""))
    if seeds:
        modes = sorted({r["seed_sweep"]["mode"] for r in results.values() if "seed_sweep" in r})
        how = " / ".join("as one vmapped program" if m == "vmap" else "one after another" for m in modes)
        rows += ["", f"Each recurrent model trained with seeds {', '.join(map(str, seeds))} (initial parameters and "
                 f"shuffling; the same data split), {how}; std is the sample standard deviation. The other columns "
                 f"are seed {seeds[0]}'s run" + ("; its s / epoch is its share of the vmapped program"
                                                 if "vmap" in modes else "") + ". The baseline is trained once."]
    return "\n".join(rows) + "\n"
