"""How long the main job's training is expected to take on this machine, said at its start.

The estimate is the configuration's count of training steps times the time of one step
measured here, plus the compilations:

- **the plan** (:func:`plan`): from each question's configuration and its data file's sizes,
  every training run it will do: Q1's L-BFGS runs (iterations, the cost of one taken as
  proportional to L_hid; one compilation per L_hid, which the runs share) and its SGD run
  (epochs × minibatches); Q2's three networks (at most ``epochs`` epochs each: early stopping
  may end them sooner; the first network timed, the others scaled by their multiply-adds per
  example); Q3's validation run and refit over seeds of each model (epochs × minibatches,
  and each epoch's validation pass counted as a third of a training step per minibatch) and
  its logistic baseline (at most ``baseline_epochs``); a run that validates after each epoch
  compiles its evaluation too (counted as a second compilation);
- **the timing** (:func:`time_program`): each kind of step compiled as training compiles
  it (:func:`mp_jax.engine.train.make_epoch_fn` over a few minibatches of random data of the
  configured shapes, on the devices training would use; for L-BFGS, whose line search depends
  on the data, the first chunk of iterations of Q1's default run on its training patches) and
  run; the fastest run gives the time of a step, the compilation the time each run spends
  compiling.

Loading the data, evaluating, the figures and the unit census are not counted: the summary
at the end compares the estimate with the training time the runs recorded and with the
wall time. A question whose folder already holds the finished results of the same
configuration is expected to load them (no training)."""
from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple, Optional

import numpy as np

VALIDATION_PASS = 1 / 3  # a forward pass, as a share of a training step (forward and backward)


class Run(NamedTuple):
    """Training runs of one kind: ``count`` runs of ``steps`` steps each of program
    ``program``, each step costing ``scale`` times the timed one."""

    what: str
    program: tuple  # what :func:`time_program` times: (kind, shape settings...)
    count: int
    steps: float
    scale: float = 1.0
    compiles: Optional[int] = None  # programs compiled for them (None: one per run, two when they validate)
    validates: bool = False  # an evaluation after each epoch (its own program)

    def compilations(self) -> int:
        return self.compiles if self.compiles is not None else self.count * (2 if self.validates else 1)


class Estimate(NamedTuple):
    seconds: dict  # question -> expected training seconds (0: loads finished results)
    loaded: list  # questions expected to load their finished results
    probe_seconds: float  # what the timing itself took

    def total(self) -> float:
        return float(sum(self.seconds.values()))

    def text(self) -> str:
        parts = [f"{q} {duration(s)}" if q not in self.loaded else f"{q} loads its finished runs"
                 for q, s in self.seconds.items()]
        return (f"expected training time on this machine: about {duration(self.total())} ({', '.join(parts)}): "
                f"each kind of training step compiled and timed here on data of the configured sizes "
                f"({self.probe_seconds:.0f} s), times the configuration's steps, plus the compilations; "
                f"loading the data, evaluation and figures come on top")


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _steps(n: int, batch: int) -> int:
    return math.ceil(n / min(batch, max(n, 1)))


def data_sizes(question: str, config) -> dict:
    """The sizes the plan needs from the question's data file (built when missing, as the run
    would build it)."""
    from experiments import files
    from mp_jax.data.course import LOADERS

    if question == "q1":  # the training patches themselves: L-BFGS is timed on them
        from experiments import q1_autoencoder

        x = q1_autoencoder.load(config).x_train
        return {"n_train": int(x.shape[0]), "x_train": x}
    d = LOADERS[question](files.resolve_data(question, config.data_dir))
    if question == "q2":
        cap = lambda n: n if config.n_train is None else min(n, config.n_train)  # noqa: E731
        return {"n_train": cap(len(d.train_y)), "n_val": len(d.val_y) if config.n_eval is None else
                min(len(d.val_y), config.n_eval), "vocab": len(d.words)}
    n_all = len(d.train_y) if config.n_train is None else min(len(d.train_y), config.n_train)
    n_val = int(round(n_all * config.val_fraction))
    return {"n_all": n_all, "n_part": n_all - n_val, "n_val": n_val, "T": int(d.train_x.shape[1]),
            "D": int(d.train_x.shape[2]), "classes": len(d.class_names)}


