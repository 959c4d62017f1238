"""What the training loop does after each optimizer step: evaluate, save, sample, stop or stop early.

One object decides, from the schedule (`training.eval_every` / `save_every` / `sample_every` / `log_every`),
the user's control flags (`<run>/control/stop|save|sample`, core.runs.store; SIGTERM counts as stop) and
the validation history (best loss, `early_stopping_patience` / `early_stopping_min_delta`). The trainer
carries the decisions out in the order `Decision` lists them. The main process reads the flag files and
every process learns the same decision (`share` sums a list of numbers over the processes).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from core.runs import store as runs


@dataclass(frozen=True)
class Decision:
    """After step `step`, in this order: a new lowest held-out loss is saved as the "best" checkpoint;
    early stopping ends the run as done; Stop saves a "stop" checkpoint and ends it as stopped; else a
    checkpoint for `save` (its reason) and samples for `sample` (their reason)."""

    step: int
    save_best: bool = False
    early_stop: bool = False
    stop: bool = False
    save: Optional[str] = None
    save_is_best: bool = False
    sample: Optional[str] = None


class StepControl:
    def __init__(self, tc, run_dir: Path, *, is_main: bool, share: Callable[[list[float]], list[float]]):
        self.tc, self.run_dir, self.is_main, self.share = tc, run_dir, is_main, share
        self.total_steps = 0
        self.signal_stop = False  # set by the SIGTERM handler
        self.best_val: Optional[float] = None  # lowest validation loss so far (restored on resume)
        self.last_val: Optional[tuple[int, float]] = None  # (step, validation loss) of the latest evaluation
        self.bad_evals = 0  # evaluations since the last improvement of at least min_delta

    def read_flags(self) -> dict[str, bool]:
        """The control flags set since the last step; save and sample are consumed, stop stays until the end."""
        local = {flag: 0.0 for flag in runs.FLAGS}
        local["stop"] = float(self.signal_stop)
        if self.is_main:
            for flag in runs.FLAGS:
                path = runs.flag_path(self.run_dir, flag)
                if path.exists():
                    local[flag] = 1.0
                    if flag != "stop":
                        path.unlink(missing_ok=True)
        summed = self.share([local[flag] for flag in runs.FLAGS])
        return {flag: summed[i] > 0 for i, flag in enumerate(runs.FLAGS)}

    def _every(self, step: int, period: int) -> bool:
        """A scheduled point strictly inside the run (the end has its own evaluation, save and samples)."""
        return bool(period) and step % period == 0 and step < self.total_steps

    def log_now(self, step: int) -> bool:
        return step % self.tc.log_every == 0 or step == self.total_steps

    def evaluate_now(self, step: int) -> bool:
        return self._every(step, self.tc.eval_every)

    def judge(self, step: int, val: Optional[float]) -> bool:
        """Record the validation loss of `step` (None: nothing held out); -> whether it is a new best."""
        if val is None:
            return False
        self.last_val = (step, val)
        is_best = self.best_val is None or val < self.best_val
        if self.best_val is None or val < self.best_val - self.tc.early_stopping_min_delta:
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        if is_best:
            self.best_val = val
        return is_best

    def val_at(self, step: int) -> Optional[float]:
        return self.last_val[1] if self.last_val and self.last_val[0] == step else None

    def decide(self, step: int, flags: dict[str, bool], val: Optional[float]) -> Decision:
        """`val`: the validation loss measured at `step`, None when there was no evaluation."""
        best = self.judge(step, val)
        patience = self.tc.early_stopping_patience
        if val is not None and patience > 0 and self.bad_evals >= patience:
            return Decision(step, save_best=best, early_stop=True)
        if flags["stop"]:
            return Decision(step, save_best=best, stop=True)
        save = None
        if flags["save"]:  # kept to the end of the run, whatever else this step saved
            save = "save-now"
        elif not best and self._every(step, self.tc.save_every):
            save = "save_every"
        sample = "sample-now" if flags["sample"] else "sample_every" if self._every(step, self.tc.sample_every) else None
        return Decision(step, save_best=best, save=save, sample=sample,
                        save_is_best=save == "save-now" and self.last_val == (step, self.best_val))
