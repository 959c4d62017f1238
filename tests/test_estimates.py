"""The Train tab's memory and time estimates (core.training.estimate), and how the studio words them."""
from __future__ import annotations

from pathlib import Path

import torch

from core.config import parse_config
from core.training.estimate import estimate_memory, estimate_time


def test_time_estimate_scales_with_steps_and_frames(tmp_path):
    cfg = parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 100}})
    t = estimate_time(cfg)
    assert t["steps"] == 10 and t["step_s"] > 0 and abs(t["total_s"] - 10 * t["step_s"]) < 1e-9
    longer = estimate_time(parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 400}}))
    assert longer["step_tflop"] > t["step_tflop"]
    unprepared = estimate_time(parse_config({"workspace": str(tmp_path), "training": {"epochs": 2}}))
    assert unprepared["steps"] is None and unprepared["total_s"] is None
    assert estimate_memory(cfg)["total_gb"] > 0


def test_studio_shows_memory_and_time(tmp_path):
    from studio import backend

    cfg = parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 100}})
    text = backend.estimate(cfg)
    assert "GPU memory estimate" in text and "Time estimate: about" in text and "10 steps" in text


def test_matmul_peak_is_measured_once_and_cached(tmp_path):
    import json

    from core.training.estimate import PEAK_CACHE, matmul_peak

    cfg = parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 100}})
    first = estimate_time(cfg)
    cache = tmp_path / PEAK_CACHE
    stored = json.loads(cache.read_text(encoding="utf-8"))
    assert len(stored) == 1 and list(stored.values())[0] > 0
    # a new process (cleared in-process cache) reads the file instead of measuring again
    key = next(iter(stored))
    cache.write_text(json.dumps({key: 2.0e12}), encoding="utf-8")
    matmul_peak.cache_clear()
    again = estimate_time(cfg)
    assert again["peak_tflops"] == 2.0 and again["step_tflop"] == first["step_tflop"]
    measured = stored[key]  # the same FLOPs over the cached peak
    assert abs(again["step_s"] - first["step_s"] * measured / 2.0e12) <= 1e-9 * first["step_s"] * measured / 2.0e12
    # within a process the value is remembered without reading the file
    cache.write_text("not json", encoding="utf-8")
    assert estimate_time(cfg)["peak_tflops"] == 2.0
    matmul_peak.cache_clear()


def test_memory_estimate_counts_what_freeze_transformer_trains(tmp_path):
    """Under freeze_transformer the estimate's trainable count is exactly what the trainer trains."""
    from core.training.trainer import build_model

    cfg = parse_config({"workspace": str(tmp_path), "training": {"type": "full", "freeze_transformer": True}})
    model, _, _ = build_model(cfg)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    est = estimate_memory(cfg)
    assert est["trainable"] == trained
    assert estimate_memory(parse_config({"workspace": str(tmp_path), "training": {"type": "full"}}))["trainable"] > trained


def _fake_run(cfg, name: str, step_times: list[float], machine=None) -> Path:
    """A run folder whose metrics.jsonl holds what the trainer logs: a phase event, then per-step records."""
    import json

    from core.runs import store as runs
    from core.training.estimate import machine_label

    run = runs.create_run(cfg, name=name)
    lines = [{"type": "event", "event": "phase", "phase": "train", "step": 0,
              "machine": machine or machine_label("cuda" if torch.cuda.is_available() else "cpu")}]
    lines += [{"type": "metrics", "step": i + 1, "loss": 5.0, "step_s": s, "elapsed_s": sum(step_times[:i + 1])}
              for i, s in enumerate(step_times)]
    (run / runs.METRICS_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return run


def test_time_estimate_uses_the_measured_step_time_and_never_benchmarks_then(tmp_path, monkeypatch):
    """Once a run with the same step-shaping settings has logged steps on this machine, the estimate is
    steps x its median step time (step 1, the warm-up, left out); the matmul peak is not measured."""
    import core.training.estimate as est

    data = {"workspace": str(tmp_path), "training": {"max_steps": 40, "max_frames": 100, "learning_rate": 1e-3}}
    cfg = parse_config(data)
    assert estimate_time(cfg)["source"] == "formula"  # nothing measured yet
    run = _fake_run(cfg, "measured", [9.0, 0.5, 0.7, 0.6, 40.0, 0.6])  # a warm-up step and one eval-slow step

    def no_benchmark(*a, **kw):
        raise AssertionError("the matmul peak must not be measured when a step time is known")

    monkeypatch.setattr(est, "matmul_peak", no_benchmark)
    own = estimate_time(cfg, run_dir=run)  # the run's own estimate
    assert own["source"] == "measured" and own["step_s"] == 0.6 and own["total_s"] == 40 * 0.6
    assert own["measured"]["run"] == run.name and own["measured"]["steps"] == 5 and run.name in own["formula"]
    # a new run with the same step-shaping settings (other learning rate, other length) reuses it
    same = estimate_time(parse_config({**data, "training": {**data["training"], "learning_rate": 5e-4,
                                                            "max_steps": 10}}))
    assert same["source"] == "measured" and same["total_s"] == 10 * 0.6
    monkeypatch.undo()
    # other settings (batch 2) or another machine: back to the cached formula
    other = parse_config({**data, "training": {**data["training"], "batch_size": 2}})
    assert estimate_time(other)["source"] == "formula"
    (run / "metrics.jsonl").unlink()
    _fake_run(cfg, "elsewhere", [0.5, 0.5, 0.5], machine="cuda | Some Other GPU")
    assert estimate_time(cfg)["source"] == "formula"


def test_studio_estimate_says_measured(tmp_path):
    from studio import backend

    cfg = parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 100}})
    _fake_run(cfg, "measured", [3.0, 2.0, 2.0, 2.0])
    text = backend.estimate(cfg)
    assert "Time estimate: about 20 s" in text and "median step time of run" in text


def test_a_peak_measured_beside_a_training_run_is_not_kept(tmp_path):
    """The cached peak is a quiet measurement: while a run of the workspace trains, a missing peak is
    measured for this process only, and the file is written once the machine is quiet."""
    import os

    from core.runs import process
    from core.runs import store as runs
    from core.training.estimate import PEAK_CACHE, matmul_peak

    cfg = parse_config({"workspace": str(tmp_path), "training": {"max_steps": 10, "max_frames": 100}})
    busy = runs.create_run(cfg, name="busy")  # this test's own live process stands in for its trainer
    runs.update_run_json(busy, status="running", pid=os.getpid(), pid_start=process.process_start_time(os.getpid()))
    matmul_peak.cache_clear()
    try:
        assert estimate_time(cfg)["source"] == "formula" and not (tmp_path / PEAK_CACHE).exists()
        runs.update_run_json(busy, status="done")
        estimate_time(cfg)
        assert (tmp_path / PEAK_CACHE).is_file()
    finally:
        matmul_peak.cache_clear()
