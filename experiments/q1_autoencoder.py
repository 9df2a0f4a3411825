"""Q1: a sparse autoencoder on 16×16 natural-image patches, parts (a)-(d).

(a) 200 random patches in RGB and preprocessed (grey, mean removed, clipped at ±3σ with σ
    over the whole set, mapped to [0.1, 0.9]; docs/autoencoder.md).
(b) a tied-weight sparse autoencoder (L_hid = 64, λ = 5e-4, β = 2.2, ρ = 0.026) trained on
    the manual gradients by full-batch L-BFGS (the default; docs/training.md) and by the
    course report's SGD with momentum (lr 0.075, momentum 0.9, batch 32, 200 epochs).
(c) each hidden unit's weights as an image, for that model and for the report's five (β, ρ).
(d) a 3 × 3 sweep over L_hid × λ, one figure of nine feature grids.

Each model's units are counted as duplicates, noise (a weight image with no spatial
structure), dead (no response to held-out patches) and distinct structured features;
``metrics.json`` names the setting of (c) and of (d) with the most distinct structured units,
among sparse codes for (c) (ρ̂ ≤ ``sparse_code_max``) and smooth units for (d) (mean
smoothness ≥ ``smooth_units_min``), ties broken by the lower held-out MSE ratio
(``beta_rho_choice``, ``sweep_choice``; :func:`mp_jax.models.autoencoder_measures.choose_setting`).

The default model is trained once and reused by (c) and (d); their other members train one
after another on a CPU, as one ``jax.vmap`` program per L_hid on an accelerator (``--vmap``
/ ``--no-vmap``). Measures: :mod:`mp_jax.models.autoencoder_measures`, on 10 % held out.
L-BFGS is the default because the report's SGD, on the stand-in photos, ends far from the
minimum of J with most units duplicates of each other: ρ̂ estimated on 32 patches makes the
sparsity gradient noisy (``metrics.json["optimizers"]``, ``features_optimizers.png``).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common, files, plotting
from experiments.config import RunOptions, use_vmap
from mp_jax.protocols import runs
from mp_jax.runtime import cli
from mp_jax.engine import distributed, lbfgs, sweep, train
from mp_jax.data import load_patches, splits
from mp_jax.models import autoencoder as ae
from mp_jax.models import autoencoder_measures as measures

log = logging.getLogger("experiments.q1")
OPTIMIZERS = ("lbfgs", "sgd")
LABEL = {"lbfgs": "L-BFGS (full batch)", "sgd": "SGD+momentum (batch 32)"}


@dataclasses.dataclass(frozen=True)
class Q1Config(RunOptions):
    """Q1's settings (the defaults are the report's; :meth:`quick` the tiny ones)."""

    FLAGS = ("optimizer", "lbfgs_iters", "sgd_epochs")
    # The course handout's recipe (``--recipe handout``, docs/recipes.md): its SGD (the sgd_* fields, the
    # same in both recipes) makes the figures, where the default uses L-BFGS and trains the SGD for comparison.
    HANDOUT = dict(optimizer="sgd")
    hidden: int = 64
    hp: ae.AEHyper = ae.AEHyper(lam=5e-4, beta=2.2, rho=0.026)
    optimizer: str = "lbfgs"  # the default; the other one is trained too, for the comparison
    sgd_lr: float = 0.075
    sgd_momentum: float = 0.9
    sgd_batch: int = 32
    sgd_epochs: int = 200
    lbfgs_iters: int = 400  # as UFLDL's 400 iterations of minFunc's L-BFGS
    lbfgs_memory: int = 10
    lbfgs_chunk: int = 25
    beta_rho: tuple = ((2.2, 0.026), (10.0, 0.026), (0.01, 0.026), (2.2, 0.9), (2.2, 0.001))
    sweep_hidden: tuple = (25, 64, 100)
    sweep_lam: tuple = (1e-5, 5e-4, 1e-3)
    heldout_fraction: float = 0.1
    n_patches: Optional[int] = None  # None: every patch of the file
    duplicate_threshold: float = measures.DUPLICATE_THRESHOLD
    sparse_code_max: float = 0.1  # (c)'s choice considers codes with mean activation ρ̂ at most this
    smooth_units_min: float = 0.9  # (d)'s choice considers settings whose units' mean smoothness is at least this
    smoothness_threshold: float = measures.SMOOTHNESS_THRESHOLD  # below it, a unit's image is noise
    dead_spread: float = measures.DEAD_SPREAD  # a unit whose held-out activation varies less is dead

    @classmethod
    def quick(cls, **changes) -> "Q1Config":
        return cls(**{**dict(is_quick=True, hidden=16, sgd_epochs=2, lbfgs_iters=20, lbfgs_chunk=10,
                             sweep_hidden=(4, 9, 16), n_patches=1200), **changes})

    def batch_sizes(self) -> dict:
        return {"q1 SGD batch": self.sgd_batch}  # L-BFGS is full-batch, on one device

    def lbfgs_config(self) -> lbfgs.LbfgsConfig:
        return lbfgs.LbfgsConfig(max_iter=self.lbfgs_iters, memory_size=self.lbfgs_memory, chunk=self.lbfgs_chunk)

    def sgd_config(self) -> tuple:
        """(optimizer, FitConfig) of the report's SGD."""
        return (train.sgd_momentum(self.sgd_lr, self.sgd_momentum),
                train.FitConfig(epochs=self.sgd_epochs, batch_size=self.sgd_batch))



