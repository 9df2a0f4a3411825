"""Q3: activity recognition with an RNN, an LSTM and a GRU (manual BPTT, docs/recurrent.md),
beside a non-neural baseline (multinomial logistic regression on per-window statistics).

H = 128 units, a ReLU layer of 128 on h_T, softmax; SGD with momentum 0.9, batch 32, global-norm
clipping at 1.0, 30 epochs with one epoch of warm-up and a cosine decay of the learning rate,
the last iterate kept; every training window randomly rotated and scaled each epoch; inputs
standardized with training statistics. The protocol (docs/training.md, "Q3's protocol"): a
validation run on the training part, scored on whole held-out subjects (20 % of the training
windows), then a refit on every training window for each of ``--seeds`` seeds (default 3),
scored once on the test windows. ``--impl fast`` (the default) trains on
:mod:`mp_jax.models.recurrent_fast`, ``--impl reference`` on :mod:`mp_jax.models.recurrent`:
the same function, the same parameters.

``--seeds K`` refits each model for seeds S … S+K−1 (S = ``--seed``): member j's parameters,
shuffling and augmentation as ``--seed S+j`` draws them, the data side from S. The members
train one after another on a CPU (each checkpointed per epoch), as one vmapped program on an
accelerator (saved when finished); ``--vmap`` / ``--no-vmap`` override. Writes
``<results-dir>/q3/`` (other settings: their own folder, e.g. ``q3_quick_models-rnn/``): ``metrics.json``, ``comparison.md``, per model ``<model>_confusion.png``
and ``<model>_loss.png``, ``baseline_confusion.png`` and ``loss_all.png``.

Beside the LSTM, the main job refits it once more with its forget-gate bias at 1
(``Q3Config.ablation_forget_bias``; Gers et al. 2000; Jozefowicz et al. 2015) instead of 0, for
seed S only by default (``--ablation-seeds K``: seeds S … S+K−1, 0: none), with the default
members' keys, so that the bias is the only difference: ``metrics.json`` keeps it under
``lstm_forget_bias_1``, beside ``lstm``, and ``lstm_forget_bias_1_loss.png`` compares the two
refits' training loss. ``--forget-bias B`` sets the LSTM's own.

``--recipe handout`` trains with the course handout's settings instead (:attr:`Q3Config.HANDOUT`:
η 0.1 for every model, constant, momentum 0.85, batch 32, 50 epochs, no clipping, no
augmentation, a random 10 % validation split with the best epoch kept, one run per model, no
refit; docs/recipes.md) and writes ``<results-dir>/q3_handout/`` beside the default results.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
from typing import Optional

import jax
import numpy as np

from experiments import common, files, plotting, tables
from experiments.config import RunOptions, seeds_past_max, use_vmap
from mp_jax.engine import augment, distributed, train
from mp_jax.runtime import cli
from mp_jax.runtime.errors import UserError
from mp_jax.protocols import activity, runs
from mp_jax.protocols.activity import MODELS

log = logging.getLogger("experiments.q3")


@dataclasses.dataclass(frozen=True)
class Q3Config(RunOptions):
    """Q3's settings (the defaults are the report's; :meth:`quick` the tiny ones).

    The peak learning rates and epochs were chosen on the stand-in by validation accuracy
    alone (``python -m experiments.q3_activity --select 0.01,0.03,0.1 --epochs 30``, then
    ``--select 0.03,0.1 --epochs 60``; seed 0, the training part of 2673 windows, validation
    subjects 4 and 7, 703 windows; the other settings as here)::

        model  rate   30 epochs   60 epochs
        RNN    0.01   68.0 %
        RNN    0.03   66.9 %      62.2 %
        RNN    0.1    57.8 %      63.2 %
        LSTM   0.01   72.0 %
        LSTM   0.03   74.7 %      80.1 %
        LSTM   0.1    72.0 %      82.4 %
        GRU    0.01   69.7 %
        GRU    0.03   76.5 %      82.1 %
        GRU    0.1    80.1 %      84.4 %

    Kept: RNN 0.01 for 30 epochs (longer training lowered its validation accuracy), LSTM 0.1
    for 60 epochs, GRU 0.1 for 30. Sixty epochs help both gated cells, but the main job keeps
    Q3 within about 8 minutes on 2 CPU cores, so they go to the cell that gains most from
    them (LSTM +7.7 points, GRU +4.3 points at each one's best rate); ``--epochs 60`` trains
    every model for 60. One validation run per cell is a noisy judge: the same setting
    trained on one device and on two (the same maths, sums in another order) can end points
    apart (LSTM, 0.1, 30 epochs: 82.2 % and 72.0 %); ``--select`` with ``--seeds 2`` or more
    averages over seeds.
    """

    FLAGS = ("epochs", "seeds", "impl", "models", "learning_rates", "augment", "select", "forget_bias",
             "ablation_seeds")
    # The course handout's recipe (``--recipe handout``, docs/recipes.md): its learning rate, momentum,
    # batch, epochs and 10 % random validation split with early stopping; a constant rate, no
    # clipping, no augmentation, one run per model on the training part (no refit over seeds).
    HANDOUT = dict(batch_size=32, momentum=0.85, epochs=50, epochs_per_model=(),
                   learning_rates=(("rnn", 0.1), ("lstm", 0.1), ("gru", 0.1)), schedule="constant", warmup_epochs=0.0,
                   clip_norm=None, keep="best", patience=None, val_fraction=0.1, validation="random", augment=False,
                   seeds=1, refit=False, ablation_seeds=0)
    models: tuple = MODELS
    hidden: int = 128
    mlp: int = 128
    batch_size: int = 32
    epochs: int = 30  # every run's epochs, except those of epochs_per_model ...
    epochs_per_model: tuple = (("lstm", 60),)  # ... (``--epochs N`` sets every model's to N)
    momentum: float = 0.9
    clip_norm: Optional[float] = 1.0  # global-norm clipping of the gradient (None: none)
    schedule: str = "warmup_cosine"  # or "constant": the peak rate throughout
    warmup_epochs: float = 1.0  # then a cosine decay to 0 at the last epoch (train.warmup_cosine)
    patience: Optional[int] = None  # the schedule runs to its end: no early stopping ...
    keep: str = "last"  # ... and the last iterate is the model ("best": the epoch of lowest validation loss)
    val_fraction: float = 0.2  # whole subjects when the file has subject ids (two on the stand-in) ...
    validation: str = "subject"  # ... or "random": a random share of the windows
    refit: bool = True  # after validation, refit on every training window per seed (False: the validation run is the model)
    augment: bool = True  # a random rotation and gain of every training window, each epoch
    rotation_degrees: float = 20.0
    gain_range: tuple = (0.9, 1.1)
    # peak learning rates chosen by validation accuracy (the table above; docs/training.md, "Q3's protocol")
    learning_rates: tuple = (("rnn", 0.01), ("lstm", 0.1), ("gru", 0.1))
    seeds: int = 3  # members per model: seeds S … S+K−1
    forget_bias: float = 0.0  # the LSTM's forget-gate bias at initialisation (recurrent.init_params)
    # the ablation: the LSTM refit again with this forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015),
    # seeds S … S+K−1 for K = ablation_seeds (0: none), beside the LSTM of forget_bias; metrics.json
    # "lstm_forget_bias_<b>"
    ablation_forget_bias: float = 1.0
    ablation_seeds: int = 1
    select: tuple = ()  # peak learning rates to compare on validation (run_selection) instead of the protocol
    impl: str = "fast"  # the recurrences' gradients: "fast" or "reference" (experiments.config.IMPLS)
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
        return cls(**{**dict(is_quick=True, hidden=16, mlp=16, epochs=2, epochs_per_model=(), seeds=1, n_train=320,
                             n_test=120, baseline_epochs=5), **changes})

    def batch_sizes(self) -> dict:
        return {"q3 batch": self.batch_size, "q3 baseline batch": self.baseline_batch}

    def usage_errors(self) -> list:
        if not self.refit and self.seeds > 1 and not self.select:
            return [f"argument --seeds: the {self.recipe} recipe trains one run per model and refits none, so "
                    f"--seeds {self.seeds} would train no more; leave --seeds out (or use --recipe default)"]
        if not self.refit and self.ablation_seeds > 0 and not self.select:
            return [f"argument --ablation-seeds: the forget-bias ablation is a refit, and the {self.recipe} recipe "
                    f"refits none; leave --ablation-seeds out (or use --recipe default)"]
        if self.ablation_seeds > self.seeds:
            return [f"argument --ablation-seeds: the ablation's seeds are among the models' seeds S … S+K−1 (K = "
                    f"--seeds {self.seeds}), so that each is compared with the same seed's LSTM; found "
                    f"--ablation-seeds {self.ablation_seeds}: give at most {self.seeds}, or more --seeds"]
        return seeds_past_max(self.seed, self.seeds)

    @classmethod
    def from_args(cls, args) -> "Q3Config":
        c = super().from_args(args)
        return dataclasses.replace(c, epochs_per_model=()) if getattr(args, "epochs", None) else c

    def n_epochs(self, cell: str) -> int:
        """The epochs of ``cell``'s runs."""
        return int(dict(self.epochs_per_model).get(cell, self.epochs))

    def lr(self, cell: str) -> float:
        return dict(self.learning_rates)[cell]

    def augmentation(self, mean, std):
        """The training windows' random transform, for windows standardized with ``mean`` and
        ``std`` <float>[D] (None when ``augment`` is off or the windows are not tri-axial)."""
        if not self.augment or len(mean) != 3:
            return None
        return augment.RotationGain(self.rotation_degrees, tuple(self.gain_range), tuple(float(v) for v in mean),
                                    tuple(float(v) for v in std))

    def fit(self, cell: str, n_train: int, augmentation=None) -> tuple:
        """(optimizer, FitConfig) of a recurrent model trained on ``n_train`` windows: SGD
        with momentum after global-norm clipping, the learning rate warmed up for
        ``warmup_epochs`` and decayed on a cosine to 0 at the last epoch."""
        epochs = self.n_epochs(cell)
        schedule = (self.lr(cell) if self.schedule == "constant" else
                    train.warmup_cosine(self.lr(cell), train.steps_per_epoch(n_train, self.batch_size), epochs,
                                        self.warmup_epochs))
        return (train.sgd_momentum(schedule, self.momentum, clip_norm=self.clip_norm),
                train.FitConfig(epochs=epochs, batch_size=self.batch_size, patience=self.patience, keep=self.keep,
                                augment=augmentation))

    def cell_run_key(self, data: str, split, cell: str, seed: int, data_seed: Optional[int] = None, **run) -> dict:
        """The checkpoint key of ``cell``'s run for ``seed`` (:meth:`run_key`; ``data_seed``, the
        seed of the data side, only when it is not ``seed``)."""
        more = {} if data_seed in (None, seed) else {"data_seed": data_seed}
        return self.run_key(data=data, split=split, model=cell, seed=seed, **more, **run)


Config = Q3Config


def load(c: Q3Config) -> activity.Activity:
    """The activity file (the course's, else the stand-in) split as ``c`` says (:func:`mp_jax.protocols.activity.split_data`)."""
    path = files.resolve_data("q3", c.data_dir)
    return activity.split_data(path, files.file_digest(path), c)


def model_figures(cell: str, res: dict, d: activity.Activity, c: Q3Config, out) -> None:
    """A model's confusion matrices (seed S's refit) and loss curves (its validation run and refit)."""
    what = f"H={c.hidden}, peak lr={c.lr(cell)}, seed {res['seeds'][0]}"
    plotting.q3_model_figures(cell, {"train": np.asarray(res["confusion_train"]), "test": np.asarray(res["confusion_test"])},
                              res["validation"]["history"], res["history"], d.names, what, out)


def run_selection(ctx: runs.RunContext, c: Q3Config, d: activity.Activity, out) -> dict:
    """The selection step alone (:func:`mp_jax.protocols.activity.select_rates`): writes
    ``selection.md`` and ``selection.json`` and returns the table. A rate whose run diverged
    is marked so; then the step ends with an error naming those runs (exit status 1)."""
    table, failed = activity.select_rates(ctx, c, d)
    s, seeds = d.sets, [c.seed + j for j in range(c.seeds)]
    how = s.how
    lines = [f"Validation runs (seeds {', '.join(map(str, seeds))}; training part {len(s.train[1])} windows; validation "
             + (f"subjects {how['subjects']}" if how["subjects"] else "windows") + f", {how['n_val']} windows):", "",
             "| model | peak learning rate | epochs | val. acc. (mean) | per seed | val. loss (mean) |",
             "|---|---|---|---|---|---|"]
    for cell, rows in table.items():
        for r in rows:
            head = f"| {cell.upper()} | {r['learning_rate']:g} | {r['epochs']} | "
            if r["val_accuracy"] is None:
                lines.append(head + "diverged | " + ", ".join(f"seed {sd}: {v}" for sd, v in zip(seeds, r["diverged"])
                                                             if v) + " | – |")
            else:
                lines.append(head + f"{r['val_accuracy']:.1%}{' (best)' if r['best'] else ''} | "
                             + ", ".join(f"{100 * v:.1f}" for v in r["val_accuracy_per_seed"])
                             + f" % | {r['val_loss']:.3f} |")
    text = "\n".join(lines) + "\n"
    files.write_text(out / "selection.md", text)
    files.write_json(out / "selection.json", {"validation": how, "seeds": seeds, "models": table})
    if distributed.is_writer():
        print(text + f"q3: wrote {out}/selection.md")
    if failed:
        raise UserError(f"training diverged: q3 --select: {'; '.join(failed)}; {out}/selection.md marks these rates "
                        f"as diverged and chooses among the others", hint="Leave them out, or lower them.")
    return table


def run(config: Q3Config, ctx: Optional[runs.RunContext] = None) -> dict:
    """Q3 end to end under ``ctx`` (default: no checkpoints, the default devices)."""
    c, out = config, files.question_dir(config.results_dir, config.results_name("q3"))
    ctx = ctx or runs.RunContext(progress=c.progress)
    d = load(c)
    files.announce_data("q3", d.path, d.attrs)
    if c.select:
        return run_selection(ctx, c, d, out)
    s, how = d.sets, d.sets.how
    log.info("q3: %d training windows (%d in the training part, %d of %s-wise validation%s) / %d test, classes %s",
             len(s.train_all[1]), len(s.train[1]), len(s.val[1]), how["kind"],
             f", subjects {how['subjects']}" if how["subjects"] else "", len(s.test[1]), list(d.names))
    results = {}
    for cell in (m for m in MODELS if m in c.models):
        results[cell] = activity.run_model(ctx, cell, d, c, vmap=use_vmap(c.vmap))
        model_figures(cell, results[cell], d, c, out)
    results["baseline"] = base = activity.run_baseline(ctx, d, c, activity.baseline_key(c.seed))
    plotting.confusions({"training": np.asarray(base["confusion_train"]), "test": np.asarray(base["confusion_test"])},
                        d.names, out / "baseline_confusion.png",
                        "Q3 baseline (logistic regression on window statistics): confusion matrices")
    plotting.all_losses({m.upper(): r["validation"]["history"] for m, r in results.items() if m != "baseline"},
                        out / "loss_all.png", f"Q3: training (dashed) and validation loss per model (validation "
                        f"runs, seed {c.seed})")
    flows = {m: r["gradient_flow"] for m, r in results.items() if "gradient_flow" in r}
    ablation = None
    if "lstm" in results:
        ablation = activity.run_forget_bias_ablation(ctx, d, c, vmap=use_vmap(c.vmap))
    if ablation is not None:
        name = activity.ablation_name(ablation["forget_bias"])
        flows[name] = ablation["gradient_flow"]
        plotting.all_losses({f"LSTM, b_f = {c.forget_bias:g}": results["lstm"]["history"],
                             f"LSTM, b_f = {ablation['forget_bias']:g}": ablation["history"]},
                            out / f"{name}_loss.png", f"Q3: the LSTM's refit (seed {c.seed}) with the forget-gate "
                            "bias at each value: training loss")
    if flows:
        labels = ({"lstm": f"LSTM, b_f = {c.forget_bias:g}", activity.ablation_name(ablation["forget_bias"]):
                   f"LSTM, b_f = {ablation['forget_bias']:g}"} if ablation is not None else {})
        plotting.gradient_flow(flows, out / "gradient_flow.png", labels)
    chance = 1.0 / len(d.names)
    table = tables.q3_comparison(results, chance)
    files.write_text(out / "comparison.md", table)
    y_te = s.test[1]
    metrics_ = {
        "question": "q3",
        "data": {"path": str(d.path), "digest": d.data_id, "source": files.describe_source(d.attrs),
                 "recipe": d.attrs.get("recipe"), "class_names": list(d.names),
                 "class_descriptions": activity.class_descriptions(d.names, d.attrs),
                 "n_train": int(len(s.train_all[1])), "n_train_part": int(len(s.train[1])),
                 "n_val": int(len(s.val[1])), "n_test": int(len(y_te)), "validation": how,
                 "channel_mean": s.mean_all.tolist(), "channel_std": s.std_all.tolist()},
        "settings": {**dataclasses.asdict(c), "learning_rates": dict(c.learning_rates), "vmap": use_vmap(c.vmap),
                     "devices": [str(x) for x in jax.devices()]},
        "protocol": activity.protocol_text(c, d),
        "chance_accuracy": chance,
        "majority_test_accuracy": float(np.bincount(y_te, minlength=len(d.names)).max() / len(y_te)),
        "training": ctx.summary(),
        **results,
        **({activity.ablation_name(ablation["forget_bias"]): ablation} if ablation is not None else {}),
    }
    files.write_metrics(out, metrics_, c, "q3", data=d.data_id, ctx=ctx)
    if distributed.is_writer():
        print(table + f"q3: wrote {out}/metrics.json and figures")
    return metrics_

def parse_rates(text: str) -> tuple:
    """``"0.01,0.03"`` -> ``(0.01, 0.03)``, each a finite number > 0 (argparse ``type=``)."""
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        rates = ()
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"expected comma-separated learning rates, each a finite number > 0, found "
                                         f"{text!r} (--select)")
    return rates


