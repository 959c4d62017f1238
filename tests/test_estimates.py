"""The Train tab's memory and time estimates (core.estimate), and how the studio words them."""
from __future__ import annotations

from core.config import parse_config
from core.estimate import estimate_memory, estimate_time


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

    from core.estimate import PEAK_CACHE, matmul_peak

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
    from core.train import build_model

    cfg = parse_config({"workspace": str(tmp_path), "training": {"type": "full", "freeze_transformer": True}})
    model, _, _ = build_model(cfg)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    est = estimate_memory(cfg)
    assert est["trainable"] == trained
    assert estimate_memory(parse_config({"workspace": str(tmp_path), "training": {"type": "full"}}))["trainable"] > trained
