"""The Llama stacks' self-attention: SDPA, except CPU bf16 passes over a whole sequence, which run in query blocks.

On a CPU without AMX, SDPA's flash kernel computes bf16 attention at about its fp32 rate: ~100 GFLOP/s on
the bench's AVX512-BF16 EPYC, a quarter of that CPU's bf16 matmul peak, and ~15 % of a D1024 bf16 training
step (bench/README.md). Here a CPU bf16 causal self-attention is split into blocks of BLOCK queries.
Each block is two bf16 batched matmuls over the keys up to its last query (the upper triangle is skipped,
as flash skips it) with a softmax between them, and the backward is written out per block (dV, dP, dS, dQ,
dK) from the probabilities kept by the forward, the way eager attention keeps them. Keeping them costs
about B*H*T^2 bytes per layer, so blocks run only while that stays under KEEP_BYTES (T up to ~1,990 at B*H = 16);
longer sequences, float32, GPUs, masks, dropout and one-frame generation steps go to SDPA as before.

Whether the blocks pay depends on the CPU: with AMX, SDPA's flash kernel runs bf16 on the tile units and is
faster than the blocks (a Xeon with AMX: 41-47 against 71 ms a layer). So the blocks are off until a trainer
turns them on (`enable_blocks`), where `measure` found them faster on this machine (core.training.precision
decides and caches the verdict per machine, beside the matmul peaks).

The result is bf16 attention within bf16's rounding of float32 attention, like SDPA's (tests/test_attention.py).
"""
from __future__ import annotations

from typing import Optional

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from core.model.timed import best_times

NAME = "songgen"      # the attention implementation the stacks are built with (core.model.lelm.llama_config)
BLOCK = 128           # queries per block: fastest of 64-512 at T = 993 on the bench CPU (bench/README.md)
KEEP_BYTES = 64 * 2 ** 20  # the kept bf16 probabilities of one layer, at most
_BLOCKS = False        # set per process by enable_blocks (a trainer's measured verdict for this CPU)


def enable_blocks(on: bool) -> None:
    """Run CPU bf16 causal self-attention in blocks (True) or always on SDPA (False, the default)."""
    global _BLOCKS
    _BLOCKS = bool(on)


def blocks_enabled() -> bool:
    return _BLOCKS


def measure(batch_heads: int = 16, length: int = 512, head_dim: int = 128, trials: int = 5) -> tuple[float, float]:
    """-> (blocks, SDPA) seconds of one bf16 causal attention forward + backward on this CPU (the best of
    `trials`), at a D1024 layer's shape with half the bench's positions."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, batch_heads, length, head_dim, generator=g).bfloat16().requires_grad_()
               for _ in range(3))
    grad = torch.randn(1, batch_heads, length, head_dim, generator=g).bfloat16()
    flat = lambda x: x.view(batch_heads, length, head_dim)  # noqa: E731
    best = best_times({
        "blocks": lambda: CausalBlocks.apply(flat(q), flat(k), flat(v), head_dim ** -0.5).backward(flat(grad)),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)}, trials)
    return best["blocks"], best["sdpa"]


def kept_bytes(batch_heads: int, length: int, block: int = BLOCK) -> int:
    """Bytes of the bf16 probabilities the blocks keep for one layer's backward."""
    return sum(batch_heads * (min(a + block, length) - a) * min(a + block, length) * 2
               for a in range(0, length, block))