def plan(question: str, c, sizes: dict) -> list:
    """The training runs of ``question`` under configuration ``c`` (:class:`Run` each)."""
    if question == "q1":
        n = sizes["n_train"]
        hp = tuple(float(v) for v in c.hp)
        sgd = Run("SGD", ("ae_sgd", c.hidden, c.sgd_batch, hp), 1, c.sgd_epochs * _steps(n, c.sgd_batch),
                  validates=True)
        settings = {(c.hidden, tuple(c.hp))}
        settings |= {(c.hidden, tuple(c.hp._replace(beta=b, rho=r))) for b, r in c.beta_rho}
        settings |= {(h, tuple(c.hp._replace(lam=lam))) for h in c.sweep_hidden for lam in c.sweep_lam}
        hiddens = [h for h, _ in settings]
        lbfgs = ("ae_lbfgs", c.hidden, n, c.lbfgs_memory, c.lbfgs_chunk, hp)
        if c.optimizer == "sgd":  # every study's run is an SGD run; L-BFGS trains the comparison only
            return [sgd._replace(count=len(settings)), Run("L-BFGS", lbfgs, 1, c.lbfgs_iters)]
        return [Run("L-BFGS", lbfgs, len(settings), c.lbfgs_iters, float(np.mean(hiddens)) / c.hidden,
                    compiles=len(set(hiddens))), sgd]
    if question == "q2":  # one network timed, the others scaled by their multiply-adds per example
        steps = c.epochs * (_steps(sizes["n_train"], c.batch_size)
                            + VALIDATION_PASS * _steps(sizes["n_val"], c.batch_size))
        (d0, p0), v = c.settings[0], sizes["vocab"]
        return [Run(f"D={d},P={p}", ("lm", c.impl, d0, p0, v, c.batch_size), 1, steps,
                    (3 * d * p + p * v) / (3 * d0 * p0 + p0 * v), validates=True) for d, p in c.settings]
    out = []
    for cell in (m for m in ("rnn", "lstm", "gru") if m in c.models):
        program = ("recurrent", cell, c.impl, c.hidden, c.mlp, c.batch_size, sizes["T"], sizes["D"], sizes["classes"])
        epochs = c.n_epochs(cell)
        out.append(Run(f"{cell} validation", program, 1, epochs * (
            _steps(sizes["n_part"], c.batch_size) + VALIDATION_PASS * _steps(sizes["n_val"], c.batch_size)),
            validates=True))
        if c.refit:
            out.append(Run(f"{cell} refit", program, c.seeds, epochs * _steps(sizes["n_all"], c.batch_size)))
    from mp_jax.models.logistic import FEATURES  # window statistics, one per axis each

    features = ("logistic", len(FEATURES) * sizes["D"], sizes["classes"], c.baseline_batch)
    return out + [Run("baseline validation", features, 1, c.baseline_epochs * _steps(sizes["n_part"], c.baseline_batch),
                      validates=True),
                  Run("baseline refit", features, c.seeds, c.baseline_epochs * _steps(sizes["n_all"], c.baseline_batch))]


def _mesh(batch: int, split_over_cpu_cores: bool, n_devices: Optional[int]):
    from mp_jax.protocols import runs

    return runs.RunContext.start(None, n_devices, progress=False).run_mesh(batch, split_over_cpu_cores)


_TIMED: dict = {}  # (program, n_devices) -> its timing, measured once per process


def time_program(program: tuple, n_devices: Optional[int] = None, steps: int = 4, data=None) -> tuple:
    """``(compile seconds, seconds per step)`` of one kind of training step (``program``, as
    :func:`plan` names it), compiled and laid out as training does it, on random data (Q1's
    L-BFGS: on ``data``, the training patches, when given)."""
    if (program, n_devices) not in _TIMED:
        _TIMED[program, n_devices] = _time_program(program, n_devices, steps, data)
    return _TIMED[program, n_devices]


