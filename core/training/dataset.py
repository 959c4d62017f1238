"""The prepared dataset as the trainer sees it: which folder, songs with the crop rule, batches.

Rules, as implemented:
- Crop: an item longer than `min(training.max_frames, model max_frames)` is trained on a run of
  whole sections that fits (core.timing.sections.crop_sections), drawn from (seed, epoch, item), with only
  those sections' lyrics; EOS is a target only when the crop holds the song's real end (a cut song
  must not learn to stop at the cut). Validation uses the first run. An item without section timing
  cannot be cut with its lyrics: that is refused for official checkpoints (the message says how to
  add timing); the demo model keeps a random window with the item's lyrics.
- Batches: `training.batch_size` per process; a global batch is batch_size x processes songs of
  similar length (bucketing, `core.training.schedule.plan_epoch`), split strided across processes, so a
  1-process run with batch 2 and a 2-process run with batch 1 see the same songs each step.
- Data order and crops are functions of (seed, epoch) only, so `BatchPlan` can start at any
  micro-batch: a resumed run reads exactly the batches the interrupted one would have read. Songs are
  read and collated by a torch `DataLoader` (`training.num_workers` worker processes); the sampler,
  not the loader, decides the order, so the number of workers never changes what is trained on.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from core.config import ConfigError, StudioConfig
from core.text.lyrics import SEP
from core.training.schedule import crop_window, derive_seed, plan_epoch, shard
from core.timing.sections import HOW_TO_ADD_TIMING, crop_sections, section_frames, sections_longer_than
from core.tokens import EMPTY
from core.data.batch import collate


def find_dataset_dir(cfg: StudioConfig) -> Path:
    """`training.dataset_dir`, else the latest prepared dataset: `<prepared>/latest.json` (written by
    core.data.prepare), else the newest folder with a dataset_dict.json under `cfg.prepared_dir()`."""
    if cfg.training.dataset_dir:
        path = Path(cfg.training.dataset_dir).expanduser()
        if not path.is_dir():
            raise ConfigError(f"training.dataset_dir = {path} does not exist; run `python -m core prepare` "
                              "or point it at a prepared dataset folder")
        return path
    root = cfg.prepared_dir()
    latest = root / "latest.json"
    if latest.is_file():
        try:
            path = Path(json.loads(latest.read_text(encoding="utf-8"))["dataset_dir"])
            if (path / "dataset_dict.json").is_file():
                return path
        except (ValueError, KeyError, TypeError):
            pass
    candidates = [p for p in root.iterdir() if p.is_dir() and (p / "dataset_dict.json").exists()] if root.is_dir() else []
    if not candidates:
        raise ConfigError(f"no prepared dataset under {root}; run `python -m core prepare --config ...` first "
                          "or set training.dataset_dir")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def load_dataset_dict(dataset_dir: Path):
    """The prepared dataset (core.data.load_prepared)."""
    from core.data import load_prepared

    return load_prepared(dataset_dir)


class SongSet(Dataset):
    """One split of the prepared dataset with the crop rule applied on access.

    Indexed by `(song index, epoch)` (the epoch picks the crop window), which is what `BatchPlan`
    yields, so it plugs into a `DataLoader` as a map-style dataset.
    """

    def __init__(self, split, max_frames: int, seed: int, random_crop: bool, allow_random_crop: bool = False,
                 frame_rate: int = 25):
        self.split = split
        self.max_frames = max_frames
        self.seed = seed
        self.random_crop = random_crop
        self.frame_rate = frame_rate
        plain = split.with_format(None) if len(split) else split
        n = len(split)
        self.num_frames = [int(x) for x in plain["num_frames"]] if n else []
        self.ids = [str(x) for x in plain["idx"]] if n else []
        cols = set(split.column_names) if n else set()
        # items from datasets prepared before section timing: one whole song each, no sections
        self.starts = [float(x) for x in plain["start_s"]] if "start_s" in cols else [0.0] * n
        self.reaches = [bool(x) for x in plain["reaches_end"]] if "reaches_end" in cols else [True] * n
        secs = [json.loads(x or "[]") for x in plain["sections"]] if "sections" in cols else [[] for _ in range(n)]
        self.spans = [section_frames([s["start_s"] for s in sec], nf, frame_rate) if sec else None
                      for sec, nf in zip(secs, self.num_frames)]
        lyrics = plain["lyrics"] if n else []
        bad = [self.ids[i] for i, sec in enumerate(secs) if sec and len((lyrics[i] or "").split(SEP)) != len(sec)]
        if bad:  # the crop takes lyrics section by section: they must line up
            raise ConfigError(f"the prepared items of {', '.join(bad[:5])} have lyrics that do not match their "
                              "sections; prepare the dataset again")
        self.notes: list[str] = []
        long = [i for i in range(n) if self.spans[i] is None and self.num_frames[i] > max_frames]
        untimed = [self.ids[i] for i in long]
        if long and all(self.num_frames[i] == max_frames + 1 for i in long) and not allow_random_crop:
            raise ConfigError(f"song(s) {', '.join(untimed[:5])} are one codec frame longer than the crop of "
                              f"{max_frames} frames: songs of exactly max_dur, prepared before prepare fitted them "
                              "to the model; prepare the dataset again (the encoded songs are reused from the cache)",
                              code="tr_one_frame_over", songs=", ".join(untimed[:5]), max_frames=max_frames)
        if untimed and not allow_random_crop:
            raise ConfigError(
                f"training.max_frames = {max_frames} ({max_frames / frame_rate:.1f} s) is shorter than "
                f"{len(untimed)} song(s) without section timing ({', '.join(untimed[:5])}"
                f"{', ...' if len(untimed) > 5 else ''}): a crop of them would keep the whole song's lyrics for a "
                f"part of its audio. Raise training.max_frames (0 = the model's max_dur), or {HOW_TO_ADD_TIMING}, "
                "then prepare again", code="tr_untimed_crop", max_frames=max_frames, secs=f"{max_frames / frame_rate:.1f}",
                n=len(untimed), songs=", ".join(untimed[:5]) + (", ..." if len(untimed) > 5 else ""))
        if untimed:
            self.notes.append(f"{len(untimed)} item(s) without section timing are cropped at random with all their "
                              "lyrics (allowed for the demo model only)")
        long_secs = sum(len(sections_longer_than(sp, max_frames)) for sp in self.spans if sp)
        if long_secs:
            self.notes.append(f"{long_secs} section(s) are longer than the crop of {max_frames} frames and are never "
                              "trained; raise training.max_frames to include them")
        for i, sp in enumerate(self.spans):
            if sp and self.num_frames[i] > max_frames and not any(b - a <= max_frames for a, b in sp):
                raise ConfigError(f"training.max_frames = {max_frames} is shorter than every section of "
                                  f"{self.ids[i]}; raise it or add section starts", code="tr_crop_no_section",
                                  max_frames=max_frames, song=self.ids[i])

    def __len__(self) -> int:
        return len(self.num_frames)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, epoch = key
        return self.item(i, epoch)

    def cropped_length(self, i: int) -> int:
        return min(self.num_frames[i], self.max_frames)

    def crop(self, i: int, epoch: int) -> tuple[int, int, bool, Optional[tuple[int, int]]]:
        """(start frame, length, reaches_end, (first, last) section or None) of item i in this epoch."""
        total = self.num_frames[i]
        sp = self.spans[i]
        if sp is None or total <= self.max_frames:
            start, length, reaches = crop_window(total, self.max_frames, self.seed, epoch, self.ids[i],
                                                 random_start=self.random_crop)
            return start, length, reaches and self.reaches[i], None
        c = crop_sections(sp, self.max_frames, self.reaches[i], derive_seed(self.seed, "crop", epoch, self.ids[i], i),
                          random_start=self.random_crop)
        return c.start_frame, c.num_frames, c.reaches_end, (c.first, c.last)

    def item(self, i: int, epoch: int) -> dict[str, Any]:
        row = self.split[int(i)]
        codes = torch.as_tensor(row["codes"]).long()
        start, length, reaches_end, run = self.crop(i, epoch)
        lyrics = row.get("lyrics")
        if run is not None:  # exactly the cropped sections' lyrics
            lyrics = SEP.join(lyrics.split(SEP)[run[0]:run[1] + 1])
        prompt = row.get("prompt")
        return {
            "codes": codes[:, start:start + length],
            "reaches_end": reaches_end,
            "prompt": None if prompt is None else torch.as_tensor(prompt).long(),
            "lyrics": lyrics,
            "description": row.get("description"),
        }



def song_sets(ds, max_frames: int, seed: int, allow_random_crop: bool, frame_rate: int
              ) -> tuple[SongSet, Optional[SongSet]]:
    """The train and validation `SongSet`s of a prepared DatasetDict, as training uses them (random crops for
    training, the first crop for validation); raises ConfigError where the crop rule refuses the data.
    One construction for the trainer (core.training.objective) and its check before launch (preflight)."""
    kw = dict(allow_random_crop=allow_random_crop, frame_rate=frame_rate)
    train = SongSet(ds["train"], max_frames, seed, random_crop=True, **kw)
    val = SongSet(ds["validation"], max_frames, seed, random_crop=False, **kw) if "validation" in ds else None
    return train, val


class BatchPlan(Sampler[list[tuple[int, int]]]):
    """This process's micro-batches, in training order, from micro-batch `start` to `stop`.

    Micro-batch m belongs to epoch m // batches_per_epoch; its songs are this rank's strided share
    of global batch m % batches_per_epoch of that epoch's plan. Yields `[(song, epoch), ...]`.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, bucket_size: int,
                 rank: int = 0, world: int = 1, start: int = 0, stop: Optional[int] = None):
        self.lengths = list(lengths)
        self.global_batch = batch_size * world
        self.seed, self.bucket_size, self.rank, self.world = seed, bucket_size, rank, world
        self.batches_per_epoch = len(self.plan(0))
        self.start, self.stop = start, stop

    def plan(self, epoch: int) -> list[list[int]]:
        return plan_epoch(self.lengths, self.global_batch, self.seed, epoch, self.bucket_size)

    def epoch_of(self, micro_index: int) -> int:
        return micro_index // self.batches_per_epoch

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an open-ended BatchPlan has no length")
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m, cached = self.start, (None, None)
        while self.stop is None or m < self.stop:
            epoch, pos = divmod(m, self.batches_per_epoch)
            if cached[0] != epoch:
                cached = (epoch, self.plan(epoch))
            yield [(i, epoch) for i in shard(cached[1][pos], self.rank, self.world)]
            m += 1


def batch_loader(songs: SongSet, plan: BatchPlan, prompt_frames: int, version: str,
                 num_workers: int = 0) -> DataLoader:
    """A DataLoader over `plan`'s micro-batches, collated for the model (tensors on the CPU)."""
    return DataLoader(songs, batch_sampler=plan, num_workers=num_workers,
                      collate_fn=partial(collate, prompt_frames=prompt_frames, version=version),
                      persistent_workers=False, prefetch_factor=2 if num_workers else None)
