"""Checkpoint retention (keep_last, never the best / save-now / stop / end), the checkpoint list,
and the one-active-run rule of a workspace."""
from __future__ import annotations

import json
import os

import pytest

from core.runs import store as runs
from core.training.checkpoints import KEPT_REASONS, list_checkpoints, prunable
from core.runs.process import process_start_time


def _ckpt(run, step, reason, val=None):
    d = run / "checkpoints" / f"step-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"step": step, "reason": reason, "val_loss": val,
                                                      "loss": 1.0, "time": "2026-01-01T00:00:00"}))


def test_prunable_keeps_best_and_user_checkpoints(tmp_path):
    run = tmp_path / "run"
    for step, reason, val in [(5, "save_every", None), (10, "best", 2.0), (15, "save-now", None),
                              (20, "save_every", None), (25, "save_every", None), (30, "save_every", None)]:
        _ckpt(run, step, reason, val)
    runs.update_run_json(run, best={"path": str(run / "checkpoints" / "step-10"), "step": 10, "val_loss": 2.0})
    entries = list_checkpoints(run)
    assert [e["step"] for e in entries] == [5, 10, 15, 20, 25, 30]
    assert [e["best"] for e in entries] == [False, True, False, False, False, False]
    doomed = {os.path.basename(p) for p in prunable(entries, keep_last=2)}
    assert doomed == {"step-5", "step-20"}  # best (10) and Save now (15) stay; the newest 2 periodic stay
    assert "save-now" in KEPT_REASONS and "end" in KEPT_REASONS
    # a former best that is no longer the best is an ordinary checkpoint again
    runs.update_run_json(run, best={"path": str(run / "checkpoints" / "step-25"), "step": 25, "val_loss": 1.0})
    doomed = {os.path.basename(p) for p in prunable(list_checkpoints(run), keep_last=1)}
    assert doomed == {"step-5", "step-10", "step-20"}


def test_second_exclusive_start_is_refused(tmp_path):
    ws = tmp_path
    busy = runs.runs_root(ws) / "a"
    other = runs.runs_root(ws) / "b"
    for d in (busy, other):
        d.mkdir(parents=True)
        (d / runs.CONFIG_NAME).write_text("paths:\n  output_dir: " + str(d) + "\n")
    # a live process stands in for the first trainer
    runs.update_run_json(busy, status="running", pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    assert runs.active_run(ws)["run_dir"] == str(busy)
    with pytest.raises(RuntimeError, match="stop it before starting another"):
        runs.start_run(other, exclusive=True)
    assert runs.read_run_json(other).get("status") is None  # nothing was launched
