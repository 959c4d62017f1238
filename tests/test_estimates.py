"""The Train tab's memory and time estimates (core.train), and how the studio words them."""
from __future__ import annotations

from core.config import parse_config
from core.train import estimate_memory, estimate_time


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
