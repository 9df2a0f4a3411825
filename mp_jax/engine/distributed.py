"""JAX's distributed runtime, one process per host (or several on one machine): starting it,
a lost peer as one line, and the one-writer rule.

Starting or joining a run:

* :func:`add_arguments` gives an entry point ``--coordinator HOST:PORT``,
  ``--num-processes N``, ``--process-id I`` and ``--heartbeat-timeout SECONDS``; each
  falls back on the environment (``MP_JAX_COORDINATOR``, ``MP_JAX_NUM_PROCESSES``,
  ``MP_JAX_PROCESS_ID``, ``MP_JAX_HEARTBEAT_TIMEOUT``), which :mod:`mp_jax.launch` sets for
  the N local processes it starts.
* :func:`initialize_from_args` (before any JAX computation, like
  :func:`mp_jax.engine.parallel.use_cpu_cores`) joins the run: CPU collectives over Gloo, then
  ``jax.distributed.initialize``. Afterwards ``jax.devices()`` lists every process's
  devices and :func:`mp_jax.engine.train.make_mesh` spans them all. Without the flags it does
  nothing: one process, as before.
* :func:`is_writer`: only process 0 writes checkpoints, metrics, figures and reports.
  :func:`share_fit_state` hands the state process 0 read from its checkpoint to every
  process (resuming needs no shared file system).

Training is :func:`mp_jax.engine.train.fit` with a mesh over every process's devices
(:func:`mp_jax.engine.train.make_mesh`): the same epoch as in one process, each process feeding its
own rows of every minibatch (:func:`mp_jax.engine.train.feed`).

When a process dies, the others' next collective fails (its connection closes) or, for a
process that is not in one, the runtime notices the missing heartbeats after
``--heartbeat-timeout`` seconds. The first ends as :class:`PeerLostError`, one line
``error: ...`` through :func:`mp_jax.runtime.cli.run_main`, and the process exits with status 1
without waiting on the runtime's shutdown barrier; the second is the runtime's own fatal
message ("Terminating process because the JAX distributed service detected fatal
errors"). Either way a rerun of the same commands resumes from the last checkpoint.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import re
import sys
from typing import Callable, Optional

import numpy as np

from mp_jax.runtime import cli
from mp_jax.runtime.errors import UserError

ENV_COORDINATOR = "MP_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "MP_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "MP_JAX_PROCESS_ID"
ENV_HEARTBEAT = "MP_JAX_HEARTBEAT_TIMEOUT"
#: jax.distributed's default: seconds without a heartbeat before a process counts as dead.
DEFAULT_HEARTBEAT_S = 100

# Words of the errors a collective or the runtime raises when another process has gone.
_PEER_LOSS = re.compile(r"gloo|connection (closed|reset|refused)|broken pipe|heartbeat|coordination service|"
                        r"unavailable|socket closed|peer", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where the coordinator listens, how many processes, which one this is."""

    coordinator: str
    num_processes: int
    process_id: int
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_S


@dataclasses.dataclass
class _State:
    settings: Optional[Settings] = None
    peer_lost: bool = False


_STATE = _State()


class PeerLostError(UserError, RuntimeError):
    """Another process of the distributed run stopped; this one cannot go on alone."""

    hint = ("Every process stops; start them all again with the same commands to resume from the last "
            "checkpoint (process 0 writes one after every epoch).")


