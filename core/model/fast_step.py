"""The one-frame generation step without transformers' per-call machinery (the CPU default).

Profiled at one thread on the bench model (D256, 4+2 layers, 2 guided rows), a frame through
`LlamaModel.forward` cost more in Python and copies than in matmuls: a causal-mask and rotary
computation per call, deprecation / output-capture wrappers and module hooks around every layer,
and a DynamicCache that concatenates the whole cache (12 tensors of ~0.7 MB per frame). Here the
KV lives in preallocated buffers (written in place, read as a view of the filled part), cos/sin come
from a table built once by the stack's own rotary module, and each layer runs the operations of
`LlamaDecoderLayer` in its order (RMSNorm in float32, rotate-half RoPE, SDPA, gated MLP). For models
whose layer weights are under FUSE_MAX_BYTES, plain q/k/v and gate/up projections run as one matmul
over a fused, transposed weight copy each, and the o / down projections add into the residual in
one `addmm` (fewer calls; equal to float32 rounding, not bit for bit: tests/test_fast_generation.py
checks the hidden states against transformers' to 1e-5 and the fixture's greedy tokens). Rows stay
2-D [rows, D] (one position), so no transpose/contiguous per layer; a layer's K and V share one
buffer, so the new position's roped k and its v (neighbours in the fused q/k/v output) are written by
one copy. Per layer the rest is ~35 small operations, most of the frame's time besides its matmuls
and SDPA on a small model (bench/README.md). Projections and norms that are not the plain classes (peft LoRA layers,
hub kernels) are called as modules, so adapters and peft's per-row `adapter_names` hooks still
apply. The prompt/condition prefill still runs through transformers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import LlamaRMSNorm

if TYPE_CHECKING:
    from core.model.lelm import LeLM

FUSE_MAX_BYTES = 512 * 2 ** 20


def _linear(mod: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if type(mod) is nn.Linear:
        w, b = mod.weight, mod.bias
        return lambda x: F.linear(x, w, b)
    return mod  # a LoRA layer (or anything else): its own forward


def _rms_norm(mod: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if type(mod) is not LlamaRMSNorm or type(mod).forward is not LlamaRMSNorm.forward:
        return mod
    w, eps = mod.weight, mod.variance_epsilon
    # float32: the same arithmetic with fewer dispatches (bit for bit: `mean` is `sum` then `div_` by the
    # count; the count and eps as 0-dim float32 tensors skip the per-call wrapping and casting of Python
    # scalars; w * x == x * w). Half the time of the literal form at a few hundred elements.
    count = torch.tensor(float(w.shape[-1]), device=w.device)
    eps_t = torch.tensor(eps, dtype=torch.float32, device=w.device)

    def norm(h: torch.Tensor) -> torch.Tensor:  # LlamaRMSNorm.forward
        if h.dtype == torch.float32 and w.dtype == torch.float32:
            return (h * h.pow(2).sum(-1, keepdim=True).div_(count).add_(eps_t).rsqrt_()).mul_(w)
        x = h.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return w * x.to(h.dtype)
    return norm


def _fused_t(*weights: torch.Tensor) -> torch.Tensor:
    """cat(weights).t().contiguous() in one copy: [in, sum(out)], each weight transposed into its columns."""
    out = weights[0].new_empty(weights[0].shape[1], sum(w.shape[0] for w in weights))
    torch.cat([w.t() for w in weights], dim=1, out=out)
    return out


def _plain(*mods: nn.Module) -> bool:
    return all(type(m) is nn.Linear and m.bias is None for m in mods)


class _Layer:
    def __init__(self, layer: nn.Module, fuse: bool):
        a, mlp = layer.self_attn, layer.mlp
        self.norm1, self.norm2 = _rms_norm(layer.input_layernorm), _rms_norm(layer.post_attention_layernorm)
        self.q, self.k, self.v, self.o = (_linear(m) for m in (a.q_proj, a.k_proj, a.v_proj, a.o_proj))
        self.gate, self.up, self.down, self.act = _linear(mlp.gate_proj), _linear(mlp.up_proj), \
            _linear(mlp.down_proj), mlp.act_fn
        self.scaling = a.scaling
        # Fused, transposed copies [in, out] (one GEMV over contiguous rows per group instead of
        # three / two `linear` calls) where the projections are plain linears; None: module calls.
        self.qkv_t = self.o_t = self.gate_up_t = self.down_t = None
        if fuse and _plain(a.q_proj, a.k_proj, a.v_proj, a.o_proj):
            self.qkv_t = _fused_t(a.q_proj.weight, a.k_proj.weight, a.v_proj.weight)
            self.o_t = a.o_proj.weight.t().contiguous()
        if fuse and _plain(mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            self.gate_up_t = _fused_t(mlp.gate_proj.weight, mlp.up_proj.weight)
            self.down_t = mlp.down_proj.weight.t().contiguous()


class Int8KV:
    """A layer's K and V kept in int8 (the `cache="int8"` option: half of a bf16 cache, a quarter of
    float32): symmetric per (row, head, position) vector, scale = absmax / 127 in the model's dtype.
    Attention reads the filled part dequantized, one layer at a time."""

    def __init__(self, rows: int, heads: int, max_len: int, head_dim: int, device, dtype):
        self.codes = torch.zeros(rows, 2, heads, max_len, head_dim, dtype=torch.int8, device=device)
        self.scale = torch.zeros(rows, 2, heads, max_len, 1, dtype=dtype, device=device)

    def write(self, start: int, kv: torch.Tensor) -> None:
        """kv [rows, 2, heads, positions, head_dim] at positions start.. (K, V)."""
        scale = kv.abs().amax(-1, keepdim=True).clamp_(min=1e-12) / 127
        n = kv.shape[3]
        self.codes.narrow(3, start, n).copy_((kv / scale).round_())
        self.scale.narrow(3, start, n).copy_(scale)

    def read(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.codes.narrow(3, 0, n).to(self.scale.dtype) * self.scale.narrow(3, 0, n)
        return kv[:, 0], kv[:, 1]


class StackStep:
    """One Llama stack (`LlamaModel`) over `rows` rows, one position at a time, KV in buffers
    (in the model's dtype, or int8: `Int8KV`)."""

    def __init__(self, stack: nn.Module, cache: DynamicCache, max_len: int, fuse: bool, int8: bool = False):
        cfg = stack.config
        if cfg.num_key_value_heads != cfg.num_attention_heads:
            raise ValueError("the one-frame step supports plain multi-head attention only (LeLM's layout)")
        self.layers = [_Layer(layer, fuse) for layer in stack.layers]
        self.norm = _rms_norm(stack.norm)
        self.heads = cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        keys = cache.layers[0].keys
        rows, n, dev, dtype = keys.shape[0], keys.shape[2], keys.device, keys.dtype
        # The stack's own rotary module over every position at once: the same per-position values.
        positions = torch.arange(max_len, device=dev)[None]
        cos, sin = stack.rotary_emb(torch.empty(0, device=dev, dtype=dtype), positions)
        self.cos = cos[0]  # [max_len, head_dim]
        # rotate_half(x) * sin = cat(-x2, x1) * sin = roll(x, half) * cat(-sin1, sin2): the same products
        # (a sign flip is exact) in two ops instead of five.
        self.half = self.head_dim // 2
        self.sin = torch.cat([-sin[0, :, :self.half], sin[0, :, self.half:]], dim=-1)
        # K and V of a layer in one buffer [rows, 2, heads, max_len, head_dim]: with q/k/v from one fused
        # matmul, the new position's roped k and its v are written by one copy.
        self.int8 = [Int8KV(rows, self.heads, max_len, self.head_dim, dev, dtype) for _ in self.layers] if int8 else None
        self.kv = [torch.empty(rows, 2, self.heads, max_len if not int8 else 1, self.head_dim, device=dev, dtype=dtype)
                   for _ in self.layers]  # int8: only the new position, before it is quantized
        self.k = [kv[:, 0] for kv in self.kv]  # views made once: per frame only their filled part is taken
        self.v = [kv[:, 1] for kv in self.kv]
        for i, layer_cache in enumerate(cache.layers):
            if int8:
                self.int8[i].write(0, torch.stack([layer_cache.keys, layer_cache.values], dim=1))
            else:
                self.kv[i][:, 0, :, :n] = layer_cache.keys
                self.kv[i][:, 1, :, :n] = layer_cache.values
        self.length = n

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """h [rows, D] at the next position -> the normed hidden state [rows, D]."""
        p = self.length
        n = p + 1
        rows = h.shape[0]
        heads, hd = self.heads, self.head_dim
        cos, sin = self.cos[p], self.sin[p]  # once per frame for every layer
        at = 0 if self.int8 else p  # an int8 cache writes the new position to a 1-position float buffer
        for i, (L, kv, k_all, v_all) in enumerate(zip(self.layers, self.kv, self.k, self.v)):
            x = L.norm1(h)
            if L.qkv_t is not None:
                qkv = torch.mm(x, L.qkv_t).view(rows, 3, heads, hd)
                qk = qkv[:, :2]
                # RoPE on q and k together, written back into qkv so that k and v are contiguous neighbours.
                qk.copy_((qk * cos) + (qk.roll(self.half, -1) * sin))
                kv.select(3, at).copy_(qkv[:, 1:])
                q = qkv[:, 0].unsqueeze(2)
            else:
                q = L.q(x).view(rows, heads, 1, hd)  # one position: [rows, D] -> [rows, heads, 1, hd] is a view
                k = L.k(x).view(rows, heads, hd)
                q = (q * cos) + (q.roll(self.half, -1) * sin)
                k_all.select(2, at).copy_((k * cos) + (k.roll(self.half, -1) * sin))
                v_all.select(2, at).copy_(L.v(x).view(rows, heads, hd))
            if self.int8:
                self.int8[i].write(p, kv)
                keys, values = self.int8[i].read(n)
            else:
                keys, values = k_all.narrow(2, 0, n), v_all.narrow(2, 0, n)
            # One query over every filled position: no mask needed.
            att = F.scaled_dot_product_attention(q, keys, values, scale=L.scaling)
            att = att.view(rows, -1)  # [rows, heads, 1, hd] contiguous: the heads side by side
            h = torch.addmm(h, att, L.o_t) if L.o_t is not None else h + L.o(att)
            x = L.norm2(h)
            if L.gate_up_t is not None:
                gate, up = torch.mm(x, L.gate_up_t).chunk(2, dim=-1)
                h = torch.addmm(h, L.act(gate).mul_(up), L.down_t)
            else:
                h = h + L.down(L.act(L.gate(x)) * L.up(x))
        self.length = n
        return self.norm(h)


class FrameStep:
    """LeLM's one-frame step (both stacks and the fusion MLP), after a prefill into two DynamicCaches."""

    def __init__(self, model: "LeLM", caches: tuple[DynamicCache, DynamicCache], max_len: int, int8: bool = False):
        self.model = model
        # The fused copies cost one more copy of the layer weights: only for models where the per-call
        # overhead they save matters (a large model's frame is its matmuls, and GBs of copies would hurt).
        stacks = (model.transformer.model, model.transformer2.model)
        layer_bytes = sum(p.numel() * p.element_size() for s in stacks for p in s.layers.parameters())
        fuse = layer_bytes <= FUSE_MAX_BYTES
        self.main = StackStep(stacks[0], caches[0], max_len, fuse, int8)
        self.sub = StackStep(stacks[1], caches[1], max_len, fuse, int8)

    def __call__(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [rows, K, 1] -> the two stacks' last hidden states [rows, D] (as LeLM.hidden_steps)."""
        m = self.model
        tokens = tokens[:, :, -1]  # one position: rows stay 2-D [rows, D] through both stacks
        x1 = m.emb[0](tokens[:, 0])
        x2 = sum(m.layer2_emb[k](tokens[:, k]) for k in range(1, m.depth))
        h1 = self.main(x1)
        h2 = self.sub(m.mlp(torch.cat([x2, h1], dim=-1)))
        return h1, h2
