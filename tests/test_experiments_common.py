"""What the experiment entry points share: the run options, the vmap default, the data line."""
import argparse
from pathlib import Path

import jax
import pytest

from experiments import common, files
from experiments.config import RunOptions, use_vmap


def test_vmap_default_follows_the_backend_and_flags_override():
    assert use_vmap(None) == (jax.default_backend() != "cpu")
    assert use_vmap(True) is True and use_vmap(False) is False
    p = common.base_parser("x", "")
    assert p.parse_args([]).vmap is None
    assert p.parse_args(["--vmap"]).vmap is True and p.parse_args(["--no-vmap"]).vmap is False
    assert p.parse_args([]).impl == "fast" and p.parse_args(["--impl", "reference"]).impl == "reference"
    with pytest.raises(SystemExit):
        p.parse_args(["--impl", "slow"])


def test_run_options_from_arguments():
    args = common.base_parser("x", "").parse_args(["--quick", "--seed", "4", "--no-progress", "--no-vmap",
                                                   "--results-dir", "r"])
    c = RunOptions.from_args(args)
    assert c == RunOptions(data_dir=Path("data"), results_dir=Path("r"), seed=4, is_quick=True,
                                  progress=False, vmap=False)
    assert RunOptions.from_args(argparse.Namespace()) == RunOptions()  # absent flags: defaults


def test_short_source_and_the_data_line(capsys):
    assert files.short_source({}) == "course file"
    attrs = {"source_kind": "stand-in", "source": "skimage/data/a.png (x); pkg/b/c.jpg (y (z))"}
    assert files.short_source(attrs) == "stand-in from a, c"
    assert files.short_source({"source_kind": "stand-in", "source": "Some corpus (1611 text), from a package (f)"}) \
        == "stand-in from Some corpus"
    long = {"source_kind": "stand-in", "source": "; ".join(f"dir/photo{i}.png (credit {i})" for i in range(40))}
    assert len(files.short_source(long)) <= 100
    line = files.announce_data("q1", "data/data1.h5", attrs)
    assert capsys.readouterr().out == line + "\n" and "\n" not in line and len(line) < 150
    assert line.startswith("q1 data: data/data1.h5 (stand-in from a, c") and "data/README.md" in line
