"""Training targets and the loss.

Targets follow the official `generate_mask_and_end_token`: EOS at each song's length in every
stream, EMPTY after it (a frame is appended when the batch has no spare one). The loss is the
cross-entropy per stream over positions where the pattern mask holds and the target is not EMPTY
(EOS is a normal target), pooled over the batch; the training loss is the mean of the three.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from core.model.pattern import EMPTY, EOS


def build_targets(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """codes [B, K, T] (anything past a length is ignored), lengths [B] -> [B, K, T'] with EOS and EMPTY."""
    B, K, T = codes.shape
    lengths = lengths.to(codes.device).long()
    if int(lengths.max()) >= T:
        codes = torch.cat([codes, codes.new_full((B, K, int(lengths.max()) + 1 - T), EMPTY)], dim=-1)
    frames = torch.arange(codes.shape[-1], device=codes.device)[None, None, :]
    end = lengths[:, None, None]
    out = torch.where(frames < end, codes, torch.full_like(codes, EMPTY))
    return torch.where(frames == end, torch.full_like(codes, EOS), out)


def masked_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per stream -> [K]. logits [B, K, T, V], targets/mask [B, K, T]."""
    valid = mask & (targets != EMPTY)
    K, V = logits.shape[1], logits.shape[-1]
    losses = []
    for q in range(K):
        sel = valid[:, q]
        if not bool(sel.any()):
            losses.append(logits.new_zeros(()) * logits[:, q].sum())  # keeps the graph, contributes 0
            continue
        losses.append(F.cross_entropy(logits[:, q][sel].float().reshape(-1, V), targets[:, q][sel].reshape(-1)))
    return torch.stack(losses)


# ---- linear + cross-entropy without full-vocabulary logits ------------------------------------------
# A stream's logits are [N, 16385] fp32: 64 KiB per position, 1.3 GB for the three streams of a 4m30 song
# (plus as much for their gradient). Chunked, only `rows` positions' logits exist at any time.
CHUNK_BYTES = 64 * 2 ** 20


def chunk_rows(vocab: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    return max(1, chunk_bytes // (4 * vocab))


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    dev = h.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else h.dtype


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of CE(h @ W^T, t), chunked; the gradients are formed chunk by chunk in forward.

    The loss is a scalar, so d(loss)/d(logits) = softmax - onehot is known in forward: each chunk's
    grad_h / grad_W are accumulated there and scaled by grad_output in backward. Three matmuls per
    chunk, as in the plain path, and never more than one chunk of logits alive.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int, dtype: torch.dtype):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        with torch.autocast(h.device.type, enabled=False):
            for start in range(0, h.shape[0], rows):
                hc = h[start:start + rows].to(dtype)
                tc = targets[start:start + rows]
                logits = (hc @ w.t()).float()
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, tc[:, None]).squeeze(1)).sum()
                if need_h or need_w:
                    g = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                    g[torch.arange(g.shape[0], device=g.device), tc] -= 1.0
                    g = g.to(dtype)
                    if need_h:
                        grad_h[start:start + rows] = (g @ w).to(h.dtype)
                    if need_w:
                        grad_w += (g.t() @ hc).float()
        ctx.save_for_backward(grad_h if need_h else None, grad_w if need_w else None)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None


def _checkpointed_ce_sum(h: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, rows: int) -> torch.Tensor:
    """Any head module (e.g. a LoRA-wrapped linear): per chunk, logits recomputed in backward."""
    from torch.utils.checkpoint import checkpoint

    def part(hc: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(hc).float(), tc, reduction="sum")

    total = h.new_zeros((), dtype=torch.float32)
    for start in range(0, h.shape[0], rows):
        hc, tc = h[start:start + rows], targets[start:start + rows]
        total = total + (checkpoint(part, hc, tc, use_reentrant=False) if torch.is_grad_enabled() else part(hc, tc))
    return total


def linear_cross_entropy(h: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, *,
                         chunked: Optional[bool] = None, chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """Mean CE of head(h) [N, V] against targets [N] (N >= 1), equal to `F.cross_entropy(head(h).float(), t)`.

    chunked=None picks the chunked form when one chunk holds fewer rows than N (it then saves memory).
    """
    weight = getattr(head, "weight", None)
    rows = chunk_rows(weight.shape[0] if weight is not None else head(h[:1]).shape[-1], chunk_bytes)
    if chunked is None:
        chunked = h.shape[0] > rows
    if not chunked:
        return F.cross_entropy(head(h).float(), targets)
    plain = type(head) is torch.nn.Linear and head.bias is None
    if plain:
        total = _LinearCrossEntropy.apply(h, head.weight, targets, rows, _compute_dtype(h))
    else:
        total = _checkpointed_ce_sum(h, head, targets, rows)
    return total / h.shape[0]
