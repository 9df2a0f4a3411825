"""How long the main job's training is expected to take on this machine, said at its start.

The estimate is the configuration's count of training steps times the time of one step
measured here, plus one compilation per run:

- **the plan** (:func:`plan`): from each question's configuration and its data file's sizes,
  every training run it will do: Q1's L-BFGS runs (iterations × about
  :data:`EVALUATIONS_PER_ITERATION` full-batch evaluations, the cost taken as proportional
  to L_hid) and its SGD run (epochs × minibatches); Q2's three networks (at most ``epochs``
  epochs each: early stopping may end them sooner; the first network timed, the others
  scaled by their multiply-adds per example); Q3's validation run and refit over
  seeds of each model (epochs × minibatches, and each epoch's validation pass counted as a
  third of a training step per minibatch);
- **the timing** (:func:`time_program`): each kind of step compiled as training compiles
  it (:func:`mp_jax.engine.train.make_epoch_fn` over a few minibatches of random data of the
  configured shapes, on the devices training would use) and run twice; the faster run gives
  the time of a step, the compilation the time each run spends compiling.

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

EVALUATIONS_PER_ITERATION = 2.2  # L-BFGS's line search: 43 evaluations in 20 iterations of Q1's quick run
VALIDATION_PASS = 1 / 3  # a forward pass, as a share of a training step (forward and backward)


class Run(NamedTuple):
    """Training runs of one kind: ``count`` runs of ``steps`` steps each of program
    ``program``, each step costing ``scale`` times the timed one."""

    what: str
    program: tuple  # what :func:`time_program` times: (kind, shape settings...)
    count: int
    steps: float
    scale: float = 1.0


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
                f"each kind of training step timed here on random data of the configured sizes "
                f"({self.probe_seconds:.0f} s), times the configuration's steps, plus one compilation per run; "
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

    d = LOADERS[question](files.resolve_data(question, config.data_dir))
    if question == "q1":
        n = len(d.patches) if config.n_patches is None else min(config.n_patches, len(d.patches))
        return {"n_train": int(round(n * (1 - config.heldout_fraction)))}
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
        sgd = Run("SGD", ("ae_sgd", c.hidden, c.sgd_batch), 1, c.sgd_epochs * _steps(n, c.sgd_batch))
        settings = {(c.hidden, tuple(c.hp))}
        settings |= {(c.hidden, tuple(c.hp._replace(beta=b, rho=r))) for b, r in c.beta_rho}
        settings |= {(h, tuple(c.hp._replace(lam=lam))) for h in c.sweep_hidden for lam in c.sweep_lam}
        hiddens = [h for h, _ in settings]
        if c.optimizer == "sgd":  # every study's run is an SGD run; L-BFGS trains the comparison only
            return [sgd._replace(count=len(settings)),
                    Run("L-BFGS", ("ae_lbfgs", c.hidden, n), 1, c.lbfgs_iters * EVALUATIONS_PER_ITERATION)]
        return [Run("L-BFGS", ("ae_lbfgs", c.hidden, n), len(settings), c.lbfgs_iters * EVALUATIONS_PER_ITERATION,
                    float(np.mean(hiddens)) / c.hidden), sgd]
    if question == "q2":  # one network timed, the others scaled by their multiply-adds per example
        steps = c.epochs * (_steps(sizes["n_train"], c.batch_size)
                            + VALIDATION_PASS * _steps(sizes["n_val"], c.batch_size))
        (d0, p0), v = c.settings[0], sizes["vocab"]
        return [Run(f"D={d},P={p}", ("lm", c.impl, d0, p0, v, c.batch_size), 1, steps,
                    (3 * d * p + p * v) / (3 * d0 * p0 + p0 * v)) for d, p in c.settings]
    out = []
    for cell in (m for m in ("rnn", "lstm", "gru") if m in c.models):
        program = ("recurrent", cell, c.impl, c.hidden, c.mlp, c.batch_size, sizes["T"], sizes["D"], sizes["classes"])
        epochs = c.n_epochs(cell)
        out.append(Run(f"{cell} validation", program, 1, epochs * (
            _steps(sizes["n_part"], c.batch_size) + VALIDATION_PASS * _steps(sizes["n_val"], c.batch_size))))
        if c.refit:
            out.append(Run(f"{cell} refit", program, c.seeds, epochs * _steps(sizes["n_all"], c.batch_size)))
    return out


def _mesh(batch: int, split_over_cpu_cores: bool, n_devices: Optional[int]):
    from mp_jax.protocols import runs

    return runs.RunContext.start(None, n_devices, progress=False).run_mesh(batch, split_over_cpu_cores)


@functools.lru_cache(maxsize=None)
def time_program(program: tuple, n_devices: Optional[int] = None, steps: int = 4) -> tuple:
    """``(compile seconds, seconds per step)`` of one kind of training step (``program``, as
    :func:`plan` names it), compiled and laid out as training does it, on random data."""
    import jax
    import jax.numpy as jnp

    from mp_jax.engine import train

    kind, key = program[0], jax.random.PRNGKey(0)
    rng = np.random.default_rng(0)
    opt = train.sgd_momentum(0.01, 0.9)
    if kind == "ae_lbfgs":  # one full-batch evaluation of the cost and its gradient
        from mp_jax.models import autoencoder as ae

        _, hidden, n = program
        x = jnp.asarray(rng.uniform(0.1, 0.9, (n, 256)), jnp.float32)
        fn = jax.jit(functools.partial(ae.loss_and_grad, hp=ae.AEHyper(5e-4, 2.2, 0.026)))
        args = (ae.init_params(key, hidden, n_in=256), x)
        t = time.perf_counter()
        compiled = fn.lower(*args).compile()
        compile_s = time.perf_counter() - t
        return compile_s, _best(lambda: jax.block_until_ready(compiled(*args)))
    if kind == "ae_sgd":
        from mp_jax.models import autoencoder as ae

        _, hidden, batch = program
        loss_and_grad = functools.partial(ae.loss_and_grad, hp=ae.AEHyper(5e-4, 2.2, 0.026))
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


def _best(call, repeats: int = 2) -> float:
    """The fastest of ``repeats`` timed calls (after one more that warms up)."""
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
        for r in plan(q, c, data_sizes(q, c)):
            compile_s, step_s = time_program(r.program, n_devices)
            total += r.count * (compile_s + r.steps * r.scale * step_s)
        seconds[q] = total
    return Estimate(seconds, loaded, time.perf_counter() - t0)