Config = Q1Config


class Patches(NamedTuple):
    path: Any
    attrs: dict
    data_id: str  # the file's content digest
    split: str  # which patches train and which are held out
    sets: splits.PatchSets  # the patches shown in (a), σ
    x_train: jax.Array  # <float32>[N_train, 256], preprocessed
    x_held: jax.Array  # <float32>[N_held, 256], never trained on


def load(c: Q1Config) -> Patches:
    path = files.resolve_data("q1", c.data_dir)
    data = load_patches(path)
    sets = splits.patch_sets(data, c.heldout_fraction, np.random.default_rng(c.seed), n_patches=c.n_patches)
    n, n_held = len(sets.x_train) + len(sets.x_held), len(sets.x_held)
    return Patches(path, data.attrs, files.file_digest(path), f"n{n}:heldout{n_held}:seed{c.seed}", sets,
                   jnp.asarray(sets.x_train), jnp.asarray(sets.x_held))


_init = jax.jit(functools.partial(ae.init_params, n_in=256), static_argnums=1)  # one compilation per L_hid


class Trainer:
    """Trains each (optimiser, L_hid, hyperparameters) once and keeps its (parameters, record)."""

    def __init__(self, config: Q1Config, data: Patches, ctx: runs.RunContext):
        self.c, self.d, self.ctx, self.done = config, data, ctx, {}
        self.key_init, self.key_fit = jax.random.split(jax.random.PRNGKey(config.seed))

    @staticmethod
    def name(optimizer: str, hidden: int, hp) -> str:
        """The run's name, also its key among the runs trained (unique per setting)."""
        return f"ae_{optimizer}_H{hidden}_lam{hp.lam:g}_beta{hp.beta:g}_rho{hp.rho:g}"

    def _record(self, optimizer, hidden, hp, params, steps: dict, seconds: float, loaded: bool) -> tuple:
        rec = {"name": self.name(optimizer, hidden, hp), "optimizer": optimizer, "hidden": hidden,
               "lam": float(hp.lam), "beta": float(hp.beta),
               # with "minibatch": what a 32-patch SGD step sees of J at these weights, whichever optimiser
               # trained them
               **measures.evaluate(params, hp, self.d.x_train, self.d.x_held, self.c.duplicate_threshold,
                                   smoothness_threshold=self.c.smoothness_threshold, dead_spread=self.c.dead_spread,
                                   batch_size=self.c.sgd_batch),
               **steps,
               "curve_summary": curve_summary(steps.get("curve") or {}),
               "seconds": seconds, "loaded": loaded}
        log.info("%s: J %.4f, held-out MSE %.5f (mean patch %.5f), ρ̂ %.4f (ρ %g), of %d units: %d duplicates, "
                 "%d noise, %d dead, %d distinct structured; %s", rec["name"], rec["final_cost"],
                 rec["heldout_reconstruction_mse"], rec["heldout_mean_patch_mse"], rec["mean_hidden_activation"],
                 hp.rho, hidden, rec["duplicate_units"], rec["noise_units"], rec["dead_units"],
                 rec["distinct_structured_units"], plotting.time_label(seconds, loaded))
        self.done[rec["name"]] = (params, rec)
        return params, rec

    def run_key(self, optimizer: str, hidden: int, hp, **more) -> dict:
        """The checkpoint key of a run (:meth:`experiments.config.RunOptions.run_key`)."""
        return self.c.run_key(data=self.d.data_id, split=self.d.split, model="autoencoder", optimizer=optimizer,
                              hidden=hidden, hp=[float(v) for v in hp], **more)

    def one(self, optimizer: str, hidden: int, hp: ae.AEHyper, keep_diverged: bool = False) -> tuple:
        """(parameters, record) of one run trained alone (or loaded, or trained before).

        A run whose loss or parameters become non-finite raises
        :class:`mp_jax.engine.train.NonFiniteError` (the entry point's one line, exit status 1),
        unless ``keep_diverged`` (a member of a study, where a setting that diverges is a
        result): then its record says where (``diverged``) and holds the last finite weights."""
        name, params = self.name(optimizer, hidden, hp), _init(self.key_init, hidden)
        if name in self.done:
            return self.done[name]
        run_key, t = self.run_key(optimizer, hidden, hp), time.perf_counter()
        try:
            if optimizer == "sgd":
                opt, fit_config = self.c.sgd_config()
                training = runs.Training(functools.partial(ae.loss_and_grad, hp=hp), opt, fit_config,
                                         metrics_fn=functools.partial(ae.metrics, hp=hp))
                res = runs.fit_run(self.ctx, name, training, params, self.d.x_train, key=self.key_fit, run_key=run_key,
                                   val_data=self.d.x_held)
                # the report keeps the weights after the last epoch
                return self._record(optimizer, hidden, hp, res.last_params, _sgd_steps(res.history, res.epochs_run),
                                    res.seconds, res.loaded)

            def compute():
                res = lbfgs.minimize(ae.loss_and_grad, params, self.d.x_train, self.c.lbfgs_config(),
                                     fn_kwargs={"hp": hp}, progress=self.ctx.progress, desc=name)
                return res.params, {"steps": _lbfgs_steps(res)}

            out = runs.cached_run(self.ctx, name, run_key=run_key, template=params, compute=compute)
            return self._record(optimizer, hidden, hp, out.params, out.record["steps"], out.seconds, out.loaded)
        except train.NonFiniteError as e:
            if not keep_diverged:
                raise
            log.warning("%s", e)
            kept = e.last_good
            steps = (_sgd_steps(kept.history or {}, kept.epoch) if optimizer == "sgd"
                     else {"curve": {"x": "iteration", "train": []}})
            return self._record(optimizer, hidden, hp, kept.params,
                                {**steps, "diverged": diverged_record(optimizer, e)}, time.perf_counter() - t, False)

    def study(self, hidden: int, hps: list) -> list:
        """[(parameters, record)] by ``config.optimizer`` for each of ``hps``: runs trained
        before are reused, the others trained as one vmapped program or one by one
        (:func:`experiments.config.use_vmap`). A member that diverges is a result of the study: its
        record says where (``diverged``; a vmapped program that diverges is trained again
        one member after another, so that the member is named) and the study goes on."""
        todo = [hp for hp in hps if self.name(self.c.optimizer, hidden, hp) not in self.done]
        if len(todo) > 1 and use_vmap(self.c.vmap):
            try:
                self._vmapped(hidden, todo)
            except FloatingPointError as e:  # NonFiniteError (L-BFGS) or the sweep's own
                log.warning("%s; training the members one after another instead", e)
        return [self.one(self.c.optimizer, hidden, hp, keep_diverged=True) for hp in hps]

    def _vmapped(self, hidden: int, hps: list) -> None:
        m, opt_name, x = len(hps), self.c.optimizer, self.d.x_train
        params = sweep.stack([_init(self.key_init, hidden)] * m)
        stacked = sweep.stack([ae.AEHyper(*(jnp.asarray(v, x.dtype) for v in hp)) for hp in hps])
        desc = f"{m} × ae_{opt_name}_H{hidden} (vmapped)"

        def compute():
            if opt_name == "lbfgs":
                res = lbfgs.minimize_many(ae.loss_and_grad, params, x, self.c.lbfgs_config(),
                                          fn_kwargs_stacked={"hp": stacked}, progress=self.ctx.progress, desc=desc)
                return sweep.stack([r.params for r in res]), {"members": [_lbfgs_steps(r) for r in res]}
            opt, fit_config = self.c.sgd_config()
            res = sweep.fit_sweep(ae.loss_and_grad, opt, params, x, fit_config, keys=jnp.stack([self.key_fit] * m),
                                  hps=stacked, val_data=self.d.x_held, metrics_fn=ae.metrics, progress=self.ctx.progress,
                                  desc=desc)
            return res.last_params, {"members": [_sgd_steps(h, e) for h, e in zip(res.histories, res.epochs_run)]}

        run_key = self.run_key(opt_name, hidden, hps[0], hps=[[float(v) for v in hp] for hp in hps])
        out = runs.cached_run(self.ctx, f"ae_{opt_name}_H{hidden}_vmap{m}", run_key=run_key, template=params,
                                compute=compute)
        for i, hp in enumerate(hps):  # each member's share of the program's time
            self._record(opt_name, hidden, hp, sweep.unstack(out.params, i), out.record["members"][i],
                         out.seconds / m, out.loaded)


