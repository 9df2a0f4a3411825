"""Checkpoints: exact round trip, corrupt and mismatched files refused."""
import chex
import jax
import numpy as np
import pytest

from mp_jax.engine import checkpoint, train
from mp_jax.models import mlp


def make_state(h=8, seed=0):
    params = mlp.init_params(jax.random.PRNGKey(seed), 2, h, 3)
    opt = train.sgd_momentum(0.1, 0.9, clip_norm=1.0)
    s = train.init_fit_state(params, opt, jax.random.PRNGKey(7))
    grads = jax.tree.map(lambda p: p + 1.0, params)
    _, opt_state = opt.update(grads, s.opt_state, params)
    return s._replace(opt_state=opt_state, epoch=3, best_loss=0.25, best_epoch=2, bad_epochs=1,
                      history={"train_loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.7]})


@pytest.mark.slow
def test_round_trip_is_exact(tmp_path):
    s = make_state()
    p = checkpoint.save_state(tmp_path / "run.h5", s, {"run_hash": "abc", "finished": False})
    loaded, meta = checkpoint.load_state(p, make_state(seed=1), expect_meta={"run_hash": "abc"})
    chex.assert_trees_all_equal((loaded.params, loaded.opt_state, loaded.key, loaded.best_params),
                                (s.params, s.opt_state, s.key, s.best_params))
    assert (loaded.epoch, loaded.best_loss, loaded.best_epoch, loaded.bad_epochs) == (3, 0.25, 2, 1)
    assert loaded.history == s.history and meta["finished"] is False


def test_truncated_checkpoint_is_refused(tmp_path):
    p = checkpoint.save_state(tmp_path / "run.h5", make_state(), {"run_hash": "abc"})
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(checkpoint.CheckpointError, match="unreadable checkpoint"):
        checkpoint.load_state(p, make_state())


@pytest.mark.slow
def test_checkpoint_of_another_shape_is_refused(tmp_path):
    p = checkpoint.save_state(tmp_path / "run.h5", make_state(h=8), {"run_hash": "abc"})
    with pytest.raises(checkpoint.CheckpointError, match=r"array 0 is \(2, 8\).*expects \(2, 16\)"):
        checkpoint.load_state(p, make_state(h=16))


def test_checkpoint_of_another_run_is_refused(tmp_path):
    p = checkpoint.save_state(tmp_path / "run.h5", make_state(), {"run_hash": "abc"})
    with pytest.raises(checkpoint.CheckpointError, match="belongs to another run"):
        checkpoint.load_state(p, make_state(), expect_meta={"run_hash": "xyz"})


def test_save_is_atomic(tmp_path, monkeypatch):
    p = checkpoint.save_state(tmp_path / "run.h5", make_state(), {"run_hash": "abc"})
    before = p.read_bytes()
    bad = make_state()._replace(history={"x": object()})  # not JSON: fails mid-write
    with pytest.raises(TypeError):
        checkpoint.save_state(p, bad, {"run_hash": "abc"})
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.h5"]


def test_a_full_disk_keeps_the_older_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    from mp_jax.runtime.errors import StorageError

    p = checkpoint.save_state(tmp_path / "run.h5", make_state(), {"run_hash": "abc"})
    before = p.read_bytes()
    real, calls = os.write, []

    def write(fd, data):  # a few bytes reach the disk, then it is full
        if calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        calls.append(fd)
        return real(fd, bytes(data[:100]))

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(StorageError) as e:
        checkpoint.save_state(p, make_state(seed=3), {"run_hash": "abc"})
    monkeypatch.undo()
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert str(e.value).startswith(f"no space left on the device while writing {p}: free some space in {tmp_path}/")
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.h5"]
    loaded, _ = checkpoint.load_state(p, make_state())
    chex.assert_trees_all_equal(loaded.params, make_state().params)


def test_checkpoint_errors_say_what_to_do():
    from mp_jax.runtime.errors import UserError

    e = checkpoint.CheckpointError("r/run.h5: unreadable checkpoint (OSError: truncated)")
    assert isinstance(e, UserError) and isinstance(e, RuntimeError)
    assert e.user_message() == ("r/run.h5: unreadable checkpoint (OSError: truncated) Move that file aside (or delete "
                                "it) to start its run over.")
