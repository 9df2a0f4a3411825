"""``python -m experiments`` — the main job.

For now it runs the smoke experiment end to end; the question experiments are wired in
as they land.
"""
from __future__ import annotations

from experiments import common, smoke


def main(argv=None) -> int:
    args = common.base_parser("python -m experiments", __doc__).parse_args(argv)
    common.setup_logging()
    smoke.run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
