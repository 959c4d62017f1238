"""One training process per run folder: an exclusive lock on `output_dir` for the life of a trainer.

The lock is `filelock.FileLock` (an `flock` on `<output_dir>/train.lock`). The kernel drops it when the
holder exits, however it exits (crash, SIGKILL, power loss of the process), so there is never a stale
lock to clean up by hand. The file also records who holds it (pid, host, start time, command) so that a
second trainer -- started from the studio or from a shell with `python -m core train` -- can exit
with a message naming the holder instead of writing the same `step-N` folders and doubling every
metrics line. The file itself is never deleted (`preserve_lock_file`): removing it while another
process waits on the old inode would let two holders exist at once.

flock works on local filesystems and on NFS (Linux emulates it with POSIX locks there); a folder on a
filesystem that refuses locks gets a clear error rather than silently running unlocked (`preserve_lock_file`
also turns off filelock's fallback to a marker file, which a crashed holder would leave behind).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional

from filelock import FileLock, Timeout

from core.errors import StudioError

LOCK_NAME = "train.lock"


class RunLocked(StudioError, RuntimeError):
    """Another live process holds the run folder's lock."""
    code = "run_locked"

    def __init__(self, output_dir: Path, holder: dict[str, Any]):
        self.output_dir, self.holder = Path(output_dir), holder
        super().__init__(f"{output_dir} is in use by another training process ({describe_holder(holder)}); "
                         "stop that run first (studio: Stop, or Ctrl+C in its shell), or train into another "
                         "output_dir", run=str(output_dir), holder=describe_holder(holder))


class RunError(StudioError, RuntimeError):
    """A run that cannot be started, renamed or deleted now (another one is busy, it is running)."""
    code = "run"

    @classmethod
    def busy(cls, run: str, status: str) -> "RunError":
        """Another run of the workspace is active."""
        return cls(f"run {run} is {status}; wait for it to finish or stop it before starting another",
                   code="run_busy", run=run, status=status)

    @classmethod
    def active(cls, run: str, status: str, what: str) -> "RunError":
        """The run itself is active: it cannot be deleted or renamed (`what`)."""
        return cls(f"run {run} is {status}; stop it before you {what} it", code=f"run_active_{what}", run=run,
                   status=status)

    @classmethod
    def not_running(cls, run: str, status: str, flag: str) -> "RunError":
        """Save now / Sample now (`flag`) asked of a finished run: no trainer is left to act on it."""
        return cls(f"{flag} now refused: run {run} is {status}, no trainer is running to act on it; resume it "
                   "first, or pick the running run", code=f"run_not_running_{flag}", run=run, status=status)


class NotARun(StudioError, FileNotFoundError):
    """A folder that is not a run of the workspace."""
    code = "not_a_run"


class RunNameError(StudioError, ValueError):
    """A new run name that cannot be used."""
    code = "run_name"

    @classmethod
    def empty(cls, name: str) -> "RunNameError":
        return cls(f"{name!r} has no letters or digits; choose a name like 'my-voice-lora'", name=name)


class RunNameTaken(StudioError, FileExistsError):
    code = "run_name_taken"


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: the lock file has no record yet"
    parts = [f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"]
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    if holder.get("command"):
        parts.append(f"command: {holder['command']}")
    return ", ".join(parts)


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()[:64 * 1024]
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _file_lock(path: Path, on_acquired=None) -> FileLock:
    # never waits; one hold for the whole process (not per thread); the file stays (see above)
    return FileLock(path, blocking=False, thread_local=False, preserve_lock_file=True, on_acquired=on_acquired)


class RunLock:
    """`with RunLock(run_dir): ...` or `lock = RunLock(run_dir).acquire(); ...; lock.release()`.

    `acquire` never waits: a held lock raises `RunLocked` naming the holder at once.
    """

    def __init__(self, output_dir: str | os.PathLike, command: Optional[str] = None):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self.command = command if command is not None else " ".join(sys.argv)
        self._lock = _file_lock(self.path, on_acquired=self._write_record)
        self._fd: Optional[int] = None  # the lock's descriptor while held (filelock's, borrowed)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def _write_record(self, fd: int) -> None:
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": self.command}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds even when the record cannot be written (e.g. disk full)

    def acquire(self) -> "RunLock":
        if self.held:
            return self
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunLocked(self.output_dir, _read_holder(self.path)) from None
        except OSError as err:
            raise OSError(err.errno, f"cannot lock {self.path} ({err.strerror or err}): this filesystem does not "
                                     "support file locks; put the run folder on a local disk") from None
        return self

    def release(self) -> None:
        if not self.held:
            return
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.ftruncate(fd, 0)  # no stale holder record once free
        except OSError:
            pass
        self._lock.release()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(output_dir: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The record of the process holding `output_dir`'s lock, or None when nobody holds it.

    For the studio: a run folder whose lock is held is training, whatever run.json says. The probe takes
    the lock for an instant when it is free (never creating the file).
    """
    path = Path(output_dir) / LOCK_NAME
    if not path.is_file():
        return None
    probe = _file_lock(path)
    try:
        probe.acquire()
    except Timeout:
        return _read_holder(path) or {"pid": None}
    probe.release()
    return None
