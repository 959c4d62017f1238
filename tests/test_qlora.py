"""QLoRA (`training.base_quant`): LoRA on a base whose decoder-layer linears are bitsandbytes NF4 / int8,
trained in the test process on the CPU (bitsandbytes 0.50 runs both layer kinds there) with the demo-small
model and the 3-song dataset of tests/test_train.py (its session fixture `env`).

Tolerance: the quantized runs' per-step losses stay within 0.05 (absolute, on a loss of ~9.7) of the
bfloat16 base's over 4 steps; measured on this fixture: NF4 0.0004 / 0.0018 / 0.0057 / 0.0124, int8
0.0000 / 0.0001 / 0.0015 / 0.0079 (quantization error of the random-init tiny model; two numerics are
compared, so it is a bound, not equality).
Merge / export read the full-precision checkpoint: the export of a QLoRA checkpoint equals merging the
same adapter into the float base, exactly.
"""
from __future__ import annotations

import sys

import pytest
import torch

from core.config import ConfigError, parse_config
from core.runs import store as runs
from core.training.setup import build_model, check_base_quant
from tests.paths import bench_script
from tests.test_train import base_config, env, in_process, losses  # noqa: F401

STEPS = 4
TOLERANCE = 0.05


def _cfg(env, quant: str) -> dict:
    data = base_config(env["ws"], env["ckpt"], max_steps=STEPS, dataset_dir=str(env["dataset"]), base_dtype="bfloat16",
                       base_quant=quant, condition_dropout=False, save_every=100, eval_every=100)
    data["lora"]["dropout"] = 0.0
    return data


@pytest.fixture(scope="module")
def qruns(env):
    return {q: in_process(_cfg(env, q), f"qlora-{q}") for q in ("none", "nf4", "int8")}


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_quantized_base_trains_close_to_the_bf16_base(qruns, quant):
    ref, got = losses(qruns["none"]), losses(qruns[quant])
    assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
    diffs = [abs(got[s] - ref[s]) for s in ref]
    print(quant, "loss differences to the bf16 base:", [round(d, 4) for d in diffs])
    assert max(diffs) < TOLERANCE, (got, ref)
    assert got[STEPS] < got[1]  # it learns
    assert diffs != [0.0] * STEPS  # the base really was quantized


def test_quantized_layers_carry_the_adapters(env):
    import bitsandbytes as bnb

    model, lelm, _ = build_model(parse_config(_cfg(env, "nf4")))
    q = lelm.transformer.model.layers[0].self_attn.q_proj
    assert isinstance(q.base_layer, bnb.nn.Linear4bit) and q.base_layer.weight.dtype == torch.uint8
    assert all(p.requires_grad == ("lora_" in n) for n, p in model.named_parameters())
    assert type(lelm.linears[0]) is torch.nn.Linear  # heads, tables and fusion keep the base dtype


def test_export_merges_into_the_full_precision_base(env, qruns):
    from core.export.merge import export_checkpoint
    from core.model import LeLM
    from core.model.lora import merge_lora

    ckpt = runs.latest_checkpoint(qruns["nf4"])
    res = export_checkpoint(ckpt, cfg=runs.load_run_config(qruns["nf4"]), overwrite=True)
    exported = LeLM.from_pretrained(res.out_dir).state_dict()
    merged = merge_lora(env["ckpt"], ckpt)
    merged = (merged[0] if isinstance(merged, tuple) else merged).state_dict()
    assert set(exported) == set(merged)
    assert all(torch.equal(exported[k], merged[k].to(exported[k].dtype)) for k in exported)
    base = LeLM.from_pretrained(env["ckpt"]).state_dict()
    assert not torch.equal(exported["transformer.model.layers.0.self_attn.q_proj.weight"],
                           base["transformer.model.layers.0.self_attn.q_proj.weight"])


def test_refusals_name_the_setting(env, monkeypatch):
    full = parse_config({"training": {"type": "full", "base_quant": "nf4"}})
    with pytest.raises(ConfigError, match="base_quant: nf4 .* full finetune"):
        check_base_quant(full)
    sharded = parse_config({"training": {"base_quant": "int8", "distributed": "fsdp", "num_processes": 2}})
    with pytest.raises(ConfigError, match="training.distributed: fsdp"):
        check_base_quant(sharded)
    check_base_quant(parse_config({"training": {"base_quant": "nf4", "distributed": "ddp", "num_processes": 2}}))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="needs bitsandbytes, which is not installed: pip install"):
        build_model(parse_config(_cfg(env, "nf4")))


def test_estimate_of_a_quantized_base(tmp_path):
    """v2-large LoRA at 270 s (6750 frames) with an NF4 base: the goal is <= 10 GB (estimated, not measured)."""
    from core.training.estimate import QUANT_BYTES, count_parameters_from_layout, estimate_memory_for

    oc = bench_script("gpu").size_config("large", folder=tmp_path)
    n = count_parameters_from_layout(oc)
    kw = dict(mode="lora", frames=6750, batch=1, checkpointing=True, act_bytes=2, weight_bytes=2)
    bf16, nf4, int8 = (estimate_memory_for(oc, n, base_quant=q, **kw) for q in ("none", "nf4", "int8"))
    linears = (oc.num_layers + oc.num_layers_sub) * (4 * oc.dim ** 2 + 3 * oc.dim * oc.intermediate_size)
    assert bf16["weights_gb"] - nf4["weights_gb"] == pytest.approx((2 - QUANT_BYTES["nf4"]) * linears / 1e9, abs=0.01)
    assert nf4["weights_gb"] < int8["weights_gb"] < bf16["weights_gb"]
    assert nf4["total_gb"] <= 10.0, nf4
    full = estimate_memory_for(oc, n, base_quant="nf4", **{**kw, "mode": "full"})
    assert full["weights_gb"] == estimate_memory_for(oc, n, **{**kw, "mode": "full"})["weights_gb"]


@pytest.mark.parametrize("gb", [8, 12, 16])
def test_qlora_preset_fits_its_card(tmp_path, gb):
    from core.config import StudioConfig
    from core.training.estimate import count_parameters_from_layout, estimate_memory_for
    from core.training.presets import QLORA_PRESETS

    p = QLORA_PRESETS[gb]
    data = StudioConfig().to_dict()
    for key, value in p["settings"].items():
        section, name = key.split(".")
        data[section][name] = value
    cfg = StudioConfig.model_validate(data)  # every key and value is a valid config setting
    tc, lc = cfg.training, cfg.lora
    oc = bench_script("gpu").size_config(p["model"], folder=tmp_path)
    e = estimate_memory_for(oc, count_parameters_from_layout(oc), mode=tc.type, frames=tc.max_frames or oc.max_frames,
                            batch=tc.batch_size, checkpointing=tc.gradient_checkpointing, act_bytes=2,
                            optimizer=tc.optimizer, lora_r=lc.r, lora_targets=tuple(lc.target_modules),
                            weight_bytes=2, base_quant=tc.base_quant)
    print(gb, "GB QLoRA preset:", e["total_gb"], "GB estimated")
    assert tc.base_quant == "nf4" and e["total_gb"] <= 0.9 * gb, (gb, e)