def diverged_record(optimizer: str, e: train.NonFiniteError) -> dict:
    """Where a run stopped on a non-finite value: the epoch and step (SGD: the minibatch
    within the epoch) or the iteration (L-BFGS), the last finite loss before it, and
    ``reason``, a phrase for the figure and the report."""
    last = "" if e.last_loss is None else f", last finite {'minibatch ' if optimizer == 'sgd' else ''}J {e.last_loss:.4g}"
    if optimizer == "sgd":
        where = f"epoch {e.epoch}" + (f", step {e.step}" if e.step is not None else "")
        kept = f"weights from the end of epoch {e.epoch - 1}"
    else:
        where = f"iteration {e.step}" if e.step is not None else f"iteration chunk {e.epoch}"
        kept = "weights from before that chunk of iterations"
    return {"epoch": int(e.epoch) if optimizer == "sgd" else None, "step": e.step, "last_finite_loss": e.last_loss,
            "reason": f"non-finite at {where}{last}; {kept}"}


def _lbfgs_steps(res: lbfgs.LbfgsResult) -> dict:
    # "evaluations": J and its gradient computed on the whole training set up to each iteration
    # (one, plus the line search's), the cost SGD's epochs are compared at
    evaluations = np.cumsum(1 + np.asarray(res.history["linesearch_steps"], dtype=np.int64)).tolist()
    return {"curve": {"x": "iteration", "train": res.history["value"], "evaluations": evaluations},
            **lbfgs.summary(res)}


