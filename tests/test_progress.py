"""The shared progress report: one line per tenth of the run passed, whatever each update advances."""
from __future__ import annotations

import logging

from mp_jax.runtime.progress import EpochProgress


def _lines(caplog, total, steps, **kwargs):
    bar = EpochProgress(total, enabled=False, desc="run", **kwargs)
    with caplog.at_level(logging.INFO, logger="mp_jax.runtime.progress"):
        for done in steps:
            bar.update(done, {"train_loss": 0.5})
    bar.close()
    return [r.getMessage() for r in caplog.records if r.name == "mp_jax.runtime.progress"]


def test_epochs_log_the_first_each_tenth_and_the_last(caplog):
    lines = _lines(caplog, 20, range(1, 21))
    assert [line.split()[2] for line in lines] == [f"{e}/20" for e in (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20)]
    assert lines[0].startswith("run epoch 1/20 train=0.5000 elapsed ")


def test_updates_of_many_iterations_log_each_tenth_they_pass(caplog):
    lines = _lines(caplog, 400, range(25, 401, 25), unit="iteration")  # every = 40: 25, then 50, 100, 125, ...
    assert [line.split()[2] for line in lines] == [f"{i}/400" for i in (25, 50, 100, 125, 175, 200, 250, 300, 325,
                                                                        375, 400)]
    assert lines[0].startswith("run iteration 25/400 train=0.5000 elapsed ")
