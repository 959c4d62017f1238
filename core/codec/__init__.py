"""Audio <-> SongGeneration tokens: one protocol, several backends.

Every backend turns a song into three 25 Hz token streams `[mixed, vocal, bgm]` (values < 16384)
and renders vocal + bgm tokens back to audio. The data pipeline and the studio only see this
protocol, so they do not care which backend runs.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch


@runtime_checkable
class AudioCodec(Protocol):
    id: str            # goes into the cache hash, e.g. "songgen-official-1" or "demo-1"
    frame_rate: int    # 25
    sample_rate: int   # rate of encode's input and decode's output
    is_demo: bool      # True for backends that are not SongGeneration's own (labelled in the UI)

    def encode(self, mix: torch.Tensor, vocal: Optional[torch.Tensor] = None,
               bgm: Optional[torch.Tensor] = None) -> torch.LongTensor:
        """float [2, N] at `sample_rate` (stems optional) -> long [3, T]."""

    def decode(self, tokens: torch.Tensor, prompt: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:
        """long [3, T] (or [2, T] vocal/bgm) -> (float [2, N], sample_rate)."""


def get_codec(cfg) -> AudioCodec:
    """The codec a config asks for (`data.codec`): "demo" (weight-free, labelled demo) or "official"
    (SongGeneration's tokenizers, `OfficialCodec.from_config(cfg)`)."""
    kind = cfg.data.codec
    if kind == "demo":
        from core.codec.demo import DemoCodec
        return DemoCodec(seed=cfg.data.seed)
    if kind == "official":
        from core.codec.official import OfficialCodec
        return OfficialCodec.from_config(cfg)
    raise ValueError(f"data.codec = {kind!r} is not known; use 'demo' or 'official'")


def __getattr__(name: str):
    # Backends import lazily: the official one pulls in large modules the demo never needs.
    if name == "OfficialCodec":
        from core.codec.official import OfficialCodec
        return OfficialCodec
    if name == "DemoCodec":
        from core.codec.demo import DemoCodec
        return DemoCodec
    raise AttributeError(name)
