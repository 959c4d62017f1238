"""Pure pieces of the training loop: LR schedule, batch plan (length bucketing), crop rule, seeds.

Everything here is a function of (config, step) only, which is what makes resume exact: the data
order, the crop windows and every random draw of a step are recomputed from the seed and the step
number instead of being carried in mutable state.
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Sequence

import torch

from core.data.limits import DataError


def lr_factor(update: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer update `update` (0-based), reference shape (lelm.md §4).

    Linear warm-up, then cosine from 1 down to `min_ratio` at `total`, then flat at `min_ratio`.
    The reference computes lr·step/warmup during warm-up, which makes its first update use lr 0; we
    count updates from 1 there ((update+1)/warmup), so no update is wasted and the peak is reached
    exactly at the last warm-up update. The cosine part is the reference formula
    m + 0.5·(1−m)·(1+cos(π·s)), s = (update−warmup)/(total−warmup).
    """
    if warmup > 0 and update < warmup:
        return (update + 1) / warmup
    if update >= total:
        return min_ratio
    span = max(1, total - warmup)
    s = min(1.0, max(0.0, (update - warmup) / span))
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * s))


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python runs, unlike hash())."""
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def plan_epoch(lengths: Sequence[int], global_batch: int, seed: int, epoch: int,
               bucket_size: int = 64) -> list[list[int]]:
    """Global batches (lists of dataset indices) of one epoch, with length bucketing.

    Shuffle with a generator seeded by (seed, epoch); wrap around so every batch is full (a dataset
    smaller than a batch is repeated); cut into windows of `bucket_size` batches, sort each window
    by length (longest first) and cut it into batches, so a batch holds songs of similar length and
    wastes little padding; finally shuffle the batch order. Deterministic in (lengths, seed, epoch).
    """
    n = len(lengths)
    if n == 0:
        raise DataError("the training split is empty: prepare at least one song", code="empty_split")
    g = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
    perm = torch.randperm(n, generator=g).tolist()
    need = max(global_batch, math.ceil(n / global_batch) * global_batch)
    order = [perm[i % n] for i in range(need)]
    window = global_batch * max(1, bucket_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: (-lengths[i], i))
        batches += [chunk[j:j + global_batch] for j in range(0, len(chunk), global_batch)]
    shuffle = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in shuffle]


def shard(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's part of a global batch (strided, so a length-sorted batch splits evenly)."""
    return list(batch[rank::world])


def crop_window(num_frames: int, max_frames: int, seed: int, epoch: int, key: str,
                random_start: bool = True) -> tuple[int, int, bool]:
    """Crop rule for songs longer than `max_frames` -> (start, length, reaches_end).

    Training: a window of `max_frames` frames at a uniformly random start, drawn from
    (seed, epoch, item id), so each epoch sees another part of a long song and resume replays the
    same windows. Validation (`random_start=False`): the first `max_frames` frames. `reaches_end`
    tells whether the window contains the song's real end; only then is EOS a target.
    """
    if num_frames <= max_frames:
        return 0, num_frames, True
    if not random_start:
        return 0, max_frames, False
    rng = random.Random(derive_seed(seed, "crop", epoch, key))
    start = rng.randint(0, num_frames - max_frames)
    return start, max_frames, start + max_frames >= num_frames
