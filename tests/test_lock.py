"""The results-folder lock: one run at a time, a dead run's lock taken over, removed on exit."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mp_jax.runtime import lock
from mp_jax.runtime.errors import UserError
from mp_jax.runtime.lock import FolderLock, LockHeld

HANG_GUARD_S = 1800  # a hung subprocess only; not a time limit


REPO = Path(__file__).resolve().parent.parent
HOLD = textwrap.dedent("""
    import sys, time
    from mp_jax.runtime.lock import FolderLock
    with FolderLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
""")


def holding_process(folder) -> subprocess.Popen:
    """Another process that has taken the lock of ``folder`` and holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline() == "held\n"
    return proc


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=HANG_GUARD_S)
    return proc.pid


def write_lock(folder, **fields):
    """A lock file as a run leaves it that no longer holds it (its flock gone with it)."""
    d = dict(pid=os.getpid(), host=socket.gethostname(), since=time.time() - 3600, command="python -m experiments",
             start_ticks=None, token="theirs")
    d.update(fields)
    (folder / ".lock").write_text(json.dumps(d))
    return d


def test_the_lock_file_names_this_process_and_goes_on_exit(tmp_path):
    with FolderLock(tmp_path / "results") as held:
        assert held.held
        d = json.loads((tmp_path / "results" / ".lock").read_text())
        assert d["pid"] == os.getpid() and d["host"] == socket.gethostname()
        assert abs(d["since"] - time.time()) < 3600 and lock.Holder(**d) == held.holder
    assert not (tmp_path / "results" / ".lock").exists()
    assert not held.held


def test_a_second_lock_on_the_folder_is_refused_naming_the_holder(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(LockHeld) as e:
            FolderLock(tmp_path).acquire()
    msg = str(e.value)
    assert isinstance(e.value, UserError)
    assert f"the results folder {tmp_path} is in use by another run (pid {os.getpid()} on host " \
           f"{socket.gethostname()}, since " in msg
    assert f"wait for it to finish, or stop it (kill {os.getpid()}); if no such run is active, delete " \
           f"{tmp_path / '.lock'}, then run again." in msg
    assert e.value.holder.pid == os.getpid()
    assert not (tmp_path / ".lock").exists()  # the refused one did not remove the holder's lock
    with FolderLock(tmp_path):  # free again
        pass


def test_a_lock_held_by_another_live_process_is_refused_in_one_line_naming_it(tmp_path):
    proc = holding_process(tmp_path)
    try:
        with pytest.raises(LockHeld, match=f"pid {proc.pid} on host {socket.gethostname()}, since .*, command: ") as e:
            FolderLock(tmp_path).acquire()
        assert "\n" not in str(e.value) and f"(kill {proc.pid})" in str(e.value) and e.value.holder.pid == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid  # left as it was


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning_naming_it(tmp_path, caplog):
    proc = holding_process(tmp_path)
    proc.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays, the kernel drops the flock
    proc.wait(timeout=HANG_GUARD_S)
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid
    with caplog.at_level(logging.WARNING, logger="mp_jax.runtime.lock"):
        with FolderLock(tmp_path) as held:
            assert lock.Holder(**json.loads((tmp_path / ".lock").read_text())) == held.holder
    assert not (tmp_path / ".lock").exists()
    [rec] = [r for r in caplog.records if r.name == "mp_jax.runtime.lock"]
    assert rec.levelno == logging.WARNING
    assert "took over the lock of a run that no longer exists" in rec.getMessage()
    assert f"pid {proc.pid} on host {socket.gethostname()}" in rec.getMessage()


def test_a_lock_file_left_behind_is_taken_over_even_if_its_pid_is_alive(tmp_path, caplog):
    write_lock(tmp_path, pid=os.getpid())  # a pid reused since, say: only the flock counts
    with caplog.at_level(logging.WARNING, logger="mp_jax.runtime.lock"), FolderLock(tmp_path):
        pass
    assert "took over" in caplog.text


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host="elsewhere.example")
    with pytest.raises(LockHeld, match=r"on host elsewhere\.example.*wait for it to finish on elsewhere\.example.*"
                                       r"if no run is active there, delete"):
        FolderLock(tmp_path).acquire()
    assert (tmp_path / ".lock").exists()


def test_an_unreadable_lock_file_nobody_holds_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / ".lock").write_text("not json")
    with caplog.at_level(logging.WARNING, logger="mp_jax.runtime.lock"), FolderLock(tmp_path):
        pass
    assert "took over the lock" in caplog.text and "unreadable: 'not json'" in caplog.text


def test_the_lock_goes_on_an_exception_too(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with FolderLock(tmp_path):
            assert (tmp_path / ".lock").exists()
            1 / 0
    assert not (tmp_path / ".lock").exists()
    with pytest.raises(KeyboardInterrupt):
        with FolderLock(tmp_path):
            raise KeyboardInterrupt
    assert not (tmp_path / ".lock").exists()


def test_release_leaves_a_lock_that_is_no_longer_its_own(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mp_jax.runtime.lock"):
        with FolderLock(tmp_path):
            write_lock(tmp_path, token="someone else")  # e.g. deleted by hand and taken by another run
    assert json.loads((tmp_path / ".lock").read_text())["token"] == "someone else"
    assert "no longer this run's" in caplog.text


def test_of_many_runs_taking_a_stale_lock_at_once_exactly_one_gets_it(tmp_path):
    write_lock(tmp_path, pid=dead_pid())
    barrier = threading.Barrier(8)
    results = []

    def attempt():
        lk = FolderLock(tmp_path)
        barrier.wait()
        try:
            lk.acquire()
            results.append(("held", lk.holder))
        except LockHeld:
            results.append(("refused", None))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_S)
    held = [tok for kind, tok in results if kind == "held"]
    assert len(results) == 8 and len(held) == 1, results
    assert lock.Holder(**json.loads((tmp_path / ".lock").read_text())) == held[0]


def test_a_lock_beside_the_folder_it_guards_survives_renaming_that_folder(tmp_path):
    q1 = tmp_path / "q1"
    q1.mkdir()
    with FolderLock(tmp_path, name=".q1.lock", guards=q1) as held:
        q1.rename(tmp_path / "q1.old")  # what --fresh does
        with pytest.raises(LockHeld, match=f"the results folder {q1} is in use by another run"):
            FolderLock(tmp_path, name=".q1.lock", guards=q1).acquire()
        assert held.held
    assert not (tmp_path / ".q1.lock").exists()
