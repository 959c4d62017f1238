"""Generation: the fixture's greedy guided cases, sampling rules, text rules, and the demo model."""
from __future__ import annotations

import json

import pytest
import torch

from core.model import LeLM, build_targets, masked_ce
from core.training.demo_pretrain import ensure_demo_model
from core.model.generation import choose_tokens, null_description
from core.model.pattern import EMPTY, EOS
from core.text.rules import model_text



@pytest.fixture(scope="module")
def demo_ckpt(tmp_path_factory):
    return ensure_demo_model(tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def demo(demo_ckpt):
    return LeLM.from_pretrained(demo_ckpt)


@pytest.mark.parametrize("index", [0, 1])
def test_greedy_generation_matches_fixture(tiny, tiny_cases, index):
    g = tiny_cases["generations"][index]
    i = g["case"]
    assert null_description(tiny_cases["descriptions"][i], "v2") == g["null_description"]
    scores = []
    tokens = tiny.generate(tiny_cases["lyrics"][i], tiny_cases["descriptions"][i], tiny_cases["prompt"][i],
                           max_frames=g["max_gen_len"], greedy=True, cfg_coef=g["cfg_coef"],
                           record_window=g["record_window"], on_step=lambda s, sc: scores.append(sc.clone()))
    assert torch.equal(tokens, g["tokens"])
    values, indices = torch.stack(scores).topk(5, dim=-1)
    assert torch.equal(indices, g["step_top5_indices"])
    assert (values - g["step_top5_values"]).abs().max().item() <= 1e-4


def test_same_seed_same_tokens_and_prompt_shapes(tiny):
    prompt = torch.randint(0, 16384, (3, 8))
    kw = dict(max_frames=8, top_k=50, temperature=1.0, seed=3)
    a = tiny.generate("[verse] hello world", "pop, happy", prompt, **kw)
    b = tiny.generate("[verse] hello world", "pop, happy", prompt[None], **kw)
    c = tiny.generate("[verse] hello world", "pop, happy", prompt, **{**kw, "seed": 4})
    assert a.shape == (1, 3, 8) and a.dtype == torch.long
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 0], c[:, 0])
    with pytest.raises(ValueError, match="prompt must be"):
        tiny.generate(None, None, prompt[:2], max_frames=2)


def test_prompt_ban_on_mixed_stream(tiny):
    prompt = torch.randint(0, 16384, (3, 8))
    seen = []
    codes = tiny.generate("[verse] la", None, prompt, max_frames=8, temperature=3.0, top_k=0, seed=0,
                          on_step=lambda s, sc: seen.append(sc.clone()))
    banned = prompt[0].unique()
    assert all(torch.isinf(sc[0, banned]).all() and (sc[0, banned] < 0).all() for sc in seen)
    assert not torch.isin(codes[0, 0], banned).any()


def test_top_k_and_top_p_and_temperature():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 16385)
    top5 = scores[0].topk(5).indices
    picks = torch.stack([choose_tokens(scores.clone(), greedy=False, temperature=1.0, top_k=5, top_p=0.0, generator=g)
                         for _ in range(60)])
    assert torch.isin(picks[:, 0], top5).all()
    assert len(picks[:, 0].unique()) > 1
    assert (picks[:, 1:] == scores[1:].argmax(-1)).all()  # vocal / bgm follow top-1
    # top-p: only the nucleus is ever drawn, on all streams
    peaked = torch.full((3, 16385), -30.0)
    peaked[:, 10], peaked[:, 11], peaked[:, 12] = 5.0, 4.9, 0.0
    picks = torch.stack([choose_tokens(peaked.clone(), greedy=False, temperature=1.0, top_k=0, top_p=0.9, generator=g)
                         for _ in range(60)])
    assert set(picks.unique().tolist()) == {10, 11}
    # temperature: very low -> argmax; high -> spreads
    cold = torch.stack([choose_tokens(scores.clone(), greedy=False, temperature=1e-4, top_k=50, top_p=0.0, generator=g)
                        for _ in range(50)])
    assert (cold[:, 0] == scores[0].argmax()).all()
    hot = torch.stack([choose_tokens(scores.clone(), greedy=False, temperature=100.0, top_k=50, top_p=0.0, generator=g)
                       for _ in range(50)])
    assert len(hot[:, 0].unique()) > 10


def test_eos_cut(tiny, monkeypatch):
    """Force EOS on each stream at frame 5: codes come back cut there, with no EOS or EMPTY left."""
    import core.model.generation as gen

    step = {"n": 0}
    prefill, one_step, heads = gen._Stacks.prefill, gen._Stacks.step, gen._Heads.__call__

    def counted_prefill(self, *a):
        step["n"] = 1
        return prefill(self, *a)

    def counted_step(self, *a, **kw):
        step["n"] += 1
        return one_step(self, *a, **kw)

    def forced(self, q, h):
        out = heads(self, q, h)
        if step["n"] - 1 - tiny.pattern.delays[q] == 5:  # the step that holds frame 5 of stream q
            out[:, EOS] = 1e4
        return out

    monkeypatch.setattr(gen._Stacks, "prefill", counted_prefill)
    monkeypatch.setattr(gen._Stacks, "step", counted_step)
    monkeypatch.setattr(gen._Heads, "__call__", forced)
    codes = tiny.generate("[verse] la", None, None, max_frames=40, greedy=True)
    assert codes.shape == (1, 3, 5)
    assert (codes < EOS).all()
    assert step["n"] == 5 + 3 + 1  # stopped once every stream had ended, not at max_frames


def test_text_rules():
    assert model_text("a  b", "Female, Pop", "v1") == ("a b", "female, pop")
    assert model_text("x", None, "v1") == ("x", None)
    assert model_text("x", "Female, Pop", "v2") == ("x", "[Musicality-very-high], female, pop")
    assert model_text("x", None, "v2") == ("x", "[Musicality-very-high], .")
    assert model_text("x", "[Musicality-high], Rock", "v2") == ("x", "[Musicality-high], rock")
    assert model_text("x", "piano", "v2", mode="bgm") == (".", "[Musicality-very-high], [Pure-Music], piano")
    # bgm lower-cases the description too (upstream generate.py ~248, levo_inference.py ~103)
    assert model_text("x", "Piano, Soft", "v2", mode="bgm") == (".", "[Musicality-very-high], [Pure-Music], piano, soft")
    assert model_text("x", None, "v2", mode="bgm") == (".", ".")


def test_demo_model_created_reloads_and_trains(demo_ckpt, demo, tmp_path):
    side = json.loads((demo_ckpt / "songgen_studio.json").read_text())
    assert side["demo"] is True and demo.is_demo and demo.version == "v2"
    cfg = demo.config
    assert (cfg.max_dur, cfg.frame_rate, cfg.prompt_frames, cfg.lyric_max_len, cfg.desc_max_len, cfg.delays) == \
        (150, 25, 250, 600, 100, [0, 250, 250])
    # Deterministic from the seed: a second build gives the same tensors.
    again = LeLM.from_pretrained(ensure_demo_model(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(demo.state_dict().values(), again.state_dict().values()))
    # One training step on a CPU lowers the loss on that batch.
    model = again
    model.train()
    codes = torch.randint(0, 16384, (2, 3, 40))
    targets = build_targets(codes, torch.tensor([40, 30]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(2):
        model.seed_condition_dropout(0)
        logits, mask = model.compute_predictions(targets, ["[verse] la la", None], ["pop", None])
        loss = masked_ce(logits, targets, mask).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[1] < losses[0]
