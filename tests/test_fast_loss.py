"""The chunked linear + cross-entropy equals the plain loss and gradients (fp32, tiny fixture)."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from core.model import masked_ce
from core.model.loss import chunk_rows, linear_cross_entropy
from core.model.pattern import EMPTY



@pytest.fixture()
def model(fresh_tiny):
    m = fresh_tiny
    m.train()
    m.condition_dropout.cfg_p = 0.0
    m.condition_dropout.attribute_p = {}
    return m


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def plain_loss(model, cases, codes):
    logits, mask = model.compute_predictions(codes, cases["lyrics"], cases["descriptions"], cases["prompt"])
    return masked_ce(logits, codes, mask)


@pytest.mark.parametrize("chunk_bytes", [4 * 16385 * 5, 4 * 16385 * 1000])  # 5 rows per chunk; one chunk
def test_chunked_loss_and_gradients_equal_plain(model, tiny_cases, chunk_bytes):
    codes = tiny_cases["codes"].clone()
    codes[1, 2, 7:] = EMPTY  # a stream with fewer valid targets
    ref = plain_loss(model, tiny_cases, codes)
    ref.mean().backward()
    g_ref = grads(model)
    model.zero_grad(set_to_none=True)

    per_stream, counts = model.compute_loss(codes, tiny_cases["lyrics"], tiny_cases["descriptions"],
                                            tiny_cases["prompt"], chunked=True, chunk_bytes=chunk_bytes)
    per_stream.mean().backward()
    g = grads(model)
    assert (per_stream - ref).abs().max().item() <= 1e-5
    assert counts.tolist() == [int((codes[:, q] != EMPTY).sum()) for q in range(3)]
    assert g.keys() == g_ref.keys() and len(g) > 40
    for name in g:
        assert torch.allclose(g[name], g_ref[name], atol=1e-5, rtol=1e-4), name


def test_auto_choice_and_other_heads():
    torch.manual_seed(0)
    V, D, N = 300, 8, 50
    h = torch.randn(N, D, requires_grad=True)
    t = torch.randint(0, V, (N,))
    plain_head = nn.Linear(D, V, bias=False)
    wrapped = nn.Sequential(nn.Linear(D, V))  # not a bias-free Linear: the checkpointed chunks serve it
    small = 4 * V * 7  # 7 rows per chunk
    assert chunk_rows(V, small) == 7
    for head in (plain_head, wrapped):
        ref = nn.functional.cross_entropy(head(h).float(), t)
        gh, *gp = torch.autograd.grad(ref, [h, *head.parameters()])
        got = linear_cross_entropy(h, head, t, chunk_bytes=small)  # auto: N > 7 rows -> chunked
        gh2, *gp2 = torch.autograd.grad(got, [h, *head.parameters()])
        assert abs(got.item() - ref.item()) <= 1e-5
        assert torch.allclose(gh, gh2, atol=1e-6) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gp, gp2))
    # No gradient wanted (evaluation): same value.
    with torch.no_grad():
        assert abs(linear_cross_entropy(h, plain_head, t, chunk_bytes=small).item() -
                   nn.functional.cross_entropy(plain_head(h), t).item()) <= 1e-5
    # A frozen head (LoRA on the stacks only): gradient for h only.
    plain_head.weight.requires_grad_(False)
    got = linear_cross_entropy(h, plain_head, t, chunk_bytes=small)
    (gh3,) = torch.autograd.grad(got, [h])
    ref = nn.functional.cross_entropy(plain_head(h), t)
    assert torch.allclose(gh3, torch.autograd.grad(ref, [h])[0], atol=1e-6)
