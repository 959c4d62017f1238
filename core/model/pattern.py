"""The codebook delay pattern: how [B, K, T] codes become the [B, K, S] sequence the LM reads.

With delays d_q (max D), the sequence has S = T + D + 1 steps. Step 0 is all EMPTY; at step
s >= 1 stream q holds codes[q, s - 1 - d_q] when that frame exists, else EMPTY. The output at
step s predicts step s + 1, so the logit of (q, t) is the output at step t + d_q.
"""
from __future__ import annotations

from typing import Sequence

import torch

from core.tokens import EMPTY, EOS  # noqa: F401  (re-exported: core.model.EMPTY / EOS)


class DelayPattern:
    def __init__(self, delays: Sequence[int]):
        if delays[0] != 0 or any(d < 0 for d in delays):
            raise ValueError(f"delays must start at 0 and be >= 0, got {list(delays)}")
        self.delays = [int(d) for d in delays]
        self.max_delay = max(self.delays)

    def num_steps(self, num_frames: int) -> int:
        return num_frames + self.max_delay + 1

    def frame_at(self, step: int, stream: int) -> int:
        """The frame index that sequence step `step` holds for `stream` (may be out of range)."""
        return step - 1 - self.delays[stream]

    def build(self, codes: torch.Tensor, fill: int = EMPTY) -> torch.Tensor:
        """codes [B, K, T] -> delayed sequence [B, K, T + D + 1]."""
        B, K, T = codes.shape
        seq = codes.new_full((B, K, self.num_steps(T)), fill)
        for q, d in enumerate(self.delays):
            seq[:, q, 1 + d: 1 + d + T] = codes[:, q]
        return seq

    def revert(self, seq: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Inverse of `build` for tokens: [B, K, S] -> [B, K, T]."""
        return torch.stack([seq[:, q, 1 + d: 1 + d + num_frames] for q, d in enumerate(self.delays)], dim=1)

    def align_logits(self, logits: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step outputs [B, K, S, V] -> logits aligned with codes [B, K, T, V] and a validity mask [B, K, T]."""
        B, K, S, V = logits.shape
        out = torch.stack([logits[:, q, d: d + num_frames] for q, d in enumerate(self.delays)], dim=1)
        # Every (q, t < T) has an output step (t + d_q <= S - 2), so all are valid.
        mask = torch.ones((B, K, num_frames), dtype=torch.bool, device=logits.device)
        return out, mask

    def valid_slot(self, step: int, stream: int, num_frames: int) -> bool:
        """Whether sequence step `step` of `stream` holds a real frame (otherwise it is forced EMPTY)."""
        t = self.frame_at(step, stream)
        return 0 <= t < num_frames
