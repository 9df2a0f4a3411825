"""Start N local processes of one distributed run: ``python -m mp_jax.launch --processes N
-- python -m experiments.q3_activity ...``.

Each copy of the command gets, in its environment, the coordinator's address (127.0.0.1
and a free port, or ``--port``), the number of processes and its own number
(``MP_JAX_COORDINATOR``, ``MP_JAX_NUM_PROCESSES``, ``MP_JAX_PROCESS_ID``, read by
:func:`mp_jax.engine.distributed.initialize_from_args`), ``MP_JAX_HEARTBEAT_TIMEOUT`` when
``--heartbeat-timeout`` is given, and ``JAX_NUM_CPU_DEVICES`` when ``--cpu-devices`` is.
Their output goes to this terminal. The launcher waits for all of them and exits with the
first non-zero status among them (0 when all succeed); Ctrl-C or SIGTERM is passed on to
every process. When one process dies the others stop on their own
(:mod:`mp_jax.engine.distributed`). For several hosts, start the command on each host yourself
with ``--coordinator HOST:PORT --num-processes N --process-id I`` (see the README).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from typing import Optional, Sequence

from mp_jax.runtime import cli
from mp_jax.engine import distributed


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def environments(n: int, port: int, heartbeat: Optional[int] = None, cpu_devices: Optional[int] = None,
                 base: Optional[dict] = None) -> list[dict]:
    """The environment of each of the ``n`` processes."""
    base = dict(os.environ if base is None else base)
    out = []
    for i in range(n):
        env = dict(base, **{distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
                            distributed.ENV_NUM_PROCESSES: str(n), distributed.ENV_PROCESS_ID: str(i)})
        if heartbeat is not None:
            env[distributed.ENV_HEARTBEAT] = str(heartbeat)
        if cpu_devices is not None:
            env["JAX_NUM_CPU_DEVICES"] = str(cpu_devices)
        out.append(env)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog="python -m mp_jax.launch",
                                usage="python -m mp_jax.launch --processes N [options] -- COMMAND ...",
                                description="Start N local processes of one distributed run.")
    p.add_argument("--processes", type=cli.positive_int, required=True, metavar="N", help="how many processes")
    p.add_argument("--port", type=cli.positive_int, default=None,
                   help="the coordinator's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--heartbeat-timeout", type=cli.positive_int, default=None, metavar="SECONDS",
                   help="seconds without a heartbeat before a process counts as dead")
    p.add_argument("--cpu-devices", type=cli.positive_int, default=None, metavar="K",
                   help="CPU devices per process (JAX_NUM_CPU_DEVICES; default: the command's own choice)")
    args = p.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        p.error("no command: give it after --, e.g. -- python -m experiments.q3_activity --quick")
    if args.port is not None and args.port > 65535:
        p.error(f"argument --port: expected a port from 1 to 65535, found {args.port}")
    port = args.port or free_port()
    procs = []
    try:
        for env in environments(args.processes, port, args.heartbeat_timeout, args.cpu_devices):
            procs.append(subprocess.Popen(command, env=env))
    except OSError as e:
        for proc in procs:
            proc.kill()
        raise cli.UserError(f"cannot start {command[0]!r}: {e.strerror or e}",
                            hint="check the command after --") from None

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [proc.wait() for proc in procs]
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    bad = [c for c in codes if c != 0]
    if bad:
        failed = ", ".join(f"process {i}: status {c}" for i, c in enumerate(codes) if c != 0)
        print(f"error: {failed}", file=sys.stderr, flush=True)
        return bad[0] if bad[0] > 0 else 128 - bad[0]
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main, catch_sigterm=False))
