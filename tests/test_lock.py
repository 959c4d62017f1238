"""core.runs.lock: one trainer per output_dir, the second one told who holds it; the lock dies with its holder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.runs.lock import LOCK_NAME, RunLock, RunLocked, lock_holder

REPO = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from core.runs.lock import RunLock
lock = RunLock(sys.argv[1], command="holder-test").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _start_holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=str(REPO), stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_locker_names_the_holder_and_lock_dies_with_it(tmp_path):
    proc = _start_holder(tmp_path)
    try:
        holder = lock_holder(tmp_path)
        assert holder["pid"] == proc.pid and holder["command"] == "holder-test" and holder["host"]
        with pytest.raises(RunLocked) as exc:
            RunLock(tmp_path).acquire()
        msg = str(exc.value)
        assert f"pid {proc.pid}" in msg and "holder-test" in msg and str(tmp_path) in msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # killed without any cleanup: the kernel released the lock
    assert lock_holder(tmp_path) is None
    with RunLock(tmp_path, command="me") as lock:
        assert lock.held
        rec = json.loads((tmp_path / LOCK_NAME).read_text())
        assert rec["pid"] == os.getpid() and rec["command"] == "me"
    assert lock_holder(tmp_path) is None
    assert (tmp_path / LOCK_NAME).read_text() == ""  # no stale record once free


def test_same_process_second_lock_is_refused(tmp_path):
    with RunLock(tmp_path, command="first"):
        with pytest.raises(RunLocked, match="first"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()


def test_no_lock_file_means_free(tmp_path):
    assert lock_holder(tmp_path / "nothing") is None
