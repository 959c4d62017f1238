"""What a training run reports, through accelerate's trackers (main process only).

- `<run>/metrics.jsonl` (`MetricsJsonl`, a small accelerate `GeneralTracker`), read by the studio's
  live view and by core.runs.store: one JSON object per line, either a training-curve record
  `{"type": "metrics", "step", "total", "epoch", "loss", "loss_mixed", "loss_vocal", "loss_bgm", "lr",
  "grad_norm", "tokens_per_s", "step_s", "memory_mb", "elapsed_s", "eta_s"}` (the `train/*` scalars logged at a
  step) or an event `{"type": "event", "event": name, "time": ISO time, ...fields}` (phase, eval,
  checkpoint, sample, error, stopped, done). Non-finite numbers are written as null.
- TensorBoard in `<run>/logs` through accelerate's own tensorboard tracker: every scalar logged,
  named `train/...` and `val/...`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch
from accelerate.tracking import GeneralTracker, on_main_process

from core.runs import store as runs

TRAIN = "train/"  # scalars under this prefix are the metrics.jsonl training curve


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsJsonl(GeneralTracker):
    """metrics.jsonl as an accelerate tracker: `train/*` scalars become a metrics record; `event()`
    appends an event record. Lines are appended whole (one write each), so readers see complete lines."""

    name = "metrics_jsonl"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / runs.METRICS_NAME

    @property
    def tracker(self) -> Path:
        return self.path

    @on_main_process
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict) -> None:
        pass  # the run's config.yaml is the record of its settings

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(_clean(record), allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    @on_main_process
    def log(self, values: dict, step: Optional[int] = None, **kwargs) -> None:
        curve = {k[len(TRAIN):]: v for k, v in values.items() if k.startswith(TRAIN)}
        if curve:
            self.write({"type": "metrics", "step": step, **curve})

    @on_main_process
    def event(self, event: str, **fields: Any) -> None:
        self.write({"type": "event", "event": event, "time": runs.now_iso(), **fields})


class Telemetry:
    """The trainer's reporting, on top of an Accelerator created with `log_with=Telemetry.trackers(run_dir)`:
    events (metrics.jsonl only) and scalars (metrics.jsonl curve + TensorBoard)."""

    def __init__(self, accelerator, run_dir: Path):
        self.accelerator = accelerator
        self.enabled = accelerator.is_main_process
        self.jsonl: Optional[MetricsJsonl] = None
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            accelerator.init_trackers("logs")  # TensorBoard: <logging_dir = run_dir>/logs
            self.jsonl = accelerator.get_tracker(MetricsJsonl.name)

    @staticmethod
    def trackers(run_dir: Path) -> list:
        return [MetricsJsonl(run_dir), "tensorboard"]

    def event(self, event: str, **fields: Any) -> None:
        if self.jsonl is not None:
            self.jsonl.event(event, **fields)

    def scalars(self, step: int, prefix: str, values: dict[str, Any]) -> None:
        """`accelerator.log` of `values` as `<prefix>/<key>` at `step`: TensorBoard gets them all;
        metrics.jsonl turns prefix "train" into its training-curve record."""
        self.accelerator.log({f"{prefix}/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        """Finish the trackers (files closed) without ending the process group (error path)."""
        if self.enabled:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.enabled, self.jsonl = False, None


class StepWindow:
    """The optimizer steps since the last training-curve record, and this session's pace (for the ETA).
    A row is a step's named losses and grad_norm, plus its tokens, time (dt), epoch and lr."""

    OWN = ("tokens", "dt", "epoch", "lr")  # summed, or taken from the last step, rather than averaged

    def __init__(self):
        self.rows: list[dict[str, float]] = []
        self.t_session = time.time()
        self.steps = 0  # steps of this session (since the start or the resume)

    def add(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.steps += 1

    def record(self, step: int, total: int, elapsed_before: float, device: torch.device) -> dict[str, Any]:
        """The `train/*` record of the window (which then starts over): mean losses, pace, memory, ETA."""
        rows, self.rows = self.rows, []
        n, last = len(rows), rows[-1]
        mean = {k: sum(r[k] for r in rows) / n for k in rows[0] if k not in self.OWN}
        dt = sum(r["dt"] for r in rows)
        elapsed = time.time() - self.t_session
        eta = elapsed / max(1, self.steps) * (total - step)
        return {"total": total, "epoch": last["epoch"], **mean, "lr": last["lr"],
                "tokens_per_s": sum(r["tokens"] for r in rows) / max(dt, 1e-9),
                "step_s": round(dt / n, 4),  # mean step time of the window: the time estimate's measurement
                "memory_mb": memory_mb(device), "elapsed_s": round(elapsed + elapsed_before, 3),
                "eta_s": round(eta, 1)}


def memory_mb(device: torch.device) -> float:
    """Peak GPU memory of this process (CUDA), else its resident memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20
