"""fit_run and cached_run: load finished runs (with the training time they recorded), resume
interrupted ones identically, set aside bad checkpoints; fit_members one by one or vmapped."""
import contextlib
import dataclasses

import chex
import jax
import pytest


from mp_jax.protocols import runs
from mp_jax.engine import checkpoint, train
from mp_jax.models import mlp

FAST_COMPILE = True  # tiny programs compiled once: XLA's optimizations cost more than they save (conftest)


def blobs(n, key=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    y = jax.random.randint(k1, (n,), 0, 3)
    centers = jax.numpy.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centers[y] + 0.7 * jax.random.normal(k2, (n, 2)), y


PLAIN = runs.RunContext(progress=False)  # no checkpoints


@contextlib.contextmanager
def checkpointing(directory):
    """A run context with checkpoints in ``directory``: (context, its store)."""
    ctx = runs.RunContext.start(directory, progress=False)
    yield ctx, ctx.store


def run(ctx=PLAIN, epochs=6):
    training = runs.Training(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9),
                               train.FitConfig(epochs=epochs, batch_size=32), metrics_fn=mlp.metrics)
    return runs.fit_run(ctx, "mlp", training, mlp.init_params(jax.random.PRNGKey(0), 2, 8, 3), blobs(300),
                          key=jax.random.PRNGKey(1), run_key={"hidden": 8, "data": "blobs"}, val_data=blobs(100, 1))


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_parameters(tmp_path, monkeypatch):
    uninterrupted = run()
    real_save = checkpoint.save_state
    saves = []

    def save_then_die(path, state, meta):
        real_save(path, state, meta)
        saves.append(state.epoch)
        if state.epoch == 3 and not meta.get("finished"):
            raise Interrupt("killed after epoch 3")

    with checkpointing(tmp_path) as (ctx, store):
        monkeypatch.setattr(checkpoint, "save_state", save_then_die)
        with pytest.raises(Interrupt):
            run(ctx)
        monkeypatch.setattr(checkpoint, "save_state", real_save)
        resumed = run(ctx)
        assert [e[1] for e in store.events] == ["resumed"]
    assert saves == [1, 2, 3]
    chex.assert_trees_all_equal(resumed.last_params, uninterrupted.last_params)
    chex.assert_trees_all_equal(resumed.params, uninterrupted.params)
    assert resumed.history["val_loss"] == uninterrupted.history["val_loss"]
    assert resumed.epochs_run == 6
    # the training time counts the interrupted part (saved with each epoch) and the rest
    assert resumed.seconds > store.events[0][2] > 0 and store.events[0][3] == pytest.approx(resumed.seconds)


def test_finished_runs_are_loaded_with_their_recorded_time(tmp_path, monkeypatch):
    with checkpointing(tmp_path) as (ctx, store):
        first = run(ctx)
        monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
        second = run(ctx)
    assert [e[1] for e in store.events] == ["trained", "loaded"]
    chex.assert_trees_all_equal(first.params, second.params)
    assert second.history["train_loss"] == first.history["train_loss"]
    assert not first.loaded and second.loaded
    assert second.seconds == pytest.approx(first.seconds) and first.seconds > 0  # not the loading time
    summary = store.summary()
    assert summary["trained"] == summary["loaded"] == 1
    assert summary["train_seconds"] == pytest.approx(2 * first.seconds)


