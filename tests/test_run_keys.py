"""Checkpoint keys: every field of a question's frozen configuration, the data's digest and
its split key a run, so that no setting that shapes a run can resume another run's checkpoint."""
import dataclasses
from pathlib import Path

import pytest

from experiments import smoke
from experiments.config import RunOptions
from experiments.q1_autoencoder import Q1Config
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config
from mp_jax.engine import checkpoint

CONFIGS = (Q1Config, Q2Config, Q3Config, smoke.SmokeConfig)


def changed(value):
    """A value of the same kind as ``value`` and different from it."""
    if isinstance(value, bool):
        return not value
    if value is None:
        return 1
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return 2 * value + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, Path):
        return value / "other"
    if isinstance(value, tuple) and hasattr(value, "_replace"):  # a NamedTuple of settings
        first = value._fields[0]
        return value._replace(**{first: changed(getattr(value, first))})
    if isinstance(value, tuple):
        return value + (value[-1],) if value else (1,)
    raise TypeError(f"no changed value for {value!r}")


def key(config, data="digest", split="split") -> str:
    return checkpoint.config_hash(config.run_key(data=data, split=split, model="m", seed=0))


def keyed_fields(cls):
    return [f.name for f in dataclasses.fields(cls) if f.name not in cls.KEY_EXCLUDED]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_changing_any_config_field_gives_a_new_key(cls):
    for config in (cls(), cls.quick()):
        base = key(config)
        for name in keyed_fields(cls):
            other = dataclasses.replace(config, **{name: changed(getattr(config, name))})
            assert key(other) != base, f"{cls.__name__}.{name} does not change the run's key"


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_excluded_fields_are_real_fields_with_a_reason_and_change_nothing(cls):
    names = {f.name for f in dataclasses.fields(cls)}
    assert set(cls.KEY_EXCLUDED) <= names
    assert all(isinstance(why, str) and why for why in cls.KEY_EXCLUDED.values())
    assert set(cls.KEY_EXCLUDED) == {"data_dir", "results_dir", "progress"}  # only these, the same everywhere
    config = cls()
    for name in cls.KEY_EXCLUDED:
        assert key(dataclasses.replace(config, **{name: changed(getattr(config, name))})) == key(config)


def test_the_data_and_its_split_key_a_run():
    c = Q3Config()
    assert key(c, data="other") != key(c) and key(c, split="other") != key(c)
    assert key(c, split={"stage": "validation", "n_train": 10}) != key(c, split={"stage": "refit", "n_train": 10})
    assert key(c, split={"stage": "refit", "n_train": 10}) != key(c, split={"stage": "refit", "n_train": 11})
    # the run's own settings too
    assert checkpoint.config_hash(c.run_key(data="d", split="s", seed=1)) != \
        checkpoint.config_hash(c.run_key(data="d", split="s", seed=2))


def test_a_stale_exclusion_is_refused():
    with pytest.raises(ValueError, match="not fields"):
        checkpoint.run_key(RunOptions(), {"no_such_field": "why"}, data="d", split="s")


def test_the_recipes_key_their_runs_apart():
    assert key(Q3Config()) != key(Q3Config.handout()) and key(Q3Config()) != key(Q3Config(recipe="handout"))
    assert key(Q2Config()) != key(Q2Config(recipe="handout"))
