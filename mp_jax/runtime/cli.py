"""What every command-line entry point shares: argument validators and one-line errors.

* Validators for argparse's ``type=``: :func:`positive_int`, :func:`non_negative_int`
  (both at most :data:`INT_MAX`), :func:`seed` (0 to :data:`SEED_MAX`),
  :func:`positive_number` (finite and > 0: a learning rate), :func:`folder` (a folder, or
  where one can be made), :func:`device_count`. A bad value stops the program before
  anything runs, with exit status 2 and argparse's one line ``prog: error: argument
  --epochs: expected a positive integer (1, 2, ...), found '0'``.
  :func:`check_device_count` checks ``--devices`` against the devices JAX has, after
  they have started.
* :func:`run_main` runs an entry point's ``main(argv)`` and turns an error met while
  running (a bad data file, no space left, no permission, a diverged run, a results
  folder locked by another run, ...) into one line ``error: ...`` on stderr with exit
  status 1; argparse's errors keep their status 2. ``--debug`` on the command line, or
  ``MP_JAX_DEBUG=1`` in the environment, shows the full traceback instead.

Usage in an entry point::

    from mp_jax.runtime import cli

    def main(argv=None) -> int:
        p = argparse.ArgumentParser(prog="python -m experiments.q3_activity")
        p.add_argument("--epochs", type=cli.positive_int)
        cli.add_debug_flag(p)
        args = p.parse_args(argv)
        ...
        return 0

    if __name__ == "__main__":
        raise SystemExit(cli.run_main(main))

Errors raised as :class:`~mp_jax.runtime.errors.UserError` print their message as it is; an
``OSError`` gets a message naming its path and what to do
(:func:`mp_jax.runtime.errors.storage_error`). Nothing here imports JAX until a device count is
checked.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from mp_jax.runtime.errors import StorageError, UserError, storage_error

__all__ = [
    "UserError", "StorageError", "positive_int", "non_negative_int", "seed", "positive_number", "folder",
    "device_count", "check_device_count", "INT_MAX", "SEED_MAX",
    "add_debug_flag", "debug_requested", "error_message", "run_main", "DEBUG_ENV", "EXIT_ERROR", "EXIT_USAGE",
]

DEBUG_ENV = "MP_JAX_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_ERROR = 1  # an error met while running
EXIT_USAGE = 2  # a bad command line (argparse's status)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it
_DEBUG_HINT = f"run again with {DEBUG_FLAG} (or {DEBUG_ENV}=1) to see the traceback"


# ----------------------------------------------------------------------------- validators
#: The largest count a flag takes: JAX computes in 32-bit integers unless float64 is enabled,
#: and a count (epochs, iterations, steps) meets JAX's int32 arrays and checkpoints' fields.
INT_MAX = 2 ** 31 - 1
#: The largest PRNG seed: a key (``jax.random.PRNGKey``) keeps 32 bits of its seed in JAX's
#: default 32-bit mode, so 2**32 would draw what 0 draws, and past 2**63 it overflows.
SEED_MAX = 2 ** 32 - 1


def _int(text: str, allowed: str, high: Optional[int] = INT_MAX) -> int:
    try:
        n = int(str(text).strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}") from None
    if high is not None and n > high:
        raise argparse.ArgumentTypeError(f"expected {allowed} no larger than {high}, found {text!r}")
    return n


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer from 1 to :data:`INT_MAX`."""
    allowed = "a positive integer (1, 2, ...)"
    n = _int(text, allowed)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}")
    return n


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer from 0 to :data:`INT_MAX`."""
    allowed = "a non-negative integer (0, 1, 2, ...)"
    n = _int(text, allowed)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}")
    return n


def seed(text: str) -> int:
    """argparse ``type=``: a PRNG seed, an integer from 0 to :data:`SEED_MAX`."""
    allowed = f"a seed, an integer from 0 to {SEED_MAX} (JAX's PRNG keys hold 32 bits: a larger seed repeats a " \
              f"smaller one's draws)"
    n = _int(text, allowed, high=None)
    if not 0 <= n <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}")
    return n


def positive_number(text: str) -> float:
    """argparse ``type=``: a finite number > 0 (a learning rate: 0 does not train, a negative
    rate climbs the loss, nan or inf diverges at the first step)."""
    allowed = "a finite number > 0"
    try:
        x = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"expected {allowed}, found {text!r}")
    return x


def folder(text: str) -> Path:
    """argparse ``type=``: the path of a folder: one that exists, or one that can be made
    there (no file in its place, nor in the place of a folder above it)."""
    path = Path(text)
    for above in (path, *path.parents):
        try:
            if not above.exists():
                continue
            if above.is_dir():
                return path
        except OSError:  # no permission to look: the first write says so, naming the path
            return path
        found = f"the file {text!r}" if above == path else f"that {str(above)!r}, above {text!r}, is a file"
        raise argparse.ArgumentTypeError(f"expected a folder (made when missing), found {found}: give the path of a "
                                         f"folder, or move the file away")
    return path


def _jax_devices() -> list:
    import jax

    return list(jax.devices())


def _describe_devices(devices: Sequence) -> str:
    if not devices:
        return "none"
    kinds: dict = {}
    for d in devices:
        kinds[d.platform] = kinds.get(d.platform, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in kinds.items())


def device_count(available: Union[int, Callable[[], int], None] = None) -> Callable[[str], int]:
    """argparse ``type=`` for a device count: an integer from 1 to ``available``.

    ``available``: the number of devices allowed, or a function returning it (called when
    the flag is parsed), or None (only ≥ 1 is checked here; check the bound with
    :func:`check_device_count` once JAX has started). Counting JAX's devices starts JAX,
    which fixes its CPU device count: where ``--cpu-devices`` (or the like) still has to
    be applied, leave ``available`` None and check after :func:`mp_jax.engine.parallel.use_cpu_cores`.
    """

    def parse(text: str) -> int:
        n = positive_int(text)
        limit = available() if callable(available) else available
        if limit is not None and n > limit:
            raise argparse.ArgumentTypeError(f"expected a device count from 1 to {limit} (the devices available), "
                                             f"found {n}")
        return n

    parse.__name__ = "device_count"  # argparse names the type in some messages
    return parse


def check_device_count(parser: argparse.ArgumentParser, n: Optional[int], flag: str = "--devices",
                       devices: Optional[Sequence] = None, cpu_flag: Optional[str] = "--cpu-devices") -> Optional[int]:
    """After JAX has started: stop with a usage error (exit status 2) when ``n`` devices are
    more than JAX has. ``devices``: the devices to count (default ``jax.devices()``);
    ``cpu_flag``: the flag that sets the CPU device count, named in the message on a CPU
    (None: not named). Returns ``n`` (None stays None: "all of them")."""
    if n is None:
        return None
    devices = _jax_devices() if devices is None else list(devices)
    if not 1 <= n <= len(devices):
        more = ""
        if cpu_flag and devices and all(d.platform == "cpu" for d in devices):
            more = f" (on a CPU, {cpu_flag} {n} exposes {n} devices)"
        parser.error(f"argument {flag}: expected a device count from 1 to {len(devices)} "
                     f"(JAX sees {_describe_devices(devices)}), found {n}{more}")
    return n


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Document ``--debug`` in ``parser``'s help (:func:`run_main` acts on it)."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"on an error, show the full traceback instead of one line (also: {DEBUG_ENV}=1)")


# ----------------------------------------------------------------------------- errors
def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    """``--debug`` among the options of ``argv`` (before a ``--``), or ``MP_JAX_DEBUG`` set
    to a true value (1, true, yes, on)."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    for a in (sys.argv[1:] if argv is None else argv):
        if a == "--":
            break
        if a == DEBUG_FLAG:
            return True
    return False


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def error_message(e: BaseException) -> str:
    """The one line :func:`run_main` prints for ``e`` (after ``error: ``)."""
    if isinstance(e, UserError):
        return e.user_message()
    if isinstance(e, OSError):
        return storage_error(e).user_message()
    if isinstance(e, FloatingPointError):  # mp_jax.engine.train.NonFiniteError: its message says what to do
        return f"training diverged: {_one_line(e)}"
    if isinstance(e, MemoryError):
        return ("out of memory (host RAM): use a smaller batch or model, or close other programs, "
                "then run again")
    text = str(e)
    if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:  # XLA's allocator on a device
        return (f"out of device memory ({_first_line(text)[:300]}): use a smaller batch size or model, or more "
                f"devices, then run again")
    detail = _first_line(text)
    return f"{type(e).__name__}{': ' + detail[:500] if detail else ''} (an unexpected error; {_DEBUG_HINT})"


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks (lock files, temporary
    files) run as they do on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run_main(main: Callable[[list], Optional[int]], argv: Optional[Sequence[str]] = None, *,
             catch_sigterm: bool = True) -> int:
    """Run ``main(argv)`` and return the process's exit status.

    * ``main`` returns: its value (None counts as 0).
    * ``SystemExit`` (argparse's usage errors, status 2; ``parser.error``): passes through.
    * Any other exception: one line ``error: <message>`` on stderr, status 1 (Ctrl-C:
      ``error: interrupted``, status 130).
    * ``--debug`` in ``argv`` or ``MP_JAX_DEBUG=1``: the exception propagates with its
      traceback. ``--debug`` is removed from ``argv`` before ``main`` sees it, so a parser
      without :func:`add_debug_flag` still runs.

    ``argv`` defaults to ``sys.argv[1:]``. With ``catch_sigterm`` (and in the main thread),
    SIGTERM ends the program through the same path as Ctrl-C, so that context managers
    (a :class:`~mp_jax.runtime.lock.FolderLock`, atomic writes) clean up; status 143.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if DEBUG_FLAG in argv:
        cut = argv.index("--") if "--" in argv else len(argv)
        argv = [a for a in argv[:cut] if a != DEBUG_FLAG] + argv[cut:]
    previous = None
    if catch_sigterm:
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread
            previous = None
    try:
        if debug:
            return int(main(argv) or 0)
        try:
            return int(main(argv) or 0)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            _print_error("interrupted")
            return EXIT_INTERRUPTED
        except _Terminated:
            _print_error("terminated (SIGTERM)")
            return 128 + signal.SIGTERM
        except Exception as e:  # noqa: BLE001 - the point: one line instead of a traceback
            _print_error(error_message(e))
            return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _print_error(message: str) -> None:
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)


class UsageExit(SystemExit):
    """A usage error's exit: status 2 (``code``), and ``str()`` the line printed."""

    def __init__(self, line: str):
        super().__init__(EXIT_USAGE)
        self.line = line

    def __str__(self) -> str:
        return self.line


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, ``prog: error: message (see
    prog --help)``, exit status 2, instead of the whole usage text and then the message
    (subcommands made with ``add_subparsers`` inherit it). The exit is a :class:`UsageExit`,
    whose ``str()`` is that line."""

    def error(self, message: str):
        line = f"{self.prog}: error: {' '.join(str(message).split())} (see {self.prog} --help)"
        self._print_message(line + "\n", sys.stderr)
        raise UsageExit(line)