# ----------------------------------------------------------------------------- command line
def coordinator_address(text: str) -> str:
    """argparse ``type=``: ``HOST:PORT`` (``[IPv6]:PORT`` too), PORT from 1 to 65535."""
    allowed = "HOST:PORT, e.g. 127.0.0.1:12355 (the address of process 0, a free port on it)"
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}")
    return f"{host}:{int(port)}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that start or join a distributed run (defaults: the ``MP_JAX_*``
    environment variables, else one process)."""
    g = parser.add_argument_group("several processes (JAX's distributed runtime)")
    g.add_argument("--coordinator", type=coordinator_address, default=None, metavar="HOST:PORT",
                   help=f"address of process 0, where the coordinator listens (also: {ENV_COORDINATOR}); "
                        "every process gets the same one")
    g.add_argument("--num-processes", type=cli.positive_int, default=None, metavar="N",
                   help=f"how many processes take part (also: {ENV_NUM_PROCESSES})")
    g.add_argument("--process-id", type=cli.non_negative_int, default=None, metavar="I",
                   help=f"this process's number, 0..N-1; 0 writes every output (also: {ENV_PROCESS_ID})")
    g.add_argument("--heartbeat-timeout", type=cli.positive_int, default=None, metavar="SECONDS",
                   help=f"seconds without a heartbeat before a process counts as dead and the others stop "
                        f"(default {DEFAULT_HEARTBEAT_S}; also: {ENV_HEARTBEAT})")


def _from_env(name: str, parse: Callable, flag: str):
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return parse(text)
    except argparse.ArgumentTypeError as e:
        raise UserError(f"environment variable {name} (for {flag}): {e}",
                        hint="set it to a valid value or unset it") from None


def settings_from_args(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None
                       ) -> Optional[Settings]:
    """The run's :class:`Settings` from the flags (else the environment); None for one
    process. An incomplete or inconsistent set stops with a usage error naming the flags
    (``parser.error``, exit status 2) or, without a parser, a :class:`UserError`."""
    def pick(attr, env, parse, flag):
        v = getattr(args, attr, None)
        return v if v is not None else _from_env(env, parse, flag)

    coordinator = pick("coordinator", ENV_COORDINATOR, coordinator_address, "--coordinator")
    n = pick("num_processes", ENV_NUM_PROCESSES, cli.positive_int, "--num-processes")
    i = pick("process_id", ENV_PROCESS_ID, cli.non_negative_int, "--process-id")
    hb = pick("heartbeat_timeout", ENV_HEARTBEAT, cli.positive_int, "--heartbeat-timeout")

    def fail(msg):
        if parser is not None:
            parser.error(msg)
        raise UserError(msg)

    given = {"--coordinator": coordinator, "--num-processes": n, "--process-id": i}
    if all(v is None for v in given.values()):
        return None
    if n == 1 and coordinator is None and i in (None, 0):
        return None  # one process, said explicitly
    missing = [k for k, v in given.items() if v is None]
    if missing:
        found = ", ".join(f"{k} {v}" for k, v in given.items() if v is not None)
        fail(f"argument {missing[0]}: a distributed run needs --coordinator, --num-processes and --process-id "
             f"together; found only {found}; give {' and '.join(missing)} as well")
    if i >= n:
        fail(f"argument --process-id: expected 0..{n - 1} (--num-processes {n}), found {i}")
    return Settings(coordinator, n, i, hb if hb is not None else DEFAULT_HEARTBEAT_S)


def initialize_from_args(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None
                         ) -> Optional[Settings]:
    """Join the distributed run the flags (or the environment) describe; nothing for one
    process. Call before any JAX computation. Returns the :class:`Settings` (or None)."""
    settings = settings_from_args(args, parser)
    if settings is not None:
        initialize(settings)
    return settings


# ----------------------------------------------------------------------------- the runtime
def initialize(settings: Settings) -> None:
    """``jax.distributed.initialize`` with CPU collectives over Gloo (no effect on GPU
    devices, whose collectives are NCCL's). Blocks until every process has joined (at most
    ``initialization_timeout``, 300 s); raises :class:`UserError` naming the coordinator
    when it cannot."""
    import jax

    if _STATE.settings is not None:
        if _STATE.settings == settings:
            return
        raise UserError(f"the distributed runtime is already running as {_STATE.settings}; cannot join {settings}")
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=settings.coordinator, num_processes=settings.num_processes,
                                   process_id=settings.process_id,
                                   heartbeat_timeout_seconds=settings.heartbeat_timeout)
    except Exception as e:  # noqa: BLE001 - a one-line reason instead of the runtime's trace
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(
            f"process {settings.process_id} of {settings.num_processes} could not join the distributed run at "
            f"--coordinator {settings.coordinator} ({first[:300]})",
            hint="Start the distributed runtime before any JAX computation; start every process with the same "
                 "--coordinator (process 0's address, a free port on it) and --num-processes, each with its own "
                 "--process-id, within the 300 s the runtime waits.") from None
    _STATE.settings = settings
    # atexit runs last-registered first: this runs before JAX's own shutdown, whose barrier
    # would wait for a process that is gone, then abort.
    atexit.register(_exit_now_if_peer_lost)


def _exit_now_if_peer_lost() -> None:
    if _STATE.peer_lost:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(cli.EXIT_ERROR)


def settings() -> Optional[Settings]:
    """The run's :class:`Settings`, None in a single-process run."""
    return _STATE.settings