def parse_bias(text: str) -> float:
    """A finite number (argparse ``type=`` of ``--forget-bias``)."""
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, the forget-gate bias (e.g. 1.0), found {text!r} "
                                         "(--forget-bias)")
    return x


parse_models = functools.partial(common.parse_names, choices=MODELS, flag="--models")
parse_lrs = functools.partial(common.parse_assignments, choices=MODELS, flag="--lr", defaults=Q3Config.learning_rates,
                              number=cli.positive_number, what="RATE", allowed="a finite number > 0")


def _per_model(c: Q3Config, field: str) -> str:
    """ "RNN 0.01, LSTM 0.1, GRU 0.1": a (model, value) tuple of the configuration, for --help."""
    return ", ".join(f"{m.upper()} {v:g}" for m, v in getattr(c, field))


def _epochs(c: Q3Config, field: str = "epochs") -> str:
    """ "30 (LSTM 60)": every model's epochs, those of ``epochs_per_model`` beside, for --help."""
    own = ", ".join(f"{m.upper()} {e}" for m, e in c.epochs_per_model)
    return f"{c.epochs}" + (f" ({own})" if own else "")


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q3_activity", __doc__.split("\n\n")[0])
    p.add_argument("--models", type=parse_models, help="comma-separated subset of rnn,lstm,gru (default all)")
    p.add_argument("--lr", dest="learning_rates", type=parse_lrs, metavar="MODEL=RATE,...", help="peak learning "
                   "rates, e.g. 'rnn=0.01,gru=0.1' or 'all=0.1' "
                   f"({common.defaults_help(Q3Config, 'learning_rates', _per_model)})")
    p.add_argument("--epochs", type=cli.positive_int, help="epochs of every run of every model "
                   f"({common.defaults_help(Q3Config, 'epochs', _epochs)})")
    p.add_argument("--seeds", type=cli.positive_int, help="refit each model K times, seeds S..S+K-1 "
                   "(S = --seed; initial parameters, shuffling and augmentation; the same data split), and report "
                   "the test accuracy's and loss's mean and std over seeds "
                   f"({common.defaults_help(Q3Config, 'seeds')})")
    p.add_argument("--select", type=parse_rates, metavar="RATE,...", help="the selection step alone: one "
                   "validation run per model and peak learning rate (e.g. 0.01,0.03,0.1), written to selection.md; "
                   "no refit, no test windows")
    p.add_argument("--forget-bias", type=parse_bias, metavar="B", help="the LSTM's forget-gate bias at "
                   f"initialisation (default {Q3Config.forget_bias:g}; the ablation's is "
                   f"{Q3Config.ablation_forget_bias:g})")
    p.add_argument("--ablation-seeds", type=cli.non_negative_int, metavar="K", help="refit the LSTM with its forget-gate "
                   f"bias at {Q3Config.ablation_forget_bias:g} for seeds S..S+K-1 beside the default (default "
                   f"{Q3Config.ablation_seeds}: seed S only; 0: no ablation; at most --seeds)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="rotate and scale every training window at random each epoch "
                        f"({common.defaults_help(Q3Config, 'augment')})")
    return common.run_main("q3", p, Q3Config.from_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
