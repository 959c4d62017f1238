"""The operating-system side of a training run: which process is the run's (a pid checked against its
start time, so a reused pid is never mistaken for it), the children this process started (reaped, exit
code known), and signalling a run's processes and nothing else. core.runs.store keeps the run.json bookkeeping."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Optional

import psutil

# Popen handles of runs started by this process, so finished children are reaped (no zombies)
# and their exit code is known.
_CHILDREN: dict[str, subprocess.Popen] = {}


def process_start_time(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch, 10 ms resolution), to tell a reused pid
    apart from the process a run recorded; None when there is no such process."""
    try:
        return round(psutil.Process(int(pid)).create_time(), 2)
    except (psutil.Error, ValueError):
        return None


def pid_alive(pid: Optional[int], start_time: Optional[float] = None) -> bool:
    """True when `pid` exists, is not a zombie and (when known) started at `start_time`."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        started = round(proc.create_time(), 2)
    except psutil.AccessDenied:
        return True
    except (psutil.Error, ValueError):
        return False
    # Equal within rounding: the recorded value went through round() and JSON.
    return start_time is None or abs(float(start_time) - started) < 0.05


def remember_child(run_dir: Path, proc: subprocess.Popen) -> None:
    _CHILDREN[str(Path(run_dir).resolve())] = proc


def forget_child(run_dir: Path) -> None:
    """The run folder is gone or renamed: its old path must not match a later run's."""
    _CHILDREN.pop(str(Path(run_dir).resolve()), None)


def exit_code(run_dir: Path) -> Optional[int]:
    """Exit code of a child this process started, once it has ended; None while it runs or if unknown."""
    proc = _CHILDREN.get(str(Path(run_dir).resolve()))
    if proc is None:
        return None
    return proc.poll()


def kill_group(info: dict[str, Any], sig: int) -> None:
    """Signal a run's processes, and never anything else.

    Only a process group this studio created (`start_run`: start_new_session, recorded as
    launched_by "studio") is signalled as a group. A run started from a shell shares its process group
    with the user's shell job, so only the trainer's own pid is signalled, after checking it is still
    the process that started the run (a reused pid is left alone). Its descendants are signalled too
    (the workers of a multi-process launch run in sessions of their own), but for a shell's run only
    those that are trainer workers (`-m core.train`), never another process of the user's job.
    """
    pid = info.get("pid")
    if not pid:
        return
    pid = int(pid)
    ours = info.get("launched_by") == "studio" and info.get("pgid") == pid
    started = info.get("pid_start")
    descendants: list[psutil.Process] = []
    if pid_alive(pid, started):
        try:
            descendants = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            pass
    try:
        if pid_alive(pid, started):
            if ours and os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        elif ours and started is not None:
            # the leader is gone but workers of its group may live on: signal those started after it
            for proc in psutil.process_iter(["pid", "create_time"]):
                try:
                    if os.getpgid(proc.pid) == pid and proc.info["create_time"] >= float(started) - 0.05:
                        proc.send_signal(sig)
                except (ProcessLookupError, psutil.Error):
                    continue
    except ProcessLookupError:
        pass
    for proc in descendants:
        try:
            # in a shell's job, only the trainer's own workers: anything else the user started is theirs
            if ours or _is_trainer(proc):
                proc.send_signal(sig)
        except psutil.Error:
            pass


def _is_trainer(proc: psutil.Process) -> bool:
    cmd = proc.cmdline()
    return "core.train" in cmd or any(c.endswith(("core/train.py", "core\\train.py")) for c in cmd)


def group_alive(run_dir: Path, info: dict[str, Any]) -> bool:
    if exit_code(run_dir) is not None:
        return False
    pid = info.get("pid")
    return pid_alive(pid, info.get("pid_start"))
