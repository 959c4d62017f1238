"""Live view of a run from its files: an incremental reader of metrics.jsonl shared by every
viewer of the same run, with EMA smoothing and down-sampling for the plot.

A poll tick costs the bytes appended since the last tick (core.runs.store.read_metrics seeks to the
last offset), not a re-read of the whole file; a second browser or a reloaded page reuses the
parsed series. Everything here can be rebuilt from the files at any time.
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

STREAMS = ("loss", "loss_mixed", "loss_vocal", "loss_bgm", "val_loss",
           # DPO runs (core.preference): train-batch and held-out reward margin / accuracy
           "reward_margin", "reward_accuracy", "val_reward_margin", "val_reward_accuracy")
SMOOTH = 0.9  # EMA weight of the previous value (TensorBoard-style, de-biased)
MAX_POINTS = 600  # per series in the plot


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    raw: list[Optional[float]] = field(default_factory=list)
    ema: list[Optional[float]] = field(default_factory=list)
    _acc: list[tuple[float, float]] = field(default_factory=list)  # (ema numerator, weight) per point

    def add(self, step: int, value: Optional[float]) -> None:
        if self.steps and step <= self.steps[-1]:  # resumed run repeats steps: later line wins
            cut = bisect.bisect_left(self.steps, step)
            del self.steps[cut:], self.raw[cut:], self.ema[cut:], self._acc[cut:]
        num, w = self._acc[-1] if self._acc else (0.0, 0.0)
        if value is not None and math.isfinite(value):
            num, w = SMOOTH * num + (1 - SMOOTH) * value, SMOOTH * w + (1 - SMOOTH)
        self.steps.append(step)
        self.raw.append(value if value is not None and math.isfinite(value) else None)
        self.ema.append(num / w if w else None)
        self._acc.append((num, w))


@dataclass
class RunView:
    run_dir: str
    offset: int = 0
    version: int = 0
    series: dict[str, Series] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            kind = r.get("type", "metrics")
            if kind == "metrics" and "step" in r:
                step = int(r["step"])
                for k in STREAMS:
                    if k in r:
                        self.series.setdefault(k, Series()).add(step, r[k])
                self.last = r
            elif kind == "event":
                if r.get("event") == "eval" and "step" in r:  # held-out values (validation curve): as they are
                    for k in STREAMS:
                        if k.startswith("val_") and k in r:
                            self.series.setdefault(k, Series()).add(int(r["step"]), r[k])
                self.events.append(r)
                del self.events[:-200]
        if records:
            self.version += 1

    def rows(self, max_points: int = MAX_POINTS, labels: Optional[dict[str, str]] = None) -> list[tuple[int, float, str]]:
        """(step, value, series) rows for the plot, each series thinned to about max_points; `labels`
        renames the legend entries (translations of "loss (raw)", "loss (smoothed)", "val_loss")."""
        labels = labels or {}
        out = []
        for name, s in self.series.items():
            n = len(s.steps)
            stride = max(1, math.ceil(n / max_points))
            idx = list(range(0, n, stride))
            if n and idx[-1] != n - 1:
                idx.append(n - 1)
            for i in idx:
                if s.raw[i] is not None and name == "loss":
                    out.append((s.steps[i], s.raw[i], labels.get("loss (raw)", "loss (raw)")))
                if name.startswith("val_"):  # held out: plotted as measured, not smoothed
                    if s.raw[i] is not None:
                        out.append((s.steps[i], s.raw[i], labels.get(name, name)))
                elif s.ema[i] is not None:
                    label = f"{name} (smoothed)"
                    out.append((s.steps[i], s.ema[i], labels.get(label, label)))
        return out


    def snapshot(self, max_points: int = MAX_POINTS, labels: Optional[dict[str, str]] = None
                 ) -> tuple[int, list[tuple[int, float, str]]]:
        """(version, rows) read together under the view's lock. Two pollers of one run (the timer and a
        run switch, or two browsers) refresh it concurrently: a version read after another poller's
        ingest, beside rows read before it, made the page believe it had the newest rows and keep a
        plot without its last series (the validation curve) until a reload."""
        with self.lock:
            return self.version, self.rows(max_points, labels)


_VIEWS: dict[str, RunView] = {}
_VIEWS_LOCK = threading.Lock()


def view(run_dir: str | Path) -> RunView:
    key = str(Path(run_dir).resolve())
    with _VIEWS_LOCK:
        v = _VIEWS.get(key)
        if v is None:
            v = _VIEWS[key] = RunView(key)
        return v


def refresh(run_dir: str | Path, read_metrics=None) -> RunView:
    """Read what was appended since the last tick (incremental) and fold it into the view."""
    if read_metrics is None:
        from core.runs.store import read_metrics
    v = view(run_dir)
    with v.lock:
        while True:
            records, new_off = read_metrics(v.run_dir, since_offset=v.offset)
            if new_off < v.offset:  # file replaced: start over
                v.series.clear(), v.events.clear()
            v.offset = new_off
            v.ingest(records)
            if not records:
                break
    return v


def full_reread(run_dir: str | Path, read_metrics=None) -> RunView:
    """Baseline for the bench: parse the whole file again, as a naive poller would."""
    if read_metrics is None:
        from core.runs.store import read_metrics
    v = RunView(str(run_dir))
    off = 0
    while True:
        records, off2 = read_metrics(run_dir, since_offset=off)
        v.ingest(records)
        if off2 == off or not records:
            break
        off = off2
    return v


def fmt_eta(seconds: Optional[float]) -> str:
    if seconds is None or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    s = int(max(0, seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
