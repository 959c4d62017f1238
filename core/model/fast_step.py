"""The one-frame generation step without transformers' per-call machinery (the CPU default).

Profiled at one thread on the bench model (D256, 4+2 layers, 2 guided rows), a frame through
`LlamaModel.forward` cost more in Python and copies than in matmuls: a causal-mask and rotary
computation per call, deprecation / output-capture wrappers and module hooks around every layer,
and a DynamicCache that concatenates the whole cache (12 tensors of ~0.7 MB per frame). Here the
KV lives in preallocated buffers (written in place, read as a view of the filled part), cos/sin come
from a table built once by the stack's own rotary module, and each layer runs the operations of
`LlamaDecoderLayer` in its order (RMSNorm in float32, rotate-half RoPE, SDPA, gated MLP). Every
projection reads its weight once for all rows (`rows_matmul`: the guided cond/uncond pair costs one
read of the layer, not two, which is what a frame at D1024 is made of). For models whose layer weights
are under FUSE_MAX_BYTES, plain q/k/v and gate/up projections run as one matmul over a stacked weight
copy each (fewer calls; equal to float32 rounding, not bit for bit: tests/test_fast_generation.py
checks the hidden states against transformers' to 1e-5 and the fixture's greedy tokens). With
`weights=torch.bfloat16` the projections (and the fusion MLP) read bf16 copies, prepacked for oneDNN,
while the residual, norms, RoPE, attention and KV cache stay in the model's dtype, as under autocast.
Rows stay 2-D [rows, D] (one position); a layer's K and V share one buffer, so the new position's
roped k and its v (neighbours in the fused q/k/v output) are written by one copy. Per layer the rest
is ~35 small operations, most of the frame's time besides its matmuls
and SDPA on a small model (bench/README.md). Projections and norms that are not the plain classes (peft LoRA layers,
hub kernels) are called as modules, so adapters and peft's per-row `adapter_names` hooks still
apply; a peft LoRA layer's base linear reads its weight by the row matmul too while a FrameStep lives
(`lora_bases`).

Several positions at once (`StackStep.chunk`: one GEMM per projection, causal attention over the cache)
serve the prefill of the condition prefix (in `weights` too) and work that can wait: FrameStep.step
leaves the sub stack's positions waiting while no head reads them (the delay of the vocal and bgm
streams: a real song's first 50 steps) and runs the main stack ahead once its inputs are known to be
EMPTY (after the mixed stream's last token). A 100-frame song at D1024 then reads its weights about 100
times, not 150 (bench/README.md).
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from core.tokens import EMPTY
from core.model.timed import best_times

if TYPE_CHECKING:
    from core.model.lelm import LeLM

# Stacked copies pay where the calls they save matter: at D256 (19 MB of layer weights) a frame is mostly
# per-call overhead; at D1024 (461 MB) copying the weights for each song cost more than it saved (bench/README.md).
FUSE_MAX_BYTES = 128 * 2 ** 20
# Column-block copies of long weight rows (RowsLinear's `split`) were measured up to D1024 (461 MB of layer
# weights); a real size's frame would copy GBs per song for a gain not measured there, so it reads them plainly.
SPLIT_MAX_BYTES = 2 ** 30


# How a float32 weight is read for a guided pair of rows (RowsLinear) depends on the CPU's BLAS: on the bench's
# AMD EPYC, MKL streams `mm(w, x.t())` at about twice the rate of `linear`; on a Xeon with AMX, `linear` read a
# D1024 weight 2-2.5x faster than `mm(w, x.t())`. ROW_MM forces a form (tests); None: measured once a process.
ROW_MM: Optional[bool] = None


def row_mm() -> bool:
    """Whether RowsLinear reads float32 CPU weights as `mm(w, x.t())` (else `linear`), the faster here."""
    return ROW_MM if ROW_MM is not None else _row_mm_measured()


@functools.cache
def _row_mm_measured(weights: int = 8, shape: tuple[int, int] = (2048, 1024), trials: int = 3) -> bool:
    """Both forms over `weights` distinct D1024-wide weights (64 MB, beyond a core's caches), two rows each;
    the best of `trials` passes of each (~0.03-0.1 s in all)."""
    ws = [torch.full(shape, 0.01) for _ in range(weights)]
    x = torch.full((2, shape[1]), 0.5)
    best = best_times({"mm": lambda: [torch.mm(w, x.t()) for w in ws],
                       "linear": lambda: [F.linear(x, w) for w in ws]}, trials)
    return best["mm"] < best["linear"]


class RowsLinear:
    """x [..., in] (dtype `act`) -> x @ w.T (+ bias) [..., out] in `act`. One position's few rows (`__call__`:
    the guided pair) read the weight [out, in] once for all rows; many positions at once (`many`: a prefill, a
    deferred chunk) are a plain GEMM (bench/README.md has the measurements).

    float32: one position as `mm(w, x.t())` where that is the faster form on this CPU (`row_mm`: MKL on AMD
    streams the [out, in] weight once for a few rows there, while `linear` / `mm(x, w.t())` take a path whose
    time grows with the row count), else `linear` (a Xeon with AMX). bf16 weights on a CPU (a
    float32 model where bf16 is faster, or a bf16 model): oneDNN's linear over the weight reordered once into
    its blocked layout for `rows` rows (inductor's CPU weight prepacking; a plain bf16 weight is reordered on
    every call; the packed weight serves any row count), the rows cast to bf16 and the result back to `act`,
    as autocast does.
    """

    K_MAX = 1408  # longest row slice one float32 `mm(w, x.t())` reads fast (bench/README.md)

    def __init__(self, w: torch.Tensor, act: torch.dtype, rows: int, bias: Optional[torch.Tensor] = None,
                 split: bool = False):
        self.w, self.act = w, act
        self.fp32 = w.dtype == torch.float32 and act == torch.float32
        self.mm = self.fp32 and (w.device.type != "cpu" or row_mm())  # else `linear` (`many`) for any rows
        self.b = None if bias is None else bias.to(w.dtype)
        self.col = None if bias is None else self.b[:, None]
        # One position: (start, width, weight columns) slices of the input. MKL streams a weight with long rows
        # (the MLP's down projection: 2,816 inputs at D1024) at ~2/3 the rate of one with rows up to ~1,400, so
        # such a weight is read as contiguous copies of column blocks whose products are summed (`split`).
        K = w.shape[1]
        parts = -(-K // self.K_MAX) if split and self.mm and w.device.type == "cpu" else 1
        width = -(-K // parts)
        self.blocks = [(0, K, w)] if parts == 1 else [(at, min(width, K - at), w[:, at:at + width].contiguous())
                                                       for at in range(0, K, width)]
        self.packed = None
        if not self.fp32 and w.device.type == "cpu" and w.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(w, rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mm:
            # x.t() must be column-major (x row-major); a row-major x.t() takes a slow path again, so the
            # small [rows, out] result is made row-major for the next matmul. One row is read as two (the row
            # twice): MKL's one-row path streams the weight at about half the rate of its two-row one.
            one = x.shape[0] == 1
            if one:
                x = x.expand(2, -1)
            y = self.col
            for at, width, w in self.blocks:
                xt = x[:, at:at + width].contiguous().t()
                y = torch.mm(w, xt) if y is None else torch.addmm(y, w, xt)
            return (y[:, :1] if one else y).t().contiguous()
        return self.many(x)

    def many(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp32:
            return F.linear(x, self.w, self.b)
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.to(self.w.dtype), self.packed, self.b, "none", [], "").to(self.act)
        return F.linear(x.to(self.w.dtype), self.w, self.b).to(self.act)


def rows_matmul(w: torch.Tensor, act: torch.dtype, rows: int, bias: Optional[torch.Tensor] = None,
                split: bool = False) -> RowsLinear:
    return RowsLinear(w, act, rows, bias, split)


def many(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """f over x [rows, positions, in]: a RowsLinear as one GEMM, anything else (a LoRA layer, GELU) as called."""
    return f.many(x) if isinstance(f, RowsLinear) else f(x)


def _linear(mod: nn.Module, wdtype: torch.dtype, act: torch.dtype, rows: int,
            split: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    if type(mod) is nn.Linear:
        return rows_matmul(mod.weight.to(wdtype), act, rows, mod.bias, split)
    return mod  # a LoRA layer (or anything else): its own forward, in its own weights' dtype


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


def _stacked(weights: tuple[torch.Tensor, ...], dtype: torch.dtype) -> torch.Tensor:
    """cat(weights) [sum(out), in] in `dtype`, made by one copy (a cast included)."""
    out = weights[0].new_empty(sum(w.shape[0] for w in weights), weights[0].shape[1], dtype=dtype)
    at = 0
    for w in weights:
        out[at:at + w.shape[0]].copy_(w)
        at += w.shape[0]
    return out


def _plain(*mods: nn.Module) -> bool:
    return all(type(m) is nn.Linear and m.bias is None for m in mods)


def lora_bases(model: nn.Module, wdtype: torch.dtype, act: torch.dtype, rows: int) -> list[nn.Linear]:
    """peft LoRA layers run their own forward (adapters, strengths, per-row adapter names), which calls their
    base linear with all the rows: that base reads its weight once for all of them too, by the row matmul set
    as the base's forward (an instance attribute: the module tree and state dict stay as they are) until
    `restore`. Layers with a merged adapter are left alone (peft may unmerge inside forward)."""
    from peft.tuners.lora import LoraLayer

    bases = []
    for m in model.modules():
        base = getattr(m, "base_layer", None)
        if isinstance(m, LoraLayer) and type(base) is nn.Linear and not m.merged and "forward" not in vars(base):
            lin = RowsLinear(base.weight.to(wdtype), act, rows, base.bias)
            base.forward = lambda x, lin=lin: lin(x) if x.dim() == 2 else lin.many(x)
            bases.append(base)
    return bases


def restore(bases: list[nn.Linear]) -> None:
    for base in bases:
        del base.forward


class _Layer:
    def __init__(self, layer: nn.Module, fuse: bool, wdtype: torch.dtype, act: torch.dtype, rows: int, split: bool):
        a, mlp = layer.self_attn, layer.mlp
        self.norm1, self.norm2 = _rms_norm(layer.input_layernorm), _rms_norm(layer.post_attention_layernorm)
        self.act, self.scaling = mlp.act_fn, a.scaling
        self.o, self.down = (_linear(m, wdtype, act, rows, split) for m in (a.o_proj, mlp.down_proj))
        # q/k/v and gate/up stacked into one weight each (one matmul per group instead of three / two) where
        # the projections are plain linears; None: one call per projection.
        self.qkv = self.gate_up = None
        if fuse and _plain(a.q_proj, a.k_proj, a.v_proj):
            self.qkv = rows_matmul(_stacked((a.q_proj.weight, a.k_proj.weight, a.v_proj.weight), wdtype), act, rows)
        else:
            self.q, self.k, self.v = (_linear(m, wdtype, act, rows, split) for m in (a.q_proj, a.k_proj, a.v_proj))
        if fuse and _plain(mlp.gate_proj, mlp.up_proj):
            self.gate_up = rows_matmul(_stacked((mlp.gate_proj.weight, mlp.up_proj.weight), wdtype), act, rows)
        else:
            self.gate, self.up = (_linear(m, wdtype, act, rows, split) for m in (mlp.gate_proj, mlp.up_proj))


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
    """One Llama stack (`LlamaModel`) over `rows` rows with its KV in buffers (in the model's dtype, or int8:
    `Int8KV`): one position at a time (`__call__`) or several at once (`chunk`: a prefill, deferred positions)."""

    def __init__(self, stack: nn.Module, rows: int, max_len: int, fuse: bool, int8: bool = False,
                 wdtype: Optional[torch.dtype] = None, split: bool = False):
        cfg = stack.config
        if cfg.num_key_value_heads != cfg.num_attention_heads:
            raise ValueError("the one-frame step supports plain multi-head attention only (LeLM's layout)")
        dev, dtype = stack.norm.weight.device, stack.norm.weight.dtype
        self.layers = [_Layer(layer, fuse, wdtype or dtype, dtype, rows, split) for layer in stack.layers]
        self.norm = _rms_norm(stack.norm)
        self.heads = cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
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
        self.length = 0

    def load(self, cache: DynamicCache) -> None:
        """Starts from a transformers prefill's KV."""
        n = cache.layers[0].keys.shape[2]
        for i, layer_cache in enumerate(cache.layers):
            if self.int8:
                self.int8[i].write(0, torch.stack([layer_cache.keys, layer_cache.values], dim=1))
            else:
                self.kv[i][:, 0, :, :n] = layer_cache.keys
                self.kv[i][:, 1, :, :n] = layer_cache.values
        self.length = n

    def _keys_values(self, i: int, at: int, new: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes the new positions' K and V (int8: quantized) and returns the filled part [rows, heads, n, hd]."""
        if self.int8:
            self.int8[i].write(at, new)
            return self.int8[i].read(n)
        return self.k[i].narrow(2, 0, n), self.v[i].narrow(2, 0, n)

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
            if L.qkv is not None:
                qkv = L.qkv(x).view(rows, 3, heads, hd)
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
            keys, values = self._keys_values(i, p, kv, n)
            # One query over every filled position: no mask needed.
            att = F.scaled_dot_product_attention(q, keys, values, scale=L.scaling)
            att = att.view(rows, -1)  # [rows, heads, 1, hd] contiguous: the heads side by side
            h = h + L.o(att)
            x = L.norm2(h)
            if L.gate_up is not None:
                gate, up = L.gate_up(x).chunk(2, dim=-1)
                h = h + L.down(L.act(gate) * up)
            else:
                h = h + L.down(L.act(L.gate(x)) * L.up(x))
        self.length = n
        return self.norm(h)

    def chunk(self, h: torch.Tensor) -> torch.Tensor:
        """h [rows, m, D] at the next m positions -> the normed hidden states [rows, m, D]: each projection one
        GEMM over all of them (compute-bound, not a read of every weight per position), causal attention."""
        p, (rows, m, _) = self.length, h.shape
        n = p + m
        cos, sin = self.cos[p:n, None], self.sin[p:n, None]  # [m, 1, hd]: over the heads
        # query i (position p + i) sees positions 0..p + i
        mask = None if p == 0 else torch.ones(m, n, dtype=torch.bool, device=h.device).tril(p)
        for i, (L, kv) in enumerate(zip(self.layers, self.kv)):
            x = L.norm1(h)
            if L.qkv is not None:
                q, k, v = many(L.qkv, x).view(rows, m, 3, self.heads, self.head_dim).unbind(2)
            else:
                q, k, v = (many(f, x).view(rows, m, self.heads, self.head_dim) for f in (L.q, L.k, L.v))
            q = (q * cos) + (q.roll(self.half, -1) * sin)
            k = (k * cos) + (k.roll(self.half, -1) * sin)
            new = torch.stack([k, v], dim=1).transpose(2, 3)  # [rows, 2, heads, m, hd]
            if not self.int8:
                kv.narrow(3, p, m).copy_(new)
            keys, values = self._keys_values(i, p, new, n)
            att = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask,
                                                 is_causal=mask is None, scale=L.scaling)
            h = h + many(L.o, att.transpose(1, 2).reshape(rows, m, -1))
            x = L.norm2(h)
            if L.gate_up is not None:
                gate, up = many(L.gate_up, x).chunk(2, dim=-1)
                h = h + many(L.down, L.act(gate) * up)
            else:
                h = h + many(L.down, L.act(many(L.gate, x)) * many(L.up, x))
        self.length = n
        return self.norm(h)


