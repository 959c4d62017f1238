"""The loss of a batch, and the one validation loss (the trainer's eval and core.export.generate's manifests).

Where the loss comes from: `BatchLoss.forward` -> `build_targets` + `LeLM.compute_loss`
(+ the checkpoint's condition dropout, train mode only; equal to `masked_ce` of `compute_predictions`
without their full logits), the mean of the 3 streams.

Validation loss: every validation song's first window of min(max_frames, model max) frames
(`SongSet(random_crop=False)`), batched longest first, the model in eval mode (no dropout of any
kind); per stream the cross-entropy is pooled over all valid targets of all songs (sum of
per-batch mean x target count, divided by the total count), and the loss is the mean of the three
streams. Across processes, each takes every world-th batch and the sums and counts are added up.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Optional

import torch
import torch.nn as nn

from core.training.dataset import SongSet
from core.data.batch import collate
from core.tokens import EMPTY


class BatchLoss(nn.Module):
    """Wraps LeLM (or its peft model) so DDP/FSDP see a forward() that returns the loss parts.

    forward -> (per-stream mean CE [3], valid target count per stream [3]).
    """

    def __init__(self, lm: nn.Module, lelm: nn.Module):
        super().__init__()
        self.lm = lm
        object.__setattr__(self, "_lelm", lelm)  # the LeLM inside (not a second registration)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, reaches_end: torch.Tensor,
                prompt: torch.Tensor, lyrics: list, descriptions: list) -> tuple[torch.Tensor, torch.Tensor]:
        from core.model import build_targets

        targets = build_targets(codes, lengths)
        cut = (~reaches_end.to(targets.device)).nonzero().flatten()
        for b in cut.tolist():  # a cropped window does not end the song: no EOS target there
            targets[b, :, int(lengths[b])] = EMPTY
        # Chunked head + cross-entropy: no [B, 3, T, 16385] fp32 logits (LeLM.compute_loss).
        per_stream, counts = self._lelm.compute_loss(targets, lyrics=lyrics, descriptions=descriptions, prompt=prompt)
        return per_stream, counts


def pool_over_processes(per_stream: torch.Tensor, counts: torch.Tensor, accelerator) -> torch.Tensor:
    """This process's per-stream mean CE -> its share of the mean over every process's targets, scaled so
    that the gradient average across processes (DDP / FSDP divide by their number) and the mean of the
    logged values equal one process training the whole batch (CE pooled over all its targets)."""
    total = accelerator.reduce(counts.detach().double(), reduction="sum").to(per_stream.dtype)
    return per_stream * counts.to(per_stream.dtype) * accelerator.num_processes / total.clamp(min=1)


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def stream_sums(loss: BatchLoss, songs: SongSet, prompt_frames: int, version: str, *, batch_size: int = 1,
                device="cpu", rank: int = 0, world: int = 1,
                autocast: Callable[[], ContextManager] = nullcontext,
                on_batch: Optional[Callable[[int, int], None]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of CE over valid targets [3], valid target count [3]) in float64 on the CPU, over this
    rank's share of the validation batches. The model is in eval mode meanwhile. on_batch(done, total)
    hears each batch finished (a caller's progress or time budget)."""
    order = sorted(range(len(songs)), key=lambda i: -songs.cropped_length(i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)][rank::world]
    sums = torch.zeros(3, dtype=torch.float64)
    counts = torch.zeros(3, dtype=torch.float64)
    was_training = loss.lm.training  # a fresh BatchLoss says train mode; the model's own mode is what to restore
    loss.eval()
    try:
        for n, idx in enumerate(batches):
            batch = to_device(collate([songs.item(i, 0) for i in idx], prompt_frames, version), device)
            with autocast():
                per_stream, cnt = loss(**batch)
            sums += per_stream.double().cpu() * cnt.double().cpu()
            counts += cnt.double().cpu()
            if on_batch is not None:
                on_batch(n + 1, len(batches))
    finally:
        loss.train(was_training)
    return sums, counts


def pooled(sums: torch.Tensor, counts: torch.Tensor) -> tuple[float, list[float]]:
    """(validation loss, per-stream losses [mixed, vocal, bgm]) from summed CE and counts."""
    per = (sums.double().cpu() / counts.double().cpu().clamp(min=1)).tolist()
    return sum(per) / 3, per


def validation_loss(model, split, *, max_frames: Optional[int] = None, batch_size: int = 1, seed: int = 0,
                    lm: Optional[nn.Module] = None,
                    on_batch: Optional[Callable[[int, int], None]] = None) -> dict[str, Any]:
    """The validation loss of a LeLM (`lm`: its peft wrapper, if any) on a validation split, in one
    process: {"val_loss", "per_stream", "songs", "max_frames"}; on_batch as in stream_sums."""
    limit = min(max_frames or model.config.max_frames, model.config.max_frames)
    songs = SongSet(split, limit, seed, random_crop=False, allow_random_crop=bool(getattr(model, "is_demo", False)),
                    frame_rate=model.config.frame_rate)
    sums, counts = stream_sums(BatchLoss(lm if lm is not None else model, model), songs, model.config.prompt_frames,
                               model.version, batch_size=batch_size, device=model.device, on_batch=on_batch)
    loss, per = pooled(sums, counts)
    return {"val_loss": loss, "per_stream": per, "songs": len(songs), "max_frames": limit}
