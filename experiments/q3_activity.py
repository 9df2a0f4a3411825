"""Q3: activity recognition with an RNN, an LSTM and a GRU (manual BPTT, docs/recurrent.md),
beside a non-neural baseline (multinomial logistic regression on per-window statistics).

H = 128 units, a ReLU layer of 128 on h_T, softmax; SGD with momentum 0.85, batch 32, at most
50 epochs, global-norm clipping at 1.0, per-model learning rates (:class:`Q3Config`); inputs
standardized with training statistics; about 10 % of the training windows (whole subjects
when the file has subject ids) held out for early stopping (patience 10; docs/training.md).
``--impl fast`` (the default) trains on :mod:`mp_jax.models.recurrent_fast`, ``--impl
reference`` on :mod:`mp_jax.models.recurrent`: the same function, the same parameters.

``--seeds K`` trains each model for seeds S … S+K−1 (S = ``--seed``): member j's parameters
and shuffling as ``--seed S+j`` draws them, the data side from S. The members train one after
another on a CPU (each checkpointed per epoch), as one vmapped program on an accelerator
(saved when finished); ``--vmap`` / ``--no-vmap`` override. Writes ``<results-dir>/q3/``:
``metrics.json``, ``comparison.md``, per model ``<model>_confusion.png`` and ``<model>_loss.png``,
``baseline_confusion.png`` and ``loss_all.png``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, plotting, runner, tables
from mp_jax import cli, distributed, metrics, train
from mp_jax.data import load_activity, splits
from mp_jax.models import logistic, recurrent, recurrent_fast

log = logging.getLogger("experiments.q3")
MODELS = ("rnn", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Q3Config(common.RunOptions):
    """Q3's settings (the defaults are the report's; :meth:`quick` the tiny ones)."""

    FLAGS = ("epochs", "seeds", "impl", "models", "learning_rates")
    models: tuple = MODELS
    hidden: int = 128
    mlp: int = 128
    batch_size: int = 32
    epochs: int = 50
    momentum: float = 0.85
    clip_norm: float = 1.0
    patience: int = 10
    val_fraction: float = 0.1
    # Chosen on the stand-in by the best validation loss of full runs (seed 0) at several rates:
    # RNN 0.01: 1.20, 0.001: 1.04; LSTM 0.1: 0.746, 0.01: 0.725; GRU 0.1: 0.935, 0.03: 0.772,
    # 0.01: 0.675 (the report's rates were RNN 0.001, LSTM 0.01, GRU 0.1).
    learning_rates: tuple = (("rnn", 0.001), ("lstm", 0.01), ("gru", 0.01))
    seeds: int = 1  # members per model: seeds S … S+K−1
    impl: str = "fast"  # the recurrences' gradients: "fast" or "reference" (common.IMPLS)
    n_train: Optional[int] = None  # a random subset of the windows (None: all)
    n_test: Optional[int] = None
    baseline_lr: float = 0.1
    baseline_momentum: float = 0.9
    baseline_batch: int = 32
    baseline_epochs: int = 200
    baseline_patience: int = 20
    baseline_l2: float = 1e-4

    @classmethod
    def quick(cls, **changes) -> "Q3Config":
        return cls(**{**dict(is_quick=True, hidden=16, mlp=16, epochs=2, n_train=320, n_test=120, baseline_epochs=5),
                      **changes})

    def lr(self, cell: str) -> float:
        return dict(self.learning_rates)[cell]

    def fit(self, cell: str) -> tuple:
        """(optimizer, FitConfig) of a recurrent model."""
        return (train.sgd_momentum(self.lr(cell), self.momentum, clip_norm=self.clip_norm),
                train.FitConfig(epochs=self.epochs, batch_size=self.batch_size, patience=self.patience))

    def run_config(self, cell: str, seed: int, data_seed: Optional[int] = None) -> dict:
        """The settings that key a run's checkpoint (``data_seed`` only when it is not ``seed``)."""
        keys = ("hidden", "mlp", "batch_size", "epochs", "momentum", "clip_norm", "patience", "impl")
        config = dict(model=cell, learning_rate=self.lr(cell), **{k: getattr(self, k) for k in keys}, seed=seed,
                      quick=bool(self.is_quick))
        return config if data_seed in (None, seed) else {**config, "data_seed": data_seed}