class FrameStep:
    """LeLM's generation step (both stacks and the fusion MLP) over `rows` rows, KV in buffers.

    Work whose result is not needed yet waits for one chunk (`step`): during the delay of the vocal and bgm
    streams no head reads the sub stack, so its positions run later as one GEMM pass instead of one read of
    its weights each; once the mixed stream is over, the main stack's inputs are known (EMPTY) and its next
    positions run at once ahead. The numbers are the same computation (to float32 rounding: a GEMM over many
    rows sums in another order than one row's)."""

    CHUNK = 64  # at most this many positions wait / run ahead (bounds the memory of the waiting inputs)

    def __init__(self, model: "LeLM", caches: Optional[tuple[DynamicCache, DynamicCache]], max_len: int,
                 int8: bool = False, weights: Optional[torch.dtype] = None, rows: Optional[int] = None):
        """caches: a transformers prefill's KV to start from, or None (then `prefill`, for `rows` rows).
        weights: the dtype the layers' matmuls read their weights in (bf16 copies of a float32 model's: half
        the bytes a frame); None: the model's own weights."""
        self.model = model
        if caches is not None:
            rows = caches[0].layers[0].keys.shape[0]
        # The stacked q/k/v and gate/up copies cost a copy of most layer weights: only for models where the
        # per-call overhead they save matters (a large model's frame is its matmuls; GBs of copies would hurt).
        stacks = (model.transformer.model, model.transformer2.model)
        layer_bytes = sum(p.numel() * p.element_size() for s in stacks for p in s.layers.parameters())
        fuse, split = layer_bytes <= FUSE_MAX_BYTES, layer_bytes <= SPLIT_MAX_BYTES
        self.main, self.sub = (StackStep(s, rows, max_len, fuse, int8, weights, split) for s in stacks)
        if caches is not None:
            self.main.load(caches[0])
            self.sub.load(caches[1])
        first, act, last = model.mlp  # the fusion MLP (Linear, GELU, Linear) through the same row matmuls
        dtype = model.transformer2.model.norm.weight.dtype
        self.mlp = [_linear(first, weights or dtype, dtype, rows, split), act,
                    _linear(last, weights or dtype, dtype, rows, split)]
        self.waiting: list[tuple[torch.Tensor, torch.Tensor]] = []  # (x2, h1) of sub positions not run yet
        self.ahead: list[torch.Tensor] = []  # main outputs of the next positions, run ahead on EMPTY inputs
        self.empty = torch.full((rows,), EMPTY, dtype=torch.long, device=model.device)
        self.lora_bases = lora_bases(model, weights or dtype, dtype, rows) if model.device.type == "cpu" else []

    def close(self) -> None:
        """Gives peft's LoRA base linears their own forward back (lora_bases)."""
        restore(self.lora_bases)
        self.lora_bases = []

    def _inputs(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [rows, K, m] -> the main stack's input and the vocal/bgm part of the sub stack's."""
        m = self.model
        return m.emb[0](tokens[:, 0]), sum(m.layer2_emb[k](tokens[:, k]) for k in range(1, m.depth))

    def _fuse(self, x2: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x2, h1], dim=-1)
        for f in self.mlp:
            z = f(z) if z.dim() == 2 else many(f, z)
        return z

    def prefill(self, prefix: tuple[torch.Tensor, torch.Tensor], tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The condition prefix [rows, P, D] x2 and the first step's tokens [rows, K, 1] through both stacks
        (as LeLM.hidden_steps) -> their last hidden states [rows, D]."""
        x1, x2 = self._inputs(tokens)
        h1 = self.main.chunk(torch.cat([prefix[0].to(x1.dtype), x1], dim=1))
        h2 = self.sub.chunk(self._fuse(torch.cat([prefix[1].to(x2.dtype), x2], dim=1), h1))
        return h1[:, -1], h2[:, -1]

    def __call__(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [rows, K, 1] -> the two stacks' last hidden states [rows, D] (as LeLM.hidden_steps)."""
        return self.step(tokens)

    def step(self, tokens: torch.Tensor, sub: bool = True, empty_ahead: int = 0
             ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """tokens [rows, K, 1] at the next position -> (h1, h2 or None) [rows, D].

        sub=False: the sub stack's output is not needed at this position, so it may wait (None).
        empty_ahead: how many positions after this one surely have EMPTY main-stack inputs (the mixed stream
        has ended in every row or is past its last frame): the main stack runs them now, in one chunk."""
        tokens = tokens[:, :, -1]  # one position: rows stay 2-D [rows, D] through both stacks
        x1, x2 = self._inputs(tokens)
        if self.ahead:
            if not bool((tokens[:, 0] == EMPTY).all()):
                raise RuntimeError("a mixed token came after the main stack ran ahead on EMPTY inputs")
            h1 = self.ahead.pop(0)
        elif empty_ahead > 0:
            m = min(empty_ahead, self.CHUNK - 1)
            fill = self.model.emb[0](self.empty[:, None].expand(-1, m))
            out = self.main.chunk(torch.cat([x1[:, None], fill], dim=1))
            h1, self.ahead = out[:, 0], list(out[:, 1:].unbind(1))
        else:
            h1 = self.main(x1)
        self.waiting.append((x2, h1))
        if not sub and len(self.waiting) < self.CHUNK:
            return h1, None
        if len(self.waiting) == 1:
            h2 = self.sub(self._fuse(x2, h1))
        else:
            z = self._fuse(*(torch.stack(parts, dim=1) for parts in zip(*self.waiting)))
            h2 = self.sub.chunk(z)[:, -1]
        self.waiting.clear()
        return h1, h2