class CausalBlocks(torch.autograd.Function):
    """softmax(q k^T * scale, causal) v for [N, T, d] tensors (N = batch x heads), in blocks of `block` queries.

    Written for bf16 (products in bf16, softmax and sums in float32); other dtypes compute the same in their own
    precision, which is how the tests check the blocks and the backward exactly (float64).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                block: int = BLOCK) -> torch.Tensor:
        N, T, d = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast("cpu", enabled=False):
            qs = (q.to(acc) * scale).to(q.dtype)  # the scale on q once, not on every block's scores
            kt = k.transpose(1, 2).contiguous()  # a bmm over a transposed view runs at half the rate
            out = torch.empty_like(q)
            above = torch.ones(block, block, dtype=torch.bool, device=q.device).triu_(1)
            probs = []
            for a in range(0, T, block):
                b = min(a + block, T)
                s = torch.bmm(qs[:, a:b], kt[:, :, :b])
                s[:, :, a:b].masked_fill_(above[:b - a, :b - a], float("-inf"))
                p = torch.softmax(s, dim=-1)  # float accumulation inside, bf16 out
                torch.bmm(p, v[:, :b], out=out[:, a:b])
                probs.append(p)
        ctx.save_for_backward(qs, k, v, out, *probs)
        ctx.scale, ctx.block = scale, block
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        qs, k, v, out, *probs = ctx.saved_tensors
        N, T, d = qs.shape
        acc = torch.promote_types(qs.dtype, torch.float32)
        with torch.autocast("cpu", enabled=False):
            grad = grad.contiguous()
            # dS = P * (dP - rowsum(dO * O)): the softmax's backward
            rows = (grad.to(acc) * out.to(acc)).sum(-1, keepdim=True)
            dq = torch.empty_like(qs)
            dk = torch.zeros(N, T, d, dtype=acc, device=qs.device)  # summed over the blocks in float32
            dv = torch.zeros(N, T, d, dtype=acc, device=qs.device)
            vt = v.transpose(1, 2).contiguous()
            for i, a in enumerate(range(0, T, ctx.block)):
                b = min(a + ctx.block, T)
                p, g = probs[i], grad[:, a:b]
                dv[:, :b] += torch.bmm(p.transpose(1, 2), g)
                ds = torch.mul(torch.sub(torch.bmm(g, vt[:, :, :b]), rows[:, a:b]), p,
                               out=torch.empty_like(p))  # float32 math, bf16 written in the same pass
                torch.bmm(ds, k[:, :b], out=dq[:, a:b])
                dk[:, :b] += torch.bmm(ds.transpose(1, 2), qs[:, a:b])
            dq = (dq.to(acc) * ctx.scale).to(qs.dtype)  # through qs = q * scale
        return dq, dk.to(qs.dtype), dv.to(qs.dtype), None, None


def uses_blocks(query: torch.Tensor, key: torch.Tensor, attention_mask: Optional[torch.Tensor], dropout: float,
                is_causal: bool) -> bool:
    """Whether this call runs in blocks (else SDPA): with the blocks enabled, a CPU bf16 causal self-attention
    over the whole sequence whose probabilities fit KEEP_BYTES. Not a rule of grad mode, so a pass without
    gradients (a DPO reference, validation) computes what the training pass computes."""
    B, H, T, _ = query.shape
    return (_BLOCKS and query.device.type == "cpu" and query.dtype == torch.bfloat16 == key.dtype
            and attention_mask is None and not dropout and is_causal and T > 1 and key.shape[2] == T
            and kept_bytes(B * H, T) <= KEEP_BYTES)


def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
              is_causal: Optional[bool] = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: [B, H, T, d] in, ([B, T, H, d], None) out, as `sdpa` returns."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if query.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
            and torch.get_autocast_dtype("cpu") == torch.bfloat16:
        # what SDPA does under CPU autocast: the main stack's q and k come out of RoPE in float32
        query, key, value = (x.to(torch.bfloat16) for x in (query, key, value))
    if getattr(module, "num_key_value_groups", 1) > 1 or kwargs.get("softcap") is not None \
            or not uses_blocks(query, key, attention_mask, dropout, causal):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    B, H, T, d = query.shape
    scale = scaling if scaling is not None else d ** -0.5
    flat = [x.reshape(B * H, T, d) for x in (query, key, value)]
    out = CausalBlocks.apply(*flat, scale)
    return out.view(B, H, T, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # no mask where causal alone is exact, as for "sdpa"