Config = Q3Config


class Activity(NamedTuple):
    path: Any
    attrs: dict
    data_id: str
    names: tuple  # class names
    sets: splits.ActivitySets  # standardized training, validation and test windows

    xy = property(lambda self: (self.sets.train, self.sets.val, self.sets.test))  # (x, y) of each split


def load(c: Q3Config) -> Activity:
    path = common.resolve_data("q3", c.data_dir)
    data = load_activity(path)
    sets = splits.activity_sets(data, c.val_fraction, np.random.default_rng(c.seed), n_train=c.n_train,
                                n_test=c.n_test, batch_size=c.batch_size if c.is_quick else None)
    return Activity(path, data.attrs, common.file_digest(path), tuple(data.class_names), sets)


def member_key(seed: int, cell: str) -> jax.Array:
    """The key of ``cell``'s run with ``--seed seed``: ``PRNGKey(seed)`` split into one key
    for the baseline and one per model of ``MODELS`` (split again into init and shuffling)."""
    return jax.random.split(jax.random.PRNGKey(seed), 1 + len(MODELS))[1 + MODELS.index(cell)]


def member_init(cell: str, key: jax.Array, n_in: int, c: Q3Config, n_classes: int, dtype=jnp.float32):
    """(initial parameters, shuffling key) of one run from its model key."""
    k_init, k_fit = jax.random.split(key)
    return recurrent.init_params(k_init, cell, n_in, c.hidden, c.mlp, n_classes, dtype), k_fit


def gradients(impl: str) -> tuple:
    """(loss_and_grad for a run alone, loss_and_grad for a vmapped sweep) that ``impl`` names."""
    if impl == "fast":
        return recurrent_fast.loss_and_grad_reusing, recurrent_fast.loss_and_grad
    if impl == "reference":
        return recurrent.loss_and_grad, recurrent.loss_and_grad
    raise ValueError(f"--impl must be one of {common.IMPLS}, found {impl!r}")


def train_seeds(cell: str, seeds: list, train_data, val_data, c: Q3Config, n_classes: int, *, vmap: bool,
                data_seed: Optional[int] = None, data_id: Optional[str] = None) -> list:
    """``cell`` trained once per seed on the same data: [:class:`experiments.runner.Member`] in
    the order of ``seeds``. Member j is the run ``--seed seeds[j]`` trains (:func:`member_key`);
    ``vmap``, ``data_id``: see :func:`experiments.runner.fit_members` (None: no checkpoints)."""
    data_seed = seeds[0] if data_seed is None else data_seed
    n_in, dtype = train_data[0].shape[-1], train_data[0].dtype
    (opt, fit_config), (alone, vmapped) = c.fit(cell), gradients(c.impl)
    return runner.fit_members(
        [f"q3_{cell}" if seed == data_seed else f"q3_{cell}_seed{seed}" for seed in seeds],
        [c.run_config(cell, seed, data_seed) for seed in seeds],
        [member_init(cell, member_key(seed, cell), n_in, c, n_classes, dtype) for seed in seeds],
        vmap=vmap, group=f"q3_{cell}_seeds{seeds[0]}-{seeds[-1]}_vmap", data_id=data_id, loss_and_grad=alone,
        vmapped_loss_and_grad=vmapped, optimizer=opt, train_data=train_data, fit_config=fit_config, val_data=val_data,
        metrics_fn=recurrent.metrics, progress=c.progress, split_over_cpu_cores=True)


def summary(cms: dict, m: runner.Member, lr: float) -> dict:
    """One model's numbers for ``metrics.json``: accuracies and confusion matrices per split,
    time per epoch (as recorded), epochs, learning rate, history."""
    secs = m.history.get("epoch_seconds", [])
    return {**metrics.classification_summary(cms), "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan"),
            "seconds_per_epoch_median": float(np.median(secs)) if secs else float("nan"), "seconds": m.seconds,
            "loaded": m.loaded, "epochs_run": int(m.epochs_run), "best_epoch": int(m.best_epoch),
            "stopped_early": bool(m.stopped_early), "learning_rate": lr, "diverged": m.diverged, "history": m.history}


