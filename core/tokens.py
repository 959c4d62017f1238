"""Special token ids and time units shared by the model, the data path and the trainer.

The ids are fixed by SongGeneration's codebooks (16384 codes per stream); the frame rate is a
property of the checkpoint (`OfficialConfig.frame_rate`), so code that has a config reads it from
there and only falls back to `FRAME_RATE` when no model is at hand (e.g. reading a manifest).
"""
from __future__ import annotations

CODE_SIZE = 16384   # codes per stream (ids 0..16383)
EOS = 16384         # end of song: a normal training target
EMPTY = 16385       # "special": delay slots, the start step, padding after EOS, absent prompts
FRAME_RATE = 25     # Hz of every official codec; the checkpoint's own value wins where known
