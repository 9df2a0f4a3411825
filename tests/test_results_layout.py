"""Results folders and reports named by configuration: the defaults keep ``<question>/`` and
``REPORT.md``; every other configuration that can change a number gets its own folder, named
from the fields that differ (the same fields that key its checkpoints), so that no run
overwrites another configuration's results."""
import argparse
import dataclasses

import pytest

from experiments import layout
from experiments.config import NAME_MAX
from experiments.q1_autoencoder import Q1Config
from experiments.q2_language_model import Q2Config
from experiments.q3_activity import Q3Config
from test_run_keys import CONFIGS, changed as changed_value, keyed_fields


def changed(value, name=None):
    """A value of the same kind, and a valid one for the recipe."""
    return ("handout" if value == "default" else "default") if name == "recipe" else changed_value(value)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_that_keys_a_run_names_its_folder(cls):
    for config in (cls(), cls.quick()):
        base = config.results_name("q")
        for name in keyed_fields(cls):
            other = dataclasses.replace(config, **{name: changed(getattr(config, name), name)})
            assert other.results_name("q") != base, f"{cls.__name__}.{name} does not change the folder"
            assert other.config_hash() != config.config_hash()
        for name in cls.KEY_EXCLUDED:  # where the files are, how progress shows: the same folder
            same = dataclasses.replace(config, **{name: changed(getattr(config, name))})
            assert same.results_name("q") == base and same.config_hash() == config.config_hash()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_a_folder_name_is_short_and_plain(cls):
    for config in (cls(), cls.quick()):
        for name in keyed_fields(cls):
            other = dataclasses.replace(config, **{name: changed(getattr(config, name), name)})
            folder = other.results_name("q3")
            assert folder.startswith("q3") and len(folder) <= len("q3_handout_quick_") + NAME_MAX
            assert all(ch.isalnum() or ch in "._+-" for ch in folder), folder


def test_folder_names_read_as_what_differs():
    assert Q3Config().results_name("q3") == "q3" and Q3Config.handout().results_name("q3") == "q3_handout"
    assert Q3Config.quick().results_name("q3") == "q3_quick"
    assert Q3Config.make(is_quick=True, recipe="handout").results_name("q3") == "q3_handout_quick"
    assert Q3Config.quick(models=("rnn",)).results_name("q3") == "q3_quick_models-rnn"
    assert Q3Config(models=("rnn", "gru"), seeds=2).results_name("q3") == "q3_models-rnn+gru_seeds-2"
    assert Q3Config(augment=False).results_name("q3") == "q3_no-augment"
    assert Q3Config(seed=7, impl="reference").results_name("q3") == "q3_seed-7_impl-reference"
    lrs = dict(Q3Config().learning_rates)
    assert Q3Config(learning_rates=tuple({**lrs, "rnn": 0.05}.items())).results_name("q3") == \
        "q3_learning_rates-rnn-0.05"  # only the rate that changed
    assert Q2Config(settings=((8, 64),)).results_name("q2") == "q2_settings-8-64"
    assert Q1Config.quick(sgd_epochs=7).results_name("q1") == "q1_quick_sgd_epochs-7"
    # a field's own recipe value is no difference: the handout's momentum names nothing
    assert Q3Config.handout().differences() == {} and Q3Config.handout(seeds=1).results_name("q3") == "q3_handout"


def test_a_setting_without_a_short_spelling_or_a_long_name_is_a_hash():
    c = Q1Config(hp=Q1Config().hp._replace(beta=3.0))  # a tuple of settings: no short spelling
    name = c.results_name("q1")
    assert name == f"q1_{c.config_hash()[:8]}" and name != Q1Config(hp=Q1Config().hp._replace(beta=4.0)).results_name("q1")
    long = Q3Config.quick(models=("gru", "lstm"), seeds=3, epochs=9, hidden=7, mlp=9, batch_size=8)
    assert long.results_name("q3") == f"q3_quick_{long.config_hash()[:8]}"


def test_the_matmul_precision_names_the_folder():
    c = Q3Config()
    assert c.results_name("q3", "highest") == "q3" and c.results_name("q3", "default") == "q3_matmul-default"
    assert c.config_hash("highest") != c.config_hash("default")
    assert c.results_name("q3") == "q3"  # the suite runs at full precision (conftest), as the experiments do


def _args(**flags):
    return argparse.Namespace(**{"quick": False, "recipe": "default", "seed": 0, **flags})


def test_the_report_of_the_main_jobs_flags():
    plan = layout.report_plan(_args())
    assert plan == ("REPORT.md", {"q1": "q1", "q2": "q2", "q3": "q3"},
                    {"q1": "q1_handout", "q2": "q2_handout", "q3": "q3_handout"})
    quick = layout.report_plan(_args(quick=True))
    assert quick.name == "REPORT_quick.md" and quick.folders["q3"] == "q3_quick"
    assert quick.handout["q2"] == "q2_handout_quick"
    assert layout.report_plan(_args(quick=True, recipe="handout")) == quick  # the recipes side by side in both
    seed = layout.report_plan(_args(seed=3))
    assert seed.name == "REPORT_seed-3.md" and set(seed.folders.values()) == {"q1_seed-3", "q2_seed-3", "q3_seed-3"}
    # --impl is Q2's and Q3's: Q1's part is its default run
    ref = layout.report_plan(_args(impl="reference"))
    assert ref.name == "REPORT_impl-reference.md" and ref.folders == {"q1": "q1", "q2": "q2_impl-reference",
                                                                     "q3": "q3_impl-reference"}
    assert layout.report_plan(_args(), precision="default").name == "REPORT_matmul-default.md"