def confusions(predict, params, sets: tuple, n_classes: int) -> dict:
    """Confusion matrices of ``predict`` on the (training, validation, test) ``sets`` of (x, y)."""
    chunk = min(1024, max(len(y) for _, y in sets))
    return {split: metrics.confusion(y, metrics.chunked(predict, params, x, chunk), n_classes)
            for split, (x, y) in zip(("train", "validation", "test"), sets)}


def run_model(cell: str, d: Activity, c: Q3Config, out) -> dict:
    """``cell`` trained for every seed: member 0's summary, with the statistics over seeds."""
    seeds = [c.seed + j for j in range(c.seeds)]
    vmap = common.use_vmap(c.vmap) and len(seeds) > 1
    (x_tr, y_tr), (x_va, y_va), _ = d.xy
    members = train_seeds(cell, seeds, (jnp.asarray(x_tr), jnp.asarray(y_tr)), (jnp.asarray(x_va), jnp.asarray(y_va)),
                          c, len(d.names), vmap=vmap, data_seed=c.seed, data_id=d.data_id)
    cms = [confusions(jax.jit(recurrent.predict), m.params, d.xy, len(d.names)) for m in members]
    rows = [summary(cm, m, c.lr(cell)) for cm, m in zip(cms, members)]
    res = dict(rows[0])
    what = f"H={c.hidden}, lr={c.lr(cell)}" + (f", seed {seeds[0]} of {len(seeds)}" if len(seeds) > 1 else "")
    plotting.q3_model_figures(cell, cms[0], res["history"], res["best_epoch"], d.names, what, out)
    log.info("%s: test accuracy %s, train %.3f, %.2f s/epoch, %d epochs, %s", cell,
             ", ".join(f"{r['test_accuracy']:.3f}" for r in rows), res["train_accuracy"], res["seconds_per_epoch"],
             res["epochs_run"], plotting.time_label(sum(m.seconds for m in members), members[0].loaded))
    if len(seeds) == 1:
        return res
    keep = ("test_accuracy", "train_accuracy", "val_accuracy", "epochs_run", "best_epoch", "stopped_early", "diverged",
            "confusion_test", "history")
    over = {k: metrics.mean_std([r[k] for r in rows]) for k in keep[:3]}
    return {**res, "test_accuracy_mean": over["test_accuracy"]["mean"], "test_accuracy_std": over["test_accuracy"]["std"],
            "over_seeds": {"seeds": seeds, "std_ddof": 1, **over, **{k: [r[k] for r in rows] for k in keep[3:5]}},
            "members": [{"seed": seed, **{k: r[k] for k in keep}} for seed, r in zip(seeds, rows)],
            "seed_sweep": {"mode": "vmap" if vmap else "sequential", "members": len(seeds),
                           "seconds": float(sum(m.seconds for m in members)),
                           "loaded_members": sum(m.loaded for m in members)}}


def run_baseline(d: Activity, c: Q3Config, key, out) -> dict:
    feats = [logistic.window_features(jnp.asarray(x)) for x, _ in d.xy]
    st = logistic.fit_standardizer(feats[0])
    sets = [(logistic.standardize(f, st), jnp.asarray(y)) for f, (_, y) in zip(feats, d.xy)]
    config = dict(model="logistic", features=list(logistic.FEATURES), seed=c.seed, quick=bool(c.is_quick),
                  **{k: v for k, v in dataclasses.asdict(c).items() if k.startswith("baseline_")})
    fit_config = train.FitConfig(epochs=c.baseline_epochs, batch_size=c.baseline_batch, patience=c.baseline_patience)
    member = runner.fit_member(
        "q3_baseline_logistic", config=config, data_id=d.data_id,
        loss_and_grad=functools.partial(logistic.loss_and_grad, hp=logistic.LogisticHP(l2=c.baseline_l2)),
        optimizer=train.sgd_momentum(c.baseline_lr, c.baseline_momentum),
        params=logistic.init_params(key, sets[0][0].shape[1], len(d.names)), train_data=sets[0], key=key,
        val_data=sets[1], metrics_fn=logistic.metrics, fit_config=fit_config, progress=c.progress)
    cms = confusions(jax.jit(logistic.predict), member.params, sets, len(d.names))
    res = {**summary(cms, member, c.baseline_lr),
           "model": "multinomial logistic regression on standardized per-axis mean, std, min, max, energy"}
    plotting.confusions({"training": cms["train"], "test": cms["test"]}, d.names, out / "baseline_confusion.png",
                        "Q3 baseline (logistic regression on window statistics): confusion matrices")
    log.info("baseline: test accuracy %.3f, train %.3f", res["test_accuracy"], res["train_accuracy"])
    return res


