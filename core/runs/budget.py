"""A job's time budget: the one rule that stops a long job (generation, A/B, sweep, candidates, prepare).

A job checks its budget at every step it makes (a generated frame, a validation batch, a tokenized song)
and whenever it enters a stage that draws no frames (loading a model, the held-out validation loss,
decoding audio). The check raises `TimeLimit`, a coded StudioError naming the stage, when:

- the job has run longer than its bound (`time_limit`: `generation.time_limit_s`, `data.time_limit_s`);
- no step finished for longer than the stall bound (`time_stall`: `generation.stall_limit_s`,
  `data.stall_limit_s`): checked when the next step or stage arrives, so the error names the stage that
  stalled; a caller that must answer in bounded time even when one call never returns runs the job with
  `run_watched` (the studio does), which raises as soon as a bound passes and leaves the job to stop at
  its next step;
- the compute time its caller granted is spent (`time_quota`: a public-Space visitor's seconds left).

Time is the job's wall time (`time.monotonic`): one server process serves every visitor, so a job's own CPU
time cannot be told apart from its neighbours'.

The generation bound, when the config leaves it unset, is sized from the model and the length asked:
300 s for loading, decoding and the validation loss, plus 3x (frame steps x passes x seconds per step), a
step costing at least 50 ms and at least one read of the weights at 1 GB/s on a CPU (100 GB/s on a GPU).
It is meant to end a hung job, not to limit normal work on a slow machine.
"""
from __future__ import annotations

import contextvars
import threading
import time
from typing import Any, Callable, Optional

from core.errors import StudioError

# what a job and a stage are, for the English message; a UI words them by their codes
JOBS = {"single": "generation", "ab": "A/B", "sweep": "strength sweep", "candidates": "candidates",
        "tokenize": "tokenize"}
STAGES = {"start": "preparing the job", "data": "reading the validation songs", "load": "loading a model",
          "frames": "generating frames", "val": "the held-out validation loss", "decode": "decoding and writing audio",
          "song": "tokenizing songs", "write": "writing the dataset"}

FIXED_S = 300.0  # loading, decoding, validation: the stages that are not frame steps
SLACK = 3.0
STEP_FLOOR_S = 0.05
READ_BYTES_PER_S = {"cpu": 1e9, "cuda": 100e9}
POLL_S = 1.0  # how often run_watched looks at a running job's budget
GRACE_S = 5.0  # how long it then lets the job reach its next step and end with its own error


