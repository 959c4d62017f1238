"""Can these data and settings train? The trainer's own data check, run before launch.

`check_training` builds the train and validation `SongSet`s with the trainer's own function
(core.training.dataset.song_sets, the same crop length and crop permission), so a refusal here is the refusal the launched run would die
with, and a pass means the run gets past its data step. Where the crop is the problem it names the
value that would work: `CropFit.needed` (the smallest training.max_frames with which every item has a
section that fits) and `CropFit.all_sections` (the smallest with which every section is trained).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from core.config import ConfigError, StudioConfig
from core.training.dataset import SongSet, find_dataset_dir, load_dataset_dict, song_sets


def effective_max_frames(requested: Optional[int], model_max: int) -> int:
    """The crop the trainer uses: training.max_frames, never more than the model's own max_frames
    (None / 0: the model's)."""
    return min(requested or model_max, model_max)


@dataclass
class CropFit:
    """What crop the prepared items allow (frames at the model's rate)."""
    needed: int          # smallest training.max_frames with which the trainer accepts every item
    all_sections: int    # smallest with which no section is left out of training
    model_max: int
    frame_rate: int = 25

    def fit(self, wanted: Optional[int]) -> Optional[int]:
        """A preset's crop raised to one that trains every section of these data (None: the model's)."""
        if not wanted:
            return wanted
        return min(self.model_max, max(int(wanted), self.all_sections))


def crop_fit(songsets: list[SongSet], allow_random_crop: bool, model_max: int, frame_rate: int = 25) -> CropFit:
    """The `CropFit` of these songs (each `SongSet` built with an unbounded crop, so it refuses nothing)."""
    needed, longest = 1, 1
    for songs in songsets:
        for nf, spans in zip(songs.num_frames, songs.spans):
            if spans is None:  # untimed: a random window is allowed on the demo model only
                floor = 1 if allow_random_crop else nf
                needed, longest = max(needed, floor), max(longest, floor)
                continue
            lengths = [b - a for a, b in spans]
            needed = max(needed, min(nf, min(lengths)))
            longest = max(longest, min(nf, max(lengths)))
    return CropFit(min(needed, model_max), min(longest, model_max), model_max, frame_rate)


@dataclass
class TrainCheck:
    ok: bool
    dataset_dir: Optional[str]
    max_frames: int                          # the crop the run would use
    fit: Optional[CropFit] = None
    error: str = ""                          # the trainer's own refusal, as it would log it
    cause: Optional[Exception] = None        # ... and the error itself (its code words it in other languages)
    notes: list[str] = field(default_factory=list)
    train_items: int = 0
    validation_items: int = 0
    frame_rate: int = 25

    @property
    def crop_too_short(self) -> bool:
        return not self.ok and self.fit is not None and self.max_frames < self.fit.needed

    @property
    def message(self) -> str:
        """The refusal, with the value that would work when the crop is the problem."""
        if not self.crop_too_short:
            return self.error
        f, r = self.fit, self.frame_rate
        return (f"{self.error}. training.max_frames = {f.needed} ({f.needed / r:.1f} s) is the smallest value "
                f"that trains every item; {f.all_sections} ({f.all_sections / r:.1f} s) trains every section")


def check_training(cfg: StudioConfig) -> TrainCheck:
    """The trainer's data step for `cfg` without a model or a run: (ok, the crop, what fits, the refusal).
    Problems with the config itself or a missing dataset raise ConfigError / DataError, as the trainer would."""
    from core.data import model_limits

    tc = cfg.training
    limits = model_limits(cfg)
    max_frames = effective_max_frames(tc.max_frames, limits.max_frames)
    if tc.objective != "sft":  # preference pairs are checked by their own loader (core.preference)
        return TrainCheck(True, None, max_frames)
    dataset_dir = find_dataset_dir(cfg)
    ds = load_dataset_dict(dataset_dir)
    # every item as it is (a crop no item exceeds refuses nothing), for the crop that would fit
    unbounded = [s for s in song_sets(ds, 1 << 30, tc.seed, limits.is_demo, limits.frame_rate) if s is not None]
    fit = crop_fit(unbounded, limits.is_demo, limits.max_frames, limits.frame_rate)
    out = TrainCheck(True, str(dataset_dir), max_frames, fit, train_items=len(unbounded[0]),
                     validation_items=sum(len(s) for s in unbounded[1:]), frame_rate=limits.frame_rate)
    try:  # exactly the trainer's construction (core.training.objective.SFTObjective)
        train, _ = song_sets(ds, max_frames, tc.seed, limits.is_demo, limits.frame_rate)
    except ConfigError as err:
        out.ok, out.error, out.cause = False, str(err), err
        return out
    out.notes = list(train.notes)
    if len(train) == 0:
        out.ok, out.error = False, f"{dataset_dir}: the train split is empty"
    return out
