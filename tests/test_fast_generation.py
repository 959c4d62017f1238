"""Fast generation paths give the eager path's tokens: static cache, compiled step, batch of songs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.model import LeLM
from core.model.generation import apply_repetition_penalty, resolve_cache, resolve_compile

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE = SHARED / "fixtures" / "songgen-tiny-v2"


@pytest.fixture(scope="module")
def tiny():
    return LeLM.from_pretrained(FIXTURE / "ckpt" / "songgen_tiny_v2", runtime_root=FIXTURE)


@pytest.fixture(scope="module")
def cases():
    return torch.load(FIXTURE / "cases.pt", weights_only=True)


def test_static_cache_and_compiled_step_equal_eager(tiny, cases):
    g = cases["generations"][0]
    i = g["case"]
    kw = dict(max_frames=g["max_gen_len"], greedy=True, cfg_coef=g["cfg_coef"], record_window=g["record_window"])
    args = (cases["lyrics"][i], cases["descriptions"][i], cases["prompt"][i])
    dynamic = tiny.generate(*args, cache="dynamic", **kw)
    static = tiny.generate(*args, cache="static", **kw)
    # The one-frame step captured as one graph (fullgraph=True) by dynamo; "eager" backend on a CPU.
    compiled = tiny.generate(*args, cache="static", compile="eager", **kw)
    assert torch.equal(dynamic, g["tokens"])
    assert torch.equal(static, dynamic) and torch.equal(compiled, dynamic)
    # Seeded sampling: the same tokens through both caches.
    a = tiny.generate(*args, max_frames=10, seed=5, cache="dynamic")
    b = tiny.generate(*args, max_frames=10, seed=5, cache="static")
    assert torch.equal(a, b)


def test_batch_equals_one_song_runs(tiny, cases):
    lyr, desc, prompt = cases["lyrics"], cases["descriptions"], cases["prompt"]
    kw = dict(max_frames=9, top_k=50, temperature=1.0, cache="dynamic")
    singles = [tiny.generate(lyr[b], desc[b], prompt[b], seed=10 + b, **kw) for b in range(3)]
    batch = tiny.generate_batch(lyr, desc, [prompt[b] for b in range(3)], seeds=[10, 11, 12], **kw)
    assert len(batch) == 3
    for one, many in zip(singles, batch):
        assert torch.equal(one, many)
    with pytest.raises(ValueError, match="one prompt and one seed"):
        tiny.generate_batch(lyr, desc, None, seeds=[1], max_frames=2)


def test_choices_and_penalty():
    cpu = torch.device("cpu")
    assert resolve_cache("auto", cpu) == "dynamic" and resolve_cache("auto", torch.device("cuda")) == "static"
    with pytest.raises(ValueError, match="cache must be"):
        resolve_cache("paged", cpu)
    assert resolve_compile(None, cpu, "static") is None  # CPU: eager step
    assert resolve_compile(True, cpu, "static") is None
    assert resolve_compile(True, torch.device("cuda"), "static") == "inductor"
    assert resolve_compile(True, torch.device("cuda"), "dynamic") is None
    assert resolve_compile("eager", cpu, "static") == "eager"
    # The vectorized penalty equals the per-id loop it replaces (negatives divided too; EOS/EMPTY never).
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 16386)
    history = [torch.randint(16380, 16386, (2, 3)) for _ in range(30)]
    got = apply_repetition_penalty(scores.clone(), history, 20)
    want = scores.clone()
    recent = torch.stack(history[-20:], dim=-1)
    for b in range(2):
        for q in range(3):
            ids = recent[b, q][recent[b, q] < 16384].unique()
            want[b, q, ids] = want[b, q, ids] / 1.1
    assert torch.equal(got, want)
