"""``python -m benchmarks``: seconds per training epoch of each model (:mod:`benchmarks.epochs`)."""
from benchmarks.epochs import main
from mp_jax.runtime import cli

if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
