"""Generation precision: bf16 weight copies on a CPU where the machine's verdict (or the config) says bf16,
their logits close to float32's, float32 generation unchanged, and the choice reaching generation."""
from __future__ import annotations

import json
import pytest
import torch
from transformers import DynamicCache

import core.model.generation as gen
from core.model import fast_step

# bf16 keeps 8 bits of mantissa: weights, matmul inputs and the heads' logits (as upstream's bf16 logits) are
# each off by up to 2^-9 of themselves, and guidance adds (1 + cfg) x cond - cfg x uncond of those errors.
# Measured on the tiny fixture (D16, teacher-forced, 8 frames): at most 2.2 % of the frame's largest |logit|.
LOGIT_TOLERANCE = 0.04  # of the frame's largest |guided logit|


def _guided_frames(model, cases, weights, frames: int = 8) -> list[torch.Tensor]:
    """Teacher-forced guided scores [B, K, V] of `frames` steps: every precision sees the same tokens."""
    cond = gen._guidance_conditions(model, cases["lyrics"], cases["descriptions"], [p[None] for p in cases["prompt"]])
    prefix = model.condition_prefix(cond)
    n = prefix[0].shape[1]
    seq = torch.randint(0, 16384, (6, 3, frames + 1), generator=torch.Generator().manual_seed(0))
    caches = (DynamicCache(), DynamicCache())
    out = []
    with torch.no_grad():
        model.hidden_steps(seq[..., :1], prefix, caches, torch.arange(n + 1))
        step = fast_step.FrameStep(model, caches, n + frames + 1, weights=weights)
        heads = gen._Heads(model, weights)
        for t in range(1, frames + 1):
            hidden = step(seq[..., t:t + 1])
            out.append(gen._guided_scores(heads, hidden, range(3), 3, model.code_size + 1, 1.5, heads.guides_hidden))
    return out


def test_bf16_logits_within_tolerance_of_fp32(tiny, tiny_cases):
    fp32 = _guided_frames(tiny, tiny_cases, None)
    bf16 = _guided_frames(tiny, tiny_cases, torch.bfloat16)
    for a, b in zip(fp32, bf16):
        scale = a.abs().amax(dim=-1, keepdim=True)
        assert ((a - b).abs() <= LOGIT_TOLERANCE * scale).all(), float(((a - b).abs() / scale).max())
        assert not torch.equal(a, b)  # the bf16 copies were really used


def test_bf16_copies_only_where_they_apply(tiny):
    assert gen.resolve_weights("bf16", tiny) is torch.bfloat16
    assert gen.resolve_weights(None, tiny) is None and gen.resolve_weights("fp32", tiny) is None
    with pytest.raises(ValueError, match="fp32 or bf16"):
        gen.resolve_weights("fp16", tiny)


def test_fp32_greedy_tokens_unchanged_and_bf16_batch_rows_independent(tiny, tiny_cases):
    """float32 (the default and "fp32") gives the official code's greedy tokens; in bf16 a batch row gives the
    tokens of its own one-song run (each song's pair of rows is one head call)."""
    g = tiny_cases["generations"][0]
    i = g["case"]
    args = (tiny_cases["lyrics"][i], tiny_cases["descriptions"][i], tiny_cases["prompt"][i])
    kw = dict(max_frames=g["max_gen_len"], greedy=True, cfg_coef=g["cfg_coef"], record_window=g["record_window"])
    assert torch.equal(tiny.generate(*args, **kw), g["tokens"])
    assert torch.equal(tiny.generate(*args, precision="fp32", **kw), g["tokens"])
    lyr, desc, prompt = tiny_cases["lyrics"], tiny_cases["descriptions"], tiny_cases["prompt"]
    skw = dict(max_frames=9, top_k=50, temperature=1.0, precision="bf16")
    singles = [tiny.generate(lyr[b], desc[b], prompt[b], seed=10 + b, **skw) for b in range(3)]
    batch = tiny.generate_batch(lyr, desc, [prompt[b] for b in range(3)], seeds=[10, 11, 12], **skw)
    for one, many in zip(singles, batch):
        assert torch.equal(one, many)


@pytest.mark.parametrize("setting, forced, want", [("auto", "bf16", "bf16"), ("auto", "fp32", "fp32"),
                                                   ("no", "bf16", "fp32"), ("bf16", "fp32", "bf16")])
def test_the_precision_choice_applies_to_generation(tiny, tmp_path, monkeypatch, setting, forced, want):
    """training.mixed_precision (auto: SONGGEN_CPU_PRECISION or this CPU's verdict) decides the generation
    precision: the song's settings record it and the frame step reads weights in it."""
    from core.codec.demo import DemoCodec
    from core.config import load_config
    from core.export import generate as export_gen

    monkeypatch.setenv("SONGGEN_CPU_PRECISION", forced)
    cfg = load_config(None, {"workspace": str(tmp_path / "ws"), "training.mixed_precision": setting})
    settings = export_gen.settings_from_config(cfg, lyrics="[verse] la", description="pop", max_frames=3)
    assert settings.precision == want
    used = []
    real = gen.resolve_weights
    monkeypatch.setattr(gen, "resolve_weights", lambda precision, model: used.append(real(precision, model)) or used[-1])
    res = export_gen.generate_song(tiny, DemoCodec(), settings, tmp_path / "out", "song", prompt=export_gen.Prompt())
    assert used == [torch.bfloat16 if want == "bf16" else None]
    record = json.loads((tmp_path / "out" / res.settings_file).read_text())
    assert record["settings"]["precision"] == want
