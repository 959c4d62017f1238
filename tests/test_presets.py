"""GPU-memory presets fit their card by our estimate, and the estimate follows the new options."""
from __future__ import annotations

import pytest

from core.config import StudioConfig
from core.training.estimate import count_parameters_from_layout, estimate_memory_for
from core.training.presets import GPU_PRESETS
from tests.paths import bench_script


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    mod = bench_script("gpu")
    return {s: mod.size_config(s, folder=tmp_path_factory.mktemp(s)) for s in ("base", "large")}


def estimate(oc, cfg: StudioConfig) -> dict:
    tc, lc = cfg.training, cfg.lora
    return estimate_memory_for(oc, count_parameters_from_layout(oc), mode=tc.type,
                               frames=tc.max_frames or oc.max_frames, batch=tc.batch_size,
                               checkpointing=tc.gradient_checkpointing, act_bytes=2, optimizer=tc.optimizer,
                               lora_r=lc.r, lora_targets=tuple(lc.target_modules),
                               weight_bytes=2 if tc.base_dtype == "bfloat16" else 4)


@pytest.mark.parametrize("gb", sorted(GPU_PRESETS))
def test_preset_fits_its_card(sizes, gb):
    p = GPU_PRESETS[gb]
    data = StudioConfig().to_dict()
    for key, value in p["settings"].items():
        section, name = key.split(".")
        data[section][name] = value
    cfg = StudioConfig.model_validate(data)  # every key and value is a valid config setting
    e = estimate(sizes[p["model"]], cfg)
    assert e["total_gb"] <= 0.9 * gb, (gb, e)


def test_estimate_terms(sizes):
    oc = sizes["large"]
    n = count_parameters_from_layout(oc)
    assert round(n / 1e9, 3) == 5.122
    kw = dict(mode="full", frames=6750, batch=1, checkpointing=True, act_bytes=2)
    adamw, eight, ada = (estimate_memory_for(oc, n, optimizer=o, **kw) for o in ("adamw", "adamw_8bit", "adafactor"))
    assert adamw["total_gb"] > eight["total_gb"] > ada["total_gb"]
    # Chunked CE: the logits term is one chunk + a head-gradient buffer, not 3 x S x 16385 x 10 bytes.
    assert adamw["logits_gb"] < 0.3 < 3 * 7001 * 16385 * 10 / 1e9
    lora32 = estimate_memory_for(oc, n, mode="lora", frames=6750, batch=1, checkpointing=True, act_bytes=2)
    lora16 = estimate_memory_for(oc, n, mode="lora", frames=6750, batch=1, checkpointing=True, act_bytes=2,
                                 weight_bytes=2)
    assert lora32["weights_gb"] == pytest.approx(2 * lora16["weights_gb"], rel=1e-3)
