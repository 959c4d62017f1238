"""The flow-matching velocity estimator: a non-causal GPT-2-shaped transformer with adaLN-single timestep
conditioning, learned absolute positions and interleaved rotary embeddings on queries and keys.

Weights are the `cfm_wrapper.estimator.*` tensors; HF-GPT-2 `Conv1D` weights are stored [in, out], so the
projections here compute `x @ W + b`. Width, depth, FFN and maximum length come from tensor shapes; the head
count comes from hparams.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
import torch.nn.functional as F

from core.weights import WeightFileError, get, load_strict, take_prefix

TIME_DIM = 512  # sinusoidal timestep features fed to the timestep MLP


class Conv1DLinear(nn.Module):
    """y = x @ W + b with W stored [in, out] (GPT-2 layout, so keys load unchanged)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = Conv1DLinear(d, 3 * d)
        self.c_proj = Conv1DLinear(d, d)

    def forward(self, x, rope):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=-1)
        hd = d // self.n_head
        q, k, v = (z.view(b, t, self.n_head, hd) for z in (q, k, v))
        q, k = apply_rope(q, rope), apply_rope(k, rope)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        # softmax(q k^T / sqrt(hd)) v with no mask (the estimator is non-causal); the fused kernel avoids the
        # [B, H, T, T] score tensor and matches the explicit form to rounding
        y = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(hd))
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, d: int, inner: int):
        super().__init__()
        self.c_fc = Conv1DLinear(d, inner)
        self.c_proj = Conv1DLinear(inner, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d: int, n_head: int, inner: int, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, n_head)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = MLP(d, inner)
        self.scale_shift_table = nn.Parameter(torch.empty(6, d))

    def forward(self, h, t6, rope):
        sh1, sc1, g1, sh2, sc2, g2 = (self.scale_shift_table[None] + t6).chunk(6, dim=1)
        h = h + self.attn(self.ln_1(h) * (1 + sc1) + sh1, rope) * g1
        return h + self.mlp(self.ln_2(h) * (1 + sc2) + sh2) * g2


class TimestepEmbedder(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.linear_1 = nn.Linear(TIME_DIM, d)
        self.linear_2 = nn.Linear(d, d)

    def forward(self, e):
        return self.linear_2(F.silu(self.linear_1(e)))


class _Emb(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(d)


class AdaLNSingle(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.emb = _Emb(d)
        self.linear = nn.Linear(d, 6 * d)


def timestep_features(t: torch.Tensor) -> torch.Tensor:
    """t in [0, 1], shape [B] -> [B, 512] = [cos(1000 t f_j), sin(1000 t f_j)], f_j = 10000^(-j/256)."""
    half = TIME_DIM // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = (t.float() * 1000)[:, None] * freqs[None]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


def rope_table(t: int, hd: int, device) -> torch.Tensor:
    """Complex rotations [T, hd/2] for interleaved pairs, theta_j = 10000^(-2j/hd)."""
    theta = 1.0 / (10000 ** (torch.arange(0, hd, 2, device=device)[: hd // 2].float() / hd))
    ang = torch.outer(torch.arange(t, device=device, dtype=torch.float32), theta)
    return torch.polar(torch.ones_like(ang), ang)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, hd]; rotate pairs (0,1), (2,3), ... in fp32 and cast back."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * rope[None, :, None, :]).flatten(3).type_as(x)


class FlowEstimator(nn.Module):
    def __init__(self, d: int, n_layer: int, n_head: int, inner: int, n_positions: int, eps: float = 1e-5):
        super().__init__()
        if d % n_head or (d // n_head) % 2:
            raise ValueError(f"estimator width {d} does not split into {n_head} heads of even size")
        self.d, self.n_head = d, n_head
        self.wpe = nn.Embedding(n_positions, d)
        self.h = nn.ModuleList([Block(d, n_head, inner, eps) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d, eps=eps)
        self.proj_out = nn.Linear(d, d)
        self.scale_shift_table = nn.Parameter(torch.empty(2, d))
        self.adaln_single = AdaLNSingle(d)

    @classmethod
    def from_state_dict(cls, sd_all: Mapping[str, torch.Tensor], hp: Mapping, path: str | Path, what: str,
                        prefix: str = "cfm_wrapper.estimator."):
        sd = take_prefix(sd_all, prefix)
        sd.pop("wte.weight", None)  # token embedding: unused, inputs are always embeddings
        wpe = get(sd, "wpe.weight", path, what, ndim=2)
        inner = get(sd, "h.0.mlp.c_fc.weight", path, what, ndim=2).shape[1]
        n_layer = len({k.split(".")[1] for k in sd if k.startswith("h.")})
        n_head = int(hp.get("n_head", 20))
        d = wpe.shape[1]
        if d % n_head:
            raise WeightFileError(f"{what} {path}: estimator width {d} is not divisible by n_head={n_head}")
        m = cls(d, n_layer, n_head, inner, wpe.shape[0], float(hp.get("layer_norm_epsilon", 1e-5)))
        load_strict(m, sd, path, what, prefix=prefix)
        return m.eval()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] input embeddings, t [B] in [0, 1] -> [B, T, D]."""
        b, n, d = x.shape
        h = x + self.wpe.weight[:n][None].to(x.dtype)
        emb = self.adaln_single.emb.timestep_embedder(timestep_features(t).to(x.dtype))
        t6 = self.adaln_single.linear(F.silu(emb)).view(b, 6, d)
        rope = rope_table(n, d // self.n_head, x.device)
        for blk in self.h:
            h = blk(h, t6, rope)
        sh, sc = (self.scale_shift_table[None] + emb[:, None]).chunk(2, dim=1)
        return self.proj_out(self.ln_f(h) * (1 + sc) + sh)
