"""One training process per run folder: an exclusive lock on `output_dir` for the life of a trainer.

The lock is `fcntl.flock` on `<output_dir>/train.lock`. The kernel drops it when the holder exits,
however it exits (crash, SIGKILL, power loss of the process), so there is never a stale lock to
clean up by hand. The file also records who holds it (pid, host, start time, command) so that a
second trainer -- started from the studio or from a shell with `python -m core train` -- can exit
with a message naming the holder instead of writing the same `step-N` folders and doubling every
metrics line. The file itself is never deleted: removing it while another process waits on the old
inode would let two holders exist at once.

flock works on local filesystems and on NFS (Linux emulates it with POSIX locks there); a folder on a
filesystem that refuses locks gets a clear error rather than silently running unlocked.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional

LOCK_NAME = "train.lock"


class RunLocked(RuntimeError):
    """Another live process holds the run folder's lock."""

    def __init__(self, output_dir: Path, holder: dict[str, Any]):
        self.output_dir, self.holder = Path(output_dir), holder
        super().__init__(f"{output_dir} is in use by another training process ({describe_holder(holder)}); "
                         "stop that run first (studio: Stop, or Ctrl+C in its shell), or train into another "
                         "output_dir")


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: the lock file has no record yet"
    parts = [f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"]
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    if holder.get("command"):
        parts.append(f"command: {holder['command']}")
    return ", ".join(parts)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 64 * 1024)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """`with RunLock(run_dir): ...` or `lock = RunLock(run_dir).acquire(); ...; lock.release()`.

    `acquire` never waits: a held lock raises `RunLocked` naming the holder at once.
    """

    def __init__(self, output_dir: str | os.PathLike, command: Optional[str] = None):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self.command = command if command is not None else " ".join(sys.argv)
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.output_dir.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: processes this trainer starts (e.g. a sample decoder) must not inherit the lock
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(self.output_dir, holder) from None
            raise OSError(err.errno, f"cannot lock {self.path} ({err.strerror}): this filesystem does not "
                                     "support file locks; put the run folder on a local disk") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "command": self.command}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds even when the record cannot be written (e.g. disk full)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale holder record once free
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(output_dir: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The record of the process holding `output_dir`'s lock, or None when nobody holds it.

    For the studio: a run folder whose lock is held is training, whatever run.json says.
    """
    path = Path(output_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_holder(fd) or {"pid": None}
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
