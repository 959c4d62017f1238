"""Training targets and the loss.

Targets follow the official `generate_mask_and_end_token`: EOS at each song's length in every
stream, EMPTY after it (a frame is appended when the batch has no spare one). The loss is the
cross-entropy per stream over positions where the pattern mask holds and the target is not EMPTY
(EOS is a normal target), pooled over the batch; the training loss is the mean of the three.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .pattern import EMPTY, EOS


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