def _time_program(program: tuple, n_devices: Optional[int], steps: int, data) -> tuple:
    import jax
    import jax.numpy as jnp

    from mp_jax.engine import train

    kind, key = program[0], jax.random.PRNGKey(0)
    rng = np.random.default_rng(0)
    opt = train.sgd_momentum(0.01, 0.9)
    if kind == "ae_lbfgs":  # one chunk of L-BFGS iterations (line searches included) on the whole set
        from mp_jax.engine import lbfgs
        from mp_jax.models import autoencoder as ae

        _, hidden, n, memory, chunk, hp = program
        config = lbfgs.LbfgsConfig(memory_size=memory, chunk=chunk)
        params = ae.init_params(key, hidden, n_in=256)
        x = data if data is not None else jnp.asarray(rng.uniform(0.1, 0.9, (n, 256)), jnp.float32)
        args = (params, lbfgs._strong(lbfgs.make_optimizer(config).init(params)),  # as minimize starts
                x, {"hp": ae.AEHyper(*hp)})
        t = time.perf_counter()
        compiled = lbfgs.make_chunk_fn(ae.loss_and_grad, config).lower(*args).compile()  # as minimize compiles it
        compile_s = time.perf_counter() - t
        return compile_s, _best(lambda: jax.block_until_ready(compiled(*args)), repeats=1, warm=False) / chunk
    if kind == "ae_sgd":
        from mp_jax.models import autoencoder as ae

        _, hidden, batch, hp = program
        loss_and_grad = functools.partial(ae.loss_and_grad, hp=ae.AEHyper(*hp))
        params, data, mesh, mean = (ae.init_params(key, hidden, n_in=256),
                                    jnp.asarray(rng.uniform(0.1, 0.9, (batch * steps * 4, 256)), jnp.float32),
                                    _mesh(batch, False, n_devices), False)
        steps *= 4
    elif kind == "lm":
        from experiments.q2_language_model import loss_and_grad as lm_gradients
        from mp_jax.models import language_model as lm

        _, impl, d, p, vocab, batch = program
        steps *= 4
        data = (jnp.asarray(rng.integers(0, vocab, (batch * steps, 3)), jnp.int32),
                jnp.asarray(rng.integers(0, vocab, batch * steps), jnp.int32))
        loss_and_grad, params, mesh, mean = (lm_gradients(impl), lm.init_params(key, vocab, d, p, std=0.01),
                                             _mesh(batch, False, n_devices), True)
    elif kind == "logistic":
        from mp_jax.models import logistic

        _, n_features, classes, batch = program
        steps *= 4
        data = (jnp.asarray(rng.normal(size=(batch * steps, n_features)), jnp.float32),
                jnp.asarray(rng.integers(0, classes, batch * steps), jnp.int32))
        loss_and_grad = functools.partial(logistic.loss_and_grad, hp=logistic.LogisticHP(l2=1e-4))
        params, mesh, mean = logistic.init_params(key, n_features, classes), _mesh(batch, False, n_devices), True
    else:
        from mp_jax.models import recurrent
        from mp_jax.protocols import activity

        _, cell, impl, hidden, mlp, batch, T, D, classes = program
        data = (jnp.asarray(rng.normal(size=(batch * steps, T, D)), jnp.float32),
                jnp.asarray(rng.integers(0, classes, batch * steps), jnp.int32))
        loss_and_grad = activity.gradients(impl)[0]
        params, mesh, mean = (recurrent.init_params(key, cell, D, hidden, mlp, classes), _mesh(batch, True, n_devices),
                              True)
    if mesh is not None:
        params, data = train.replicate(params, mesh), train.replicate(data, mesh)
    epoch = train.make_epoch_fn(loss_and_grad, opt, batch, mesh=mesh, per_example_mean=mean)
    state = opt.init(params)
    t = time.perf_counter()
    compiled = epoch.lower(params, state, key, data).compile()
    compile_s = time.perf_counter() - t
    return compile_s, _best(lambda: jax.block_until_ready(compiled(params, state, key, data))) / steps


def _best(call, repeats: int = 2, warm: bool = True) -> float:
    """The fastest of ``repeats`` timed calls (after one more that warms up, with ``warm``)."""
    if warm:
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return min(times)


def finished_here(question: str, c) -> bool:
    """Whether ``c``'s results folder holds the finished results of this very configuration."""
    from experiments import files

    path = c.results_dir / c.results_name(question) / "metrics.json"
    try:
        p = files.read_json(path).get("provenance") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return p.get("config_hash") == c.config_hash()


def expected(configs: dict, n_devices: Optional[int] = None, fresh: bool = False) -> Estimate:
    """The expected training time of each question of ``configs`` ({question: configuration})
    on ``n_devices`` (``--devices``); ``fresh``: earlier results are moved aside, not loaded."""
    t0 = time.perf_counter()
    seconds, loaded = {}, []
    for q, c in configs.items():
        if not fresh and finished_here(q, c):
            seconds[q] = 0.0
            loaded.append(q)
            continue
        total = 0.0
        sizes = data_sizes(q, c)
        for r in plan(q, c, sizes):
            compile_s, step_s = time_program(r.program, n_devices, data=sizes.get("x_train"))
            total += r.compilations() * compile_s + r.count * r.steps * r.scale * step_s
        seconds[q] = total
    return Estimate(seconds, loaded, time.perf_counter() - t0)
