"""What a training run optimises: its data, the loss of a batch and its held-out measure.

The loop (core.training.trainer) is the same for every objective; it asks the objective for:
- `train_set` / `val_set` / `data_dir` / `lengths()`: what to train on (the constructor logs what it found);
- `step_module()`: the nn.Module accelerate prepares (DDP / FSDP wrap it); `loader(plan)`: its batches;
- `prepare(start_step)`: anything computed once before the first step (DPO's reference log-probs);
- `forward(step_module, batch)` -> (loss to backpropagate, statistics [len(stat_keys)]);
  `record(stats)` names the statistics averaged over the step's micro-batches ("loss" first);
- `evaluate(step)` -> the held-out loss that early stopping and the "best" checkpoint compare (lower is better),
  or None when there is nothing held out; it writes its own `eval` event.
`SFTObjective` trains on the prepared songs; core.training.dpo_objective.DPOObjective on preference pairs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from core.config import ConfigError
from core.training.dataset import batch_loader, find_dataset_dir, load_dataset_dict, song_sets
from core.training.evaluate import BatchLoss, pool_over_processes, pooled, stream_sums

STREAMS = ("mixed", "vocal", "bgm")


class Objective(ABC):
    """The interface; `trainer` is a core.training.trainer.Trainer whose model is built."""

    stat_keys: tuple[str, ...] = ()
    train_set: Any
    val_set: Any
    data_dir: Path

    def __init__(self, trainer):
        self.tr = trainer

    def lengths(self) -> list[int]:
        """Frames of each training item as it will be cropped (the batch plan buckets by them)."""
        return [self.train_set.cropped_length(i) for i in range(len(self.train_set))]

    @abstractmethod
    def step_module(self) -> nn.Module:
        """The module accelerate prepares; its forward takes a batch of `loader`."""

    @abstractmethod
    def loader(self, plan, num_workers: int = 0):
        """The training batches in the order of `plan` (core.training.dataset.BatchPlan)."""

    def prepare(self, start_step: int) -> None:
        """Called once before the first step of this session (0, or the step a resume continues from)."""

    @abstractmethod
    def forward(self, step_module: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (loss to backpropagate, statistics [len(stat_keys)]) of one micro-batch."""

    def record(self, stats: list[float]) -> dict[str, float]:
        return dict(zip(self.stat_keys, stats))

    @abstractmethod
    def evaluate(self, step: int) -> Optional[float]:
        """The held-out loss at `step` (every process calls it), None when nothing is held out."""


class SFTObjective(Objective):
    """Next-token cross-entropy of the three token streams on the prepared songs (random crops)."""

    stat_keys = tuple(f"loss_{s}" for s in STREAMS)

    def __init__(self, trainer):
        super().__init__(trainer)
        tr, lelm = trainer, trainer.lelm
        self.data_dir = find_dataset_dir(tr.cfg)
        ds = load_dataset_dict(self.data_dir)
        # random crops that keep a whole song's lyrics are refused for real checkpoints (core.training.dataset)
        self.train_set, self.val_set = song_sets(ds, tr.max_frames, tr.tc.seed, bool(getattr(lelm, "is_demo", False)),
                                                 lelm.config.frame_rate)
        for note in self.train_set.notes:
            tr.log(note)
        if len(self.train_set) == 0:
            raise ConfigError(f"{self.data_dir}: the train split is empty")

    def step_module(self) -> nn.Module:
        return BatchLoss(self.tr.model, self.tr.lelm)

    def loader(self, plan, num_workers: int = 0):
        lelm = self.tr.lelm
        return batch_loader(self.train_set, plan, lelm.config.prompt_frames, lelm.version, num_workers)

    def forward(self, step_module: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        per_stream, counts = step_module(**batch)
        if self.tr.world > 1:  # windows differ in length across ranks: pool, not a mean of per-rank means
            per_stream = pool_over_processes(per_stream, counts, self.tr.accelerator)
        return per_stream.mean(), per_stream

    def record(self, stats: list[float]) -> dict[str, float]:
        return {"loss": sum(stats) / len(stats), **dict(zip(self.stat_keys, stats))}

    def evaluate(self, step: int) -> Optional[float]:
        if self.val_set is None or len(self.val_set) == 0:
            return None
        tr = self.tr
        acc = tr.accelerator
        # sharded weights: a forward is a collective, so every rank runs every batch (same result)
        rank, world = (0, 1) if tr.sharded else (tr.rank, tr.world)
        sums, counts = stream_sums(acc.unwrap_model(tr.step_module), self.val_set, tr.lelm.config.prompt_frames,
                                   tr.lelm.version, batch_size=tr.tc.batch_size, device=acc.device,
                                   rank=rank, world=world, autocast=acc.autocast)
        if world > 1:
            sums = acc.reduce(sums.to(acc.device), reduction="sum")
            counts = acc.reduce(counts.to(acc.device), reduction="sum")
        loss, per = pooled(sums, counts)
        if tr.is_main:
            named = {"loss": loss, **dict(zip(self.stat_keys, per))}
            tr.tel.event("eval", step=step, **{f"val_{k}": v for k, v in named.items()}, songs=len(self.val_set))
            tr.tel.scalars(step, "val", named)
            tr.log(f"step {step}: validation loss {loss:.4f}")
        return loss


def make_objective(trainer) -> Objective:
    """The objective `training.objective` names (the one place that reads it)."""
    if trainer.tc.objective == "dpo":
        from core.training.dpo_objective import DPOObjective
        return DPOObjective(trainer)
    return SFTObjective(trainer)
