"""core.model.attention: CPU bf16 causal attention in query blocks, and which calls take it."""
import pytest
import torch
import torch.nn.functional as F

from core.model import attention
from core.model.attention import KEEP_BYTES, CausalBlocks, kept_bytes, uses_blocks


@pytest.fixture
def blocks_on():
    """The blocks as a trainer turns them on where they measured faster (core.training.precision)."""
    attention.enable_blocks(True)
    yield
    attention.enable_blocks(False)


def _qkv(n, t, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, t, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("t,block", [(7, 3), (9, 3), (5, 8), (1, 4)])
def test_blocks_compute_causal_attention_and_its_gradient_exactly(t, block):
    """In float64 the blocks are causal attention to rounding, a partial last block and a single block
    included, and the written-out backward passes gradcheck."""
    q, k, v = _qkv(3, t, 4, torch.float64)
    out = CausalBlocks.apply(q, k, v, 0.5, block)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *x: CausalBlocks.apply(*x, 0.5, block), (q, k, v))


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def test_bf16_blocks_stay_within_bf16_rounding_of_float32_attention():
    """Three blocks of 128 (the last partial), bf16 in and out: the output and all three gradients within 2 %
    of float32 attention (bf16 keeps 8 bits: SDPA's own bf16 error here is ~0.4 %)."""
    q32, k32, v32 = _qkv(4, 300, 32, torch.float32, seed=1)
    grad = torch.randn(4, 300, 32, generator=torch.Generator().manual_seed(2))
    ref = F.scaled_dot_product_attention(q32, k32, v32, is_causal=True)
    ref.backward(grad)
    q, k, v = (x.detach().bfloat16().requires_grad_() for x in (q32, k32, v32))
    out = CausalBlocks.apply(q, k, v, 32 ** -0.5)
    out.backward(grad.bfloat16())
    assert out.dtype == q.grad.dtype == torch.bfloat16
    for mine, theirs in ((out, ref), (q.grad, q32.grad), (k.grad, k32.grad), (v.grad, v32.grad)):
        assert _rel(mine, theirs) < 0.02


def test_which_calls_run_in_blocks():
    bf = torch.bfloat16
    q = torch.zeros(2, 4, 300, 16, dtype=bf)
    assert not attention.blocks_enabled() and not uses_blocks(q, q, None, 0.0, True)  # off until a trainer measures
    attention.enable_blocks(True)
    try:
        _enabled_rule(q, bf)
    finally:
        attention.enable_blocks(False)


def _enabled_rule(q, bf):
    assert uses_blocks(q, q, None, 0.0, True)
    with torch.no_grad():  # grad mode is not part of the rule: a DPO reference pass computes the same
        assert uses_blocks(q, q, None, 0.0, True)
    assert not uses_blocks(q.float(), q.float(), None, 0.0, True)        # float32 stays on SDPA
    assert not uses_blocks(q, q, torch.ones(1, 1, 300, 300, dtype=torch.bool), 0.0, True)  # a mask
    assert not uses_blocks(q, q, None, 0.1, True)                         # dropout
    assert not uses_blocks(q, q, None, 0.0, False)                        # not causal
    assert not uses_blocks(q[:, :, :1], q, None, 0.0, True)               # one frame against a cache
    long = next(t for t in range(300, 6000) if kept_bytes(8, t) > KEEP_BYTES)
    fits = torch.zeros(2, 4, long - 1, 16, dtype=bf)
    assert uses_blocks(fits, fits, None, 0.0, True)
    too_long = torch.zeros(2, 4, long, 16, dtype=bf)
    assert not uses_blocks(too_long, too_long, None, 0.0, True)           # its probabilities would not fit


class _Module(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 1


def test_under_cpu_autocast_float32_inputs_run_as_bf16_like_sdpa(monkeypatch, blocks_on):
    """The main stack's q and k leave RoPE in float32 under autocast; SDPA would cast them to bf16, so the
    blocks do too, and return transformers' [B, T, H, d] layout."""
    calls = []
    real = CausalBlocks.apply
    monkeypatch.setattr(CausalBlocks, "apply", lambda *a: calls.append(a[0].dtype) or real(*a))
    q, k, v = (torch.randn(1, 2, 20, 8) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attention.attention(_Module(), q, k, v, None, scaling=0.3)
    assert calls == [torch.bfloat16]
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3).transpose(1, 2)
    assert out.shape == (1, 20, 2, 8) and out.is_contiguous()
    assert _rel(out, ref) < 0.02
    calls.clear()
    out32, _ = attention.attention(_Module(), q, k, v, None, scaling=0.3)  # no autocast: float32 SDPA
    assert calls == [] and torch.allclose(out32, ref, atol=1e-6)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_stacks_run_bf16_in_blocks_and_float32_on_sdpa(fresh_tiny, monkeypatch, enabled):
    """With the blocks on, every layer of both stacks takes them in a bf16 training step, none in float32; with
    them off (this CPU's SDPA measured faster), none; every step trains."""
    from core.model import build_targets

    model = fresh_tiny.train()
    assert model.transformer.config._attn_implementation == attention.NAME
    assert model.transformer2.config._attn_implementation == attention.NAME
    calls = []
    real = CausalBlocks.apply
    monkeypatch.setattr(CausalBlocks, "apply", lambda *a: calls.append(1) or real(*a))
    targets = build_targets(torch.randint(0, 16384, (2, 3, 40), generator=torch.Generator().manual_seed(0)),
                            torch.tensor([40, 32]))
    monkeypatch.setattr(attention, "_BLOCKS", enabled)  # as enable_blocks sets it, restored after the test
    for bf16 in (False, True):
        calls.clear()
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.compute_loss(targets, ["[verse] la la", "[chorus] oh"], ["pop", "rock"])[0].mean()
        loss.backward()
        layers = model.transformer.config.num_hidden_layers + model.transformer2.config.num_hidden_layers
        assert len(calls) == (layers if bf16 and enabled else 0)
        assert torch.isfinite(loss) and model.emb[0].weight.grad.abs().sum() > 0


def test_measure_times_both_kernels():
    blocks, sdpa = attention.measure(batch_heads=2, length=64, head_dim=16, trials=2)
    assert blocks > 0 and sdpa > 0
