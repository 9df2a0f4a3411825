"""The results-folder lock: one run at a time, stale locks taken over, removed on exit."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from mp_jax import lock
from mp_jax.errors import UserError
from mp_jax.lock import FolderLock, LockHeld

HANG_GUARD_S = 1800  # a hung subprocess only; not a time limit


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=HANG_GUARD_S)
    assert not lock.pid_alive(proc.pid)
    return proc.pid


def write_lock(folder, **fields):
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
        assert abs(d["since"] - time.time()) < 3600 and d["token"] == held.holder.token
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


def test_a_lock_held_by_another_live_process_is_refused(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        write_lock(tmp_path, pid=proc.pid)
        with pytest.raises(LockHeld, match=f"pid {proc.pid} on host"):
            FolderLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == proc.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, pid=pid)
    with caplog.at_level(logging.WARNING, logger="mp_jax.lock"):
        with FolderLock(tmp_path) as held:
            assert json.loads((tmp_path / ".lock").read_text())["token"] == held.holder.token
    assert not (tmp_path / ".lock").exists()
    [rec] = [r for r in caplog.records if r.name == "mp_jax.lock"]
    assert rec.levelno == logging.WARNING
    assert "took over the lock of a run that no longer exists" in rec.getMessage()
    assert f"pid {pid} on host {socket.gethostname()}" in rec.getMessage()


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/stat"), reason="needs Linux /proc")
def test_a_lock_whose_pid_was_reused_is_stale(tmp_path, caplog):
    mine = lock._process_start_ticks(os.getpid())
    write_lock(tmp_path, pid=os.getpid(), start_ticks=mine - 1)  # "that pid, started earlier"
    with caplog.at_level(logging.WARNING, logger="mp_jax.lock"), FolderLock(tmp_path):
        pass
    assert "took over" in caplog.text
    write_lock(tmp_path, pid=os.getpid(), start_ticks=mine)  # the same process: live
    with pytest.raises(LockHeld):
        FolderLock(tmp_path).acquire()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host="elsewhere.example")
    with pytest.raises(LockHeld, match=r"on host elsewhere\.example.*wait for it to finish on elsewhere\.example.*"
                                       r"if no run is active there, delete"):
        FolderLock(tmp_path).acquire()
    assert (tmp_path / ".lock").exists()


def test_an_unreadable_lock_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / ".lock").write_text("not json")
    with pytest.raises(LockHeld, match=r"the lock file cannot be read .* delete .*\.lock and run again"):
        FolderLock(tmp_path).acquire()


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
    with caplog.at_level(logging.WARNING, logger="mp_jax.lock"):
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
            results.append(("held", lk.holder.token))
        except LockHeld:
            results.append(("refused", None))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_S)
    held = [tok for kind, tok in results if kind == "held"]
    assert len(results) == 8 and len(held) == 1, results
    assert json.loads((tmp_path / ".lock").read_text())["token"] == held[0]
    assert not (tmp_path / ".lock.takeover").exists()


def test_a_lock_beside_the_folder_it_guards_survives_renaming_that_folder(tmp_path):
    q1 = tmp_path / "q1"
    q1.mkdir()
    with FolderLock(tmp_path, name=".q1.lock", guards=q1) as held:
        q1.rename(tmp_path / "q1.old")  # what --fresh does
        with pytest.raises(LockHeld, match=f"the results folder {q1} is in use by another run"):
            FolderLock(tmp_path, name=".q1.lock", guards=q1).acquire()
        assert held.held
    assert not (tmp_path / ".q1.lock").exists()