def run(config: Q3Config) -> dict:
    c, out = config, common.question_dir(config.results_dir, "q3")
    d = load(c)
    common.announce_data("q3", d.path, d.attrs)
    (_, y_tr), (_, y_va), (_, y_te) = d.xy
    how = d.sets.how
    log.info("q3: %d train / %d validation (%s-wise%s) / %d test windows, classes %s", len(y_tr), len(y_va),
             how["kind"], f", subjects {how['subjects']}" if how["subjects"] else "", len(y_te), list(d.names))
    results = {cell: run_model(cell, d, c, out) for cell in MODELS if cell in c.models}
    k_base = jax.random.split(jax.random.PRNGKey(c.seed), 1 + len(MODELS))[0]  # the models': member_key
    results["baseline"] = run_baseline(d, c, k_base, out)
    plotting.all_losses({m.upper(): r["history"] for m, r in results.items() if m != "baseline"
                         and r["history"].get("train_loss")}, out / "loss_all.png",
                        "Q3: training (dashed) and validation loss per model")
    chance = 1.0 / len(d.names)
    table = tables.q3_comparison(results, chance)
    common.write_text(out / "comparison.md", table)
    metrics_ = {
        "question": "q3",
        "data": {"path": str(d.path), "digest": d.data_id, "source": common.describe_source(d.attrs),
                 "recipe": d.attrs.get("recipe"), "class_names": list(d.names), "n_train": int(len(y_tr)),
                 "n_val": int(len(y_va)), "n_test": int(len(y_te)), "validation": how,
                 "channel_mean": d.sets.mean.tolist(), "channel_std": d.sets.std.tolist()},
        "settings": {**dataclasses.asdict(c), "learning_rates": dict(c.learning_rates), "vmap": common.use_vmap(c.vmap),
                     "devices": [str(x) for x in jax.devices()]},
        "chance_accuracy": chance,
        "majority_test_accuracy": float(np.bincount(y_te, minlength=len(d.names)).max() / len(y_te)),
        "training": runner.training_summary(),
        **results,
    }
    common.write_json(out / "metrics.json", metrics_)
    sweeps = [(m, results[m]["seed_sweep"]) for m in c.models if "seed_sweep" in results[m]]
    print(table + "".join(f"  {m}: {t['members']} seeds ({t['mode']}), {t['seconds']:.1f}s, {t['loaded_members']} "
                          f"loaded\n" for m, t in sweeps) + f"q3: wrote {out}/metrics.json and figures")
    return metrics_


parse_models = functools.partial(common.parse_names, choices=MODELS, flag="--models")
parse_lrs = functools.partial(common.parse_assignments, choices=MODELS, flag="--lr", defaults=Q3Config.learning_rates)


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q3_activity", __doc__.split("\n\n")[0])
    p.add_argument("--models", type=parse_models, help="comma-separated subset of rnn,lstm,gru (default all)")
    p.add_argument("--lr", dest="learning_rates", type=parse_lrs, metavar="MODEL=RATE,...", help="learning rates, e.g. "
                   f"'rnn=0.01,gru=0.1' or 'all=0.1' (defaults {dict(Q3Config.learning_rates)})")
    p.add_argument("--epochs", type=cli.positive_int, help="maximum epochs (default 50; --quick 2)")
    p.add_argument("--seeds", type=cli.positive_int, help="train each recurrent model K times, seeds S..S+K-1 "
                   "(S = --seed; initial parameters and shuffling; the same data split), and report the test "
                   "accuracy's mean and std over seeds (default 1)")
    return common.run_main("q3", p, Q3Config.from_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
