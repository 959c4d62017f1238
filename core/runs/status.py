"""A run's status, as run.json records it."""
from __future__ import annotations

from enum import Enum


class RunStatus(str, Enum):
    """run.json's `status`. The members are strings equal to the words run.json holds, so files
    written before (plain strings) compare equal and new files read the same."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    STOPPED = "stopped"
    ERROR = "error"
    FAILED = "failed"  # a condition outside the run (e.g. disk full): fix it, then resume
    CRASHED = "crashed"
    MISSING = "missing"  # no run.json and no config: not a run

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # as the plain string's, so either finds the other in a dict or set
        return str.__hash__(self)


TERMINAL = (RunStatus.DONE, RunStatus.STOPPED, RunStatus.ERROR, RunStatus.FAILED, RunStatus.CRASHED)
ACTIVE = (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)
