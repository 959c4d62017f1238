"""The two official tokenizers: clip-level peak normalisation, the 40-s windowing, per-window codes.

Windows are processed one at a time, so memory holds one window's activations whatever the song length.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch

from core.codec.official.encoder import MusicFMEncoder
from core.codec.official.quantizer import FactorizedVQ

SR = 48000
WINDOW_S = 40
TOKEN_HZ = 25
PEAK = 0.8

Progress = Optional[Callable[[str, int, int], None]]


def peak_normalise(wav: torch.Tensor) -> torch.Tensor:
    """Scale the whole clip so its peak over both channels is at most 0.8 (louder clips only)."""
    m = wav.abs().max()
    return wav * (PEAK / m) if m > PEAK else wav


def n_tokens(n_samples: int) -> int:
    return int(n_samples / SR * TOKEN_HZ) + 1


def iter_windows(wav: torch.Tensor):
    """Yield the [2, L] windows of a [2, N] clip in the reference layout: the clip is tiled by doubling until it
    is one window long, and the last window is padded with the (tiled) clip's own beginning."""
    L = WINDOW_S * SR
    a = wav
    while a.shape[-1] < L:
        a = torch.cat([a, a], dim=-1)
    n_win = a.shape[-1] // L + 1
    n = a.shape[-1]
    for w in range(n_win):
        s = w * L
        if s + L <= n:
            yield w, n_win, a[:, s:s + L]
        else:
            # concat(a, a)[:, s:s+L] without materialising the doubled clip
            yield w, n_win, torch.cat([a[:, s:], a[:, : s + L - n]], dim=-1)


class Tokenizer:
    """One MusicFM copy with one or two VQ heads, each reading its own hidden-state index."""

    def __init__(self, encoder: MusicFMEncoder, heads: Mapping[str, tuple[int, FactorizedVQ]]):
        self.encoder = encoder
        self.heads = dict(heads)

    @torch.no_grad()
    def window_codes(self, streams: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{name: [B, 2, L] window audio} -> {name: [B, T] codes}; streams sharing audio share one pass."""
        out = {}
        by_audio: dict[int, list[str]] = {}
        for name, wav in streams.items():
            by_audio.setdefault(id(wav), []).append(name)
        for names in by_audio.values():
            wav = streams[names[0]]
            dev = next(self.encoder.parameters()).device
            hs = self.encoder.hidden_states(wav.to(dev), [self.heads[n][0] for n in names])
            for n in names:
                layer, vq = self.heads[n]
                out[n] = vq.encode(hs[layer].float()).cpu()
        return out

    @torch.no_grad()
    def encode(self, streams: Mapping[str, torch.Tensor], progress: Progress = None) -> dict[str, torch.Tensor]:
        """{name: [2, N] float at 48 kHz} -> {name: long [T]}, T = int(N/48000*25)+1.
        Each stream is peak-normalised on its own; all are cut to the shortest length first."""
        streams = {k: peak_normalise(v.float()) for k, v in streams.items()}
        n = min(v.shape[-1] for v in streams.values())
        streams = {k: v[:, :n] for k, v in streams.items()}
        t_out = n_tokens(n)
        gens = {k: iter_windows(v) for k, v in streams.items()}
        codes: dict[str, list[torch.Tensor]] = {k: [] for k in streams}
        while True:
            batch = {}
            for k, g in gens.items():
                nxt = next(g, None)
                if nxt is None:
                    break
                w, n_win, win = nxt
                batch[k] = win[None]
            if len(batch) < len(gens):
                break
            for k, c in self.window_codes(batch).items():
                codes[k].append(c[0])
            # windows are independent, so windows past the last kept token (the reference's wasted tail
            # window) are skipped
            needed = min(n_win, -(-t_out // (WINDOW_S * TOKEN_HZ)))
            if progress is not None:
                progress("encode", w + 1, needed)
            if w + 1 >= needed:
                break
        return {k: torch.cat(v)[:t_out].long() for k, v in codes.items()}
