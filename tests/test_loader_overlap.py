"""training.num_workers: the DataLoader reads the next batches while the training step still runs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from core.training.dataset import BatchPlan, SongSet, batch_loader

LENGTHS = [90, 40, 75, 30, 120, 55, 64, 80]


class LoggedSongs(SongSet):
    """A SongSet that leaves a file per item it reads (worker processes included)."""

    def __init__(self, split, log_dir: Path):
        super().__init__(split, max_frames=60, seed=3, random_crop=True, allow_random_crop=True)
        self.log_dir = log_dir

    def __getitem__(self, key):
        (self.log_dir / f"{key[0]}-{key[1]}-{os.getpid()}").touch()
        return super().__getitem__(key)


def songs(log_dir: Path) -> LoggedSongs:
    from datasets import Dataset

    g = torch.Generator().manual_seed(0)
    rows = {"idx": [f"s{i}" for i in range(len(LENGTHS))], "num_frames": LENGTHS,
            "codes": [torch.randint(0, 16384, (3, n), generator=g).tolist() for n in LENGTHS],
            "prompt": [torch.randint(0, 16384, (3, 8), generator=g).tolist() for _ in LENGTHS],
            "lyrics": ["[verse] the night is young"] * len(LENGTHS), "description": ["pop"] * len(LENGTHS)}
    return LoggedSongs(Dataset.from_dict(rows), log_dir)


def reads_during_first_step(tmp_path: Path, workers: int, wait_s: float) -> tuple[int, set[int]]:
    """Items read while the main process holds batch 0 and has not asked for more (its 'step')."""
    plan = BatchPlan(LENGTHS, 2, seed=3, bucket_size=2, start=0, stop=4)
    log = tmp_path / f"w{workers}"
    log.mkdir()
    it = iter(batch_loader(songs(log), plan, prompt_frames=4, version="v2", num_workers=workers))
    next(it)  # batch 0 in hand: the training step would run now
    deadline = time.monotonic() + wait_s  # an upper bound to wait, never asserted on
    while len(list(log.iterdir())) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    read = list(log.iterdir())
    pids = {int(p.name.split("-")[2]) for p in read}
    del it
    return len(read), pids


def test_workers_load_ahead_of_the_step(tmp_path):
    serial, serial_pids = reads_during_first_step(tmp_path, 0, 1.0)
    assert serial == 2 and serial_pids == {os.getpid()}  # without workers nothing is read ahead
    ahead, pids = reads_during_first_step(tmp_path, 2, 120.0)
    # 2 workers x prefetch 2 = 4 batches in flight: all 8 items of the 4 planned batches are read while
    # the main process still "computes" on batch 0, in other processes.
    assert ahead == 8 and os.getpid() not in pids and len(pids) == 2