def _sgd_steps(history: dict, epochs_run: int) -> dict:
    return {"curve": {"x": "epoch", "train": history.get("train_loss", []), "heldout": history.get("val_loss", [])},
            "epochs": int(epochs_run)}


def curve_summary(curve: dict) -> dict:
    """How steadily a run's cost fell, from its curve: ``rises``, the number of epochs
    (SGD: the epoch's mean minibatch J) or iterations (L-BFGS: J on the whole training set)
    whose J is above the one before; for SGD also ``train_spread`` and ``heldout_spread``,
    the standard deviation over the last half of the epochs of the epoch's training J and of
    the held-out J, each over its mean there."""
    train = np.asarray(curve.get("train") or [], dtype=np.float64)
    out = {"rises": int(np.sum(np.diff(train) > 0)), "steps": int(train.size)}
    if curve.get("x") == "epoch":
        for key, name in (("train", "train_spread"), ("heldout", "heldout_spread")):
            v = np.asarray(curve.get(key) or [], dtype=np.float64)
            v = v[len(v) // 2:]
            if v.size >= 2 and np.isfinite(v).all() and v.mean() > 0:
                out[name] = float(v.std() / v.mean())
    return out


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "curve"}


def run(config: Q1Config, ctx: Optional[runs.RunContext] = None) -> dict:
    """Q1 end to end under ``ctx`` (default: no checkpoints, the default devices)."""
    c, t_start = config, time.perf_counter()
    ctx = ctx or runs.RunContext(progress=c.progress)
    out = files.question_dir(c.results_dir, c.results_name("q1"))
    data = load(c)
    files.announce_data("q1", data.path, data.attrs)
    plotting.patch_figures(data.sets.shown_rgb, data.sets.shown, out, files.short_source(data.attrs))
    trainer = Trainer(c, data, ctx)
    # (b) the default setting, by both optimisers
    comparison = {opt: trainer.one(opt, c.hidden, c.hp) for opt in sorted(OPTIMIZERS, key=lambda o: o != c.optimizer)}
    params, rec = comparison[c.optimizer]
    pool = np.asarray(data.x_held[:60])  # the 12 of highest contrast among the first 60 held-out patches
    x_show = pool[np.sort(np.argsort(-pool.std(axis=1))[:12])]
    plotting.q1_default_figures(comparison, LABEL, c.optimizer, x_show, np.asarray(ae.reconstruct(params, x_show)), out)
    # (c) the report's five (β, ρ), then (d) L_hid × λ; both reuse the default run
    t = time.perf_counter()
    beta_rho = trainer.study(c.hidden, [c.hp._replace(beta=b, rho=r) for b, r in c.beta_rho])
    t_beta_rho, t = time.perf_counter() - t, time.perf_counter()
    grid = [trainer.study(h, [c.hp._replace(lam=lam) for lam in c.sweep_lam]) for h in c.sweep_hidden]
    t_sweep = time.perf_counter() - t
    # (c) and (d): the setting each study points to, by measures.choose_setting's rule
    choices = {"beta_rho_choice": measures.choose_setting([r for _, r in beta_rho], ("beta", "rho"),
                                                          max_mean_activation=c.sparse_code_max),
               "sweep_choice": measures.choose_setting([r for row in grid for _, r in row], ("hidden", "lam"),
                                                       min_smoothness=c.smooth_units_min)}
    plotting.q1_study_figures(beta_rho, grid, LABEL[c.optimizer], out,
                              chosen=tuple(v["name"] for v in choices.values()))
    mode = "vmap" if use_vmap(c.vmap) else "sequential"
    metrics = {
        **_strip(rec),
        "data": {"path": str(data.path), "source": files.describe_source(data.attrs),
                 "n_patches": int(len(data.x_train) + len(data.x_held)), "n_train": int(len(data.x_train)),
                 "n_heldout": int(len(data.x_held)), "sigma": data.sets.sigma},
        "settings": {**dataclasses.asdict(c), "hp": {k: float(v) for k, v in c.hp._asdict().items()}},
        "optimizers": {k: r for k, (_, r) in comparison.items()},
        "beta_rho": [_strip(r) for _, r in beta_rho],
        "sweep": [_strip(r) for row in grid for _, r in row],
        **choices,
        "unit_census": {"noise": f"mean lag-1 spatial autocorrelation of the unit's standardised weight image below "
                                 f"{c.smoothness_threshold:g} (i.i.d. pixels: 0 ± 0.046)",
                        "dead": f"activation varies by less than {c.dead_spread:g} over the held-out patches",
                        "distinct_structured": f"units neither noise nor dead, grouped by weight-image correlation "
                                               f"above {c.duplicate_threshold:g}, one per group"},
        "sweep_timing": {"mode": mode, "optimizer": c.optimizer, "beta_rho_seconds": t_beta_rho,
                         "sweep_seconds": t_sweep, "note": "the default run is trained once and reused by both"},
        "training": ctx.summary(),
        "total_seconds": time.perf_counter() - t_start,
    }
    files.write_metrics(out, metrics, c, "q1", data=data.data_id, ctx=ctx)
    print(f"q1: {LABEL[c.optimizer]} J {rec['final_cost']:.4f}, held-out MSE {rec['heldout_reconstruction_mse']:.5f} "
          f"(mean patch {rec['heldout_mean_patch_mse']:.5f}), ρ̂ {rec['mean_hidden_activation']:.4f} (ρ {rec['rho']:g}), "
          f"of {rec['hidden']} units {rec['duplicate_units']} duplicates, {rec['noise_units']} noise, "
          f"{rec['dead_units']} dead, {rec['distinct_structured_units']} distinct structured; " + "; ".join(
              f"{k} J {r['final_cost']:.4f}, {plotting.time_label(r['seconds'], r['loaded'])}"
              for k, (_, r) in comparison.items()))
    print("q1: chosen by the most distinct structured units: (c) " + ", ".join(
        f"{k}={v:g}" for k, v in metrics["beta_rho_choice"]["setting"].items()) + "; (d) " + ", ".join(
        f"{k}={v:g}" for k, v in metrics["sweep_choice"]["setting"].items()))
    print(f"q1: (β, ρ) study {t_beta_rho:.1f}s, L_hid × λ sweep {t_sweep:.1f}s ({mode}); done in "
          f"{metrics['total_seconds']:.0f}s -> {out}")
    return metrics


def main(argv=None) -> int:
    p = common.base_parser("python -m experiments.q1_autoencoder", __doc__.split("\n\n")[0])
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optimiser for the default run and parts (c)-(d) "
                   f"({common.defaults_help(Q1Config, 'optimizer')}; the other one is trained too, for the comparison)")
    p.add_argument("--lbfgs-iters", type=cli.positive_int,
                   help=f"L-BFGS iterations per run at most ({common.defaults_help(Q1Config, 'lbfgs_iters')})")
    p.add_argument("--sgd-epochs", type=cli.positive_int,
                   help=f"SGD epochs per run ({common.defaults_help(Q1Config, 'sgd_epochs')})")
    return common.run_main("q1", p, Q1Config.from_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(distributed.guarded(main)))