def _s(seconds: float) -> str:
    """Seconds as a message shows them: whole above 10, one decimal below (a bound of 0.5 s is not "0 s")."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}".removesuffix(".0")


def now() -> float:
    """The budget's clock (tests replace this module's `time`)."""
    return time.monotonic()


class TimeLimit(StudioError, RuntimeError):
    """A job stopped by its time budget; `code` is time_limit, time_stall or time_quota, and the params
    name the job, the stage (a code of STAGES), what it was working on and the seconds."""

    code = "time_limit"


class Budget:
    """The bounds of one job (`job`: a code of JOBS) and where it is. `limit_s` / `stall_s`: None = no
    bound; `quota_s`: the compute seconds the caller has left to give (None: no quota); the keys name the
    config keys that set the bounds, for the message."""

    def __init__(self, job: str, *, limit_s: Optional[float] = None, stall_s: Optional[float] = None,
                 quota_s: Optional[float] = None, limit_key: str = "", stall_key: str = ""):
        self.job, self.limit_s, self.stall_s, self.quota_s = job, limit_s, stall_s, quota_s
        self.limit_key, self.stall_key = limit_key, stall_key
        self.t0 = self.last = now()
        self.stage, self.name = "start", ""
        self.expired: Optional[TimeLimit] = None
        self.worker: Optional[threading.Thread] = None  # run_watched's thread (alive after an early answer)

    @classmethod
    def from_section(cls, section, job: str, prefix: str, quota_s: Optional[float] = None) -> "Budget":
        """A budget from a config section holding `time_limit_s` and `stall_limit_s` (generation, data)."""
        return cls(job, limit_s=section.time_limit_s, stall_s=section.stall_limit_s, quota_s=quota_s,
                   limit_key=f"{prefix}.time_limit_s", stall_key=f"{prefix}.stall_limit_s")

    def elapsed(self) -> float:
        return now() - self.t0

    def size(self, seconds: float) -> None:
        """Set the job's bound to `seconds` when the config left it unset (sized once the model is known)."""
        if self.limit_s is None:
            self.limit_s = float(seconds)

    def _fail(self, code: str, message: str, **params: Any) -> None:
        where = STAGES.get(self.stage, self.stage) + (f" ({self.name})" if self.name else "")
        raise TimeLimit(f"{JOBS.get(self.job, self.job)} stopped during {where}: {message}", code=code, job=self.job,
                        stage=self.stage, name=self.name, **params)

    def check(self) -> None:
        """Raise TimeLimit when a bound has passed (or a watchdog found one, `overdue`); otherwise count this
        as a step made."""
        if self.expired is not None:
            raise self.expired
        t = now()
        self._bounds(t)
        self.last = t

    def overdue(self) -> Optional[TimeLimit]:
        """The TimeLimit a check would raise now, without counting a step; kept, so the job's next check
        raises it too. For a watchdog in another thread (a stage that hangs inside one call makes no step)."""
        try:
            self._bounds(now())
        except TimeLimit as err:
            self.expired = err
            return err
        return None

    def _bounds(self, t: float) -> None:
        elapsed, gap = t - self.t0, t - self.last
        if self.quota_s is not None and elapsed > self.quota_s:
            self._fail("time_quota", f"the compute time it was given ({_s(self.quota_s)} s) is spent after "
                       f"{_s(elapsed)} s", seconds=_s(elapsed), limit=_s(self.quota_s))
        if self.limit_s is not None and elapsed > self.limit_s:
            self._fail("time_limit", f"it ran {_s(elapsed)} s, past its limit of {_s(self.limit_s)} s "
                       f"({self.limit_key}); ask for less (shorter audio, fewer models or songs) or raise "
                       f"{self.limit_key}", seconds=_s(elapsed), limit=_s(self.limit_s), setting=self.limit_key)
        if self.stall_s is not None and gap > self.stall_s:
            self._fail("time_stall", f"no progress for {_s(gap)} s (limit {_s(self.stall_s)} s, "
                       f"{self.stall_key}); the machine may be busy with another job, or raise "
                       f"{self.stall_key}", seconds=_s(gap), limit=_s(self.stall_s), setting=self.stall_key)

    def enter(self, stage: str, name: str = "") -> None:
        """A new stage begins: what passed until now is checked against the stage that ran until now."""
        self.check()
        self.stage, self.name = stage, name

    def steps(self, forward: Optional[Callable[..., Any]] = None) -> Callable[..., None]:
        """A progress callback that checks the budget at each call, then passes the call on to `forward`."""
        def step(*args: Any, **kw: Any) -> None:
            self.check()
            if forward is not None:
                forward(*args, **kw)
        return step


def run_watched(budget: Budget, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
    """fn(*args, **kw) in a worker thread (with the caller's context: a UI's progress reporter keeps working),
    watched: its result or its error, or, once the budget is overdue, that TimeLimit -- also when the job
    hangs inside one call and never reaches a step. A job still stepping gets GRACE_S to stop at its next
    step with its own error (its files then say "stopped"); one that does not is answered for and left to
    stop at its next step (the budget stays expired), or left behind as a daemon thread if it never returns."""
    done = threading.Event()
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def work() -> None:
        try:
            box["result"] = context.run(fn, *args, **kw)
        except BaseException as err:  # handed to the caller's thread
            box["error"] = err
        finally:
            done.set()

    budget.worker = threading.Thread(target=work, daemon=True, name=f"job-{budget.job}")
    budget.worker.start()
    while not done.wait(POLL_S):
        late = budget.overdue()
        if late is not None and not done.wait(GRACE_S):  # a job still stepping stops by itself at once
            raise late
    if "error" in box:
        raise box["error"]
    return box["result"]


def generation_bound(model, frame_steps: int, passes: int, device: str = "cpu") -> float:
    """The default bound of a generation job (see the module doc): `frame_steps` per pass (the frames asked
    plus the codebook delay), `passes` through the model."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rate = READ_BYTES_PER_S["cuda" if str(device).startswith("cuda") else "cpu"]
    per_step = max(STEP_FLOOR_S, weight_bytes / rate)
    return FIXED_S + SLACK * frame_steps * max(1, passes) * per_step


def song_steps(budget: Budget, forward: Optional[Callable[..., Any]] = None) -> Callable[..., None]:
    """core.data.prepare's progress(done, total, message) as budget stages: a song starts ("song", its idx), then
    the dataset is written ("write"); each call checks the budget, then passes on to `forward`."""
    def step(done: int, total: int, message: str = "") -> None:
        if done < total:
            budget.enter("song", str(message))
        else:
            budget.enter("write")
        if forward is not None:
            forward(done, total, message)
    return step


def data_budget(cfg, quota_s: Optional[float] = None) -> Budget:
    """The budget of a prepare (tokenize) job from the config's data bounds."""
    return Budget.from_section(cfg.data, "tokenize", "data", quota_s)