def process_id() -> int:
    """This process's number (0 in a single-process run); starts no JAX backend."""
    return 0 if _STATE.settings is None else _STATE.settings.process_id


def num_processes() -> int:
    return 1 if _STATE.settings is None else _STATE.settings.num_processes


def is_writer() -> bool:
    """Whether this process writes the outputs (checkpoints, metrics, figures, reports):
    process 0, or the only one."""
    return process_id() == 0


def looks_like_peer_loss(e: BaseException) -> bool:
    """Whether ``e`` is what a collective or the runtime raises once another process is
    gone (only in a distributed run)."""
    return _STATE.settings is not None and not isinstance(e, UserError) and bool(_PEER_LOSS.search(str(e)))


@contextlib.contextmanager
def peer_lost_guard():
    """Turn the error of a collective whose peer has gone into :class:`PeerLostError`
    (and have the process exit without JAX's shutdown barrier)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001
        if not looks_like_peer_loss(e):
            raise
        _STATE.peer_lost = True
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise PeerLostError(f"process {process_id()} of {num_processes()}: another process of the distributed run "
                            f"stopped ({first[:300]})") from None


def guarded(main: Callable) -> Callable:
    """``main`` run under :func:`peer_lost_guard`, for :func:`mp_jax.runtime.cli.run_main`:
    ``raise SystemExit(cli.run_main(distributed.guarded(main)))``."""
    def run(argv=None):
        with peer_lost_guard():
            return main(argv)

    run.__name__ = getattr(main, "__name__", "main")
    return run


# ----------------------------------------------------------------------------- resuming
def share_fit_state(state, template):
    """Process 0's :class:`mp_jax.engine.train.FitState` (None: nothing to resume) in every
    process: the others pass anything (their own reading, or None) and get process 0's.
    ``template``: a state of the run's structure (``train.init_fit_state``). A
    single-process run returns ``state`` as it is."""
    if _STATE.settings is None:
        return state
    import jax
    from jax.experimental import multihost_utils

    mine = state if is_writer() else None
    have = int(multihost_utils.broadcast_one_to_all(np.int32(mine is not None)))
    if not have:
        return None
    src = mine if mine is not None else template
    arrays = (src.params, src.opt_state, src.key, src.best_params)
    arrays = jax.tree.map(np.asarray, arrays)
    text = json.dumps({"epoch": int(src.epoch), "best_loss": float(src.best_loss), "best_epoch": int(src.best_epoch),
                       "bad_epochs": int(src.bad_epochs), "history": src.history}).encode()
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(text))))
    buf = np.zeros(size, np.uint8)
    if mine is not None:
        buf[:] = np.frombuffer(text, np.uint8)
    buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    arrays = jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(arrays))
    scalars = json.loads(buf.tobytes().decode())
    params, opt_state, key, best_params = arrays
    return template._replace(params=params, opt_state=opt_state, key=key, best_params=best_params, **scalars)