@pytest.mark.slow
def test_corrupt_checkpoint_is_set_aside_with_a_message(tmp_path, caplog):
    with checkpointing(tmp_path) as (ctx, store):
        run(ctx, epochs=2)
        (ckpt,) = tmp_path.glob("mlp-*.h5")
        ckpt.write_bytes(b"not a checkpoint at all")
        with caplog.at_level("WARNING", logger="mp_jax.protocols.runs"):
            again = run(ctx, epochs=2)
    assert [e[1] for e in store.events] == ["trained", "trained"]
    assert "unreadable checkpoint" in caplog.text and "set aside" in caplog.text
    aside = list(tmp_path.glob("mlp-*.bad-*.h5"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"not a checkpoint at all"
    assert again.epochs_run == 2


@pytest.mark.slow
def test_changed_config_does_not_reuse_the_checkpoint(tmp_path):
    with checkpointing(tmp_path) as (ctx, store):
        run(ctx, epochs=2)
        run(ctx, epochs=3)
    assert [e[1] for e in store.events] == ["trained", "trained"]
    assert len(list(tmp_path.glob("mlp-*.h5"))) == 2


def test_cached_run_skips_a_finished_run_and_recomputes_a_corrupt_one(tmp_path):
    calls = []
    template = {"w": jax.numpy.zeros((3,))}

    def compute():
        calls.append(1)
        return {"w": jax.numpy.arange(3.0)}, {"cost": 1.5, "curve": [3.0, 2.0, 1.5]}

    with checkpointing(tmp_path) as (ctx, store):
        a = runs.cached_run(ctx, "lbfgs", run_key={"config": {"it": 5}, "data": "d"}, template=template, compute=compute)
        b = runs.cached_run(ctx, "lbfgs", run_key={"config": {"it": 5}, "data": "d"}, template=template, compute=compute)
        (f,) = tmp_path.glob("lbfgs-*.h5")
        f.write_bytes(b"garbage")
        c = runs.cached_run(ctx, "lbfgs", run_key={"config": {"it": 5}, "data": "d"}, template=template, compute=compute)
        runs.cached_run(ctx, "lbfgs", run_key=None, template=template, compute=compute)  # not saved
    assert len(calls) == 3 and [e[1] for e in store.events] == ["trained", "loaded", "trained"]
    chex.assert_trees_all_equal(a.params, b.params, c.params)
    assert b.record == a.record and b.loaded and not a.loaded and not c.loaded
    assert b.seconds == a.seconds  # the recorded time, not the loading time


@pytest.mark.slow
def test_a_run_at_another_matmul_precision_is_another_run(tmp_path):
    """A run computed at JAX's default precision (TensorFloat-32 on recent GPUs) must not
    be taken for the full-precision one; the default precision keeps the keys as they were."""
    from experiments import common

    template = {"w": jax.numpy.zeros((3,))}
    calls = []

    def compute():
        calls.append(1)
        return {"w": jax.numpy.arange(3.0)}, {}

    try:
        with checkpointing(tmp_path) as (ctx, store):
            runs.cached_run(ctx, "c", run_key={"config": {}, "data": "d"}, template=template, compute=compute)
            run(ctx, epochs=1)
            common.set_matmul_precision("default")
            runs.cached_run(ctx, "c", run_key={"config": {}, "data": "d"}, template=template, compute=compute)
            run(ctx, epochs=1)
            common.set_matmul_precision("highest")
            runs.cached_run(ctx, "c", run_key={"config": {}, "data": "d"}, template=template, compute=compute)
            run(ctx, epochs=1)
    finally:
        jax.config.update("jax_default_matmul_precision", "highest")  # as conftest.py set it
    assert [e[1] for e in store.events] == ["trained", "trained", "trained", "trained", "loaded", "loaded"]
    assert len(calls) == 2 and len(list(tmp_path.glob("*.h5"))) == 4
    # at full precision the key is the one written before the option existed
    assert runs._with_precision({"a": 1}) == {"a": 1}


@pytest.mark.slow
def test_fit_members_vmapped_equals_one_by_one_and_is_loaded_when_run_again(tmp_path):
    data, val = blobs(96), blobs(40, 1)
    inits = [(mlp.init_params(jax.random.PRNGKey(i), 2, 8, 3), jax.random.PRNGKey(10 + i)) for i in range(2)]
    training = runs.Training(mlp.loss_and_grad, train.sgd_momentum(0.05, 0.9),
                               train.FitConfig(epochs=3, batch_size=16), metrics_fn=mlp.metrics,
                               vmapped_loss_and_grad=mlp.loss_and_grad)
    kw = dict(group="g", val_data=val)
    names, keys = ["m0", "m1"], [{"seed": 0, "data": "blobs"}, {"seed": 1, "data": "blobs"}]
    with checkpointing(tmp_path) as (ctx, store):
        alone = runs.fit_members(ctx, names, keys, inits, training, data, vmap=False, **kw)
        vmapped = runs.fit_members(ctx, names, keys, inits, training, data, vmap=True, **kw)
        again = runs.fit_members(ctx, names, keys, inits, training, data, vmap=True, **kw)
    assert [e[1] for e in store.events] == ["trained", "trained", "trained", "loaded"]
    for a, v, g in zip(alone, vmapped, again):
        chex.assert_trees_all_close(a.params, v.params, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_equal(v.params, g.params)
        assert a.epochs_run == v.epochs_run == 3 and a.best_epoch == v.best_epoch
        assert g.loaded and not v.loaded and g.seconds == pytest.approx(v.seconds)


def test_resuming_in_a_distributed_run_goes_through_process_zero(tmp_path, monkeypatch):
    """The multi-process branch of fit_run (process 0's state and 'finished' flag shared),
    run in one process, where the broadcasts hand back what they are given."""
    from mp_jax.engine import distributed

    with checkpointing(tmp_path) as (ctx, _):
        first = run(ctx, epochs=3)
    shared = []
    real_share = distributed.share_fit_state

    def share(state, template):
        shared.append(state is not None)
        return real_share(state, template)

    monkeypatch.setattr(distributed, "num_processes", lambda: 2)
    monkeypatch.setattr(distributed, "share_fit_state", share)
    with checkpointing(tmp_path) as (ctx, store):
        again = run(ctx, epochs=3)
    assert shared == [True] and [e[1] for e in store.events] == ["loaded"]
    assert again.loaded and again.seconds == pytest.approx(first.seconds, rel=1e-5)
    chex.assert_trees_all_equal(again.params, first.params)


def test_a_process_other_than_zero_reads_and_writes_no_checkpoint(tmp_path, monkeypatch):
    from mp_jax.engine import distributed

    monkeypatch.setattr(distributed, "is_writer", lambda: False)
    reads = []
    real_load = checkpoint.load_state
    monkeypatch.setattr(checkpoint, "load_state", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    with checkpointing(tmp_path) as (ctx, store):
        res = run(ctx, epochs=2)
        out = runs.cached_run(ctx, "c", run_key={"config": {}, "data": "d"}, template={"w": jax.numpy.zeros(2)},
                                compute=lambda: ({"w": jax.numpy.ones(2)}, {"r": 1}))
    assert res.epochs_run == 2 and not out.loaded and [e[1] for e in store.events] == ["trained", "trained"]
    assert reads == [] and list(tmp_path.iterdir()) == []


def test_run_state_is_passed_in_the_open():
    """No run state at module level: what a run uses (store, mesh, writer, progress) is the
    RunContext it is handed."""
    import inspect

    from experiments import common

    for module in (runs, common):
        src = inspect.getsource(module)
        assert "contextvars" not in src and "global " not in src, module.__name__
    plain = runs.RunContext()
    assert plain.store is None and plain.summary() is None and plain.run_mesh(32, False) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.progress = False
