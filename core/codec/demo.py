"""DEMO codec: a small, weight-free stand-in for SongGeneration's tokenizers.

It is NOT SongGeneration's codec and is labelled as a demo wherever it shows up (`is_demo`). It
exists so the whole studio (prepare, train, generate, listen) runs on any CPU with no downloads,
and it really carries the audio's content:

- encode: per 25 Hz frame, the log-mel spectral envelope (48 mel bands, 30 Hz..16 kHz) is
  reduced to its mean level and three cepstral (DCT) shape coefficients; these four numbers are
  scalar-quantized and packed into one 14-bit code (level 5 bits, c1 4, c2 3, c3 2 bits), so every
  code is < 16384 and neighbouring codes mean neighbouring sounds (a structured codebook: no
  training, fully deterministic).
- decode: vocal and bgm codes are unpacked into envelopes, interpolated onto the STFT bins and
  rendered as shaped noise (deterministic phases; vocal centred, bgm decorrelated left/right).
  The output follows the input's loudness and timbre over time; it has no pitch (the codebook
  has no room for it), which is why it sounds like a whispered sketch of the song.

`demo_split` is the matching demo separation (mid/side + vocal-band emphasis), used only when no
Demucs checkpoint is available and the demo codec runs.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 48000
from core.tokens import EMPTY, EOS, FRAME_RATE

HOP = SAMPLE_RATE // FRAME_RATE        # 1920 samples per token
N_FFT = 4096
WIN = 2 * HOP
N_MELS = 48
F_MIN, F_MAX = 30.0, 16000.0

# Quantizer grid: (bits, low, high) for level (dB) and the three DCT coefficients (dB units).
_LEVEL = (5, -100.0, -20.0)
# Ranges cover full mixes and (band-limited) vocal/bgm stems; measured on real songs.
_COEFS = ((4, -80.0, 180.0), (3, -90.0, 90.0), (2, -30.0, 90.0))
_BITS = [_LEVEL[0]] + [b for b, _, _ in _COEFS]
assert sum(_BITS) == 14


def _q(x: torch.Tensor, bits: int, lo: float, hi: float) -> torch.Tensor:
    n = (1 << bits) - 1
    return torch.round((x.clamp(lo, hi) - lo) / (hi - lo) * n).long()


def _dq(q: torch.Tensor, bits: int, lo: float, hi: float) -> torch.Tensor:
    n = (1 << bits) - 1
    return lo + q.float() / n * (hi - lo)


class DemoCodec:
    """Weight-free demo codec (see module doc). Implements core.codec.AudioCodec."""

    id = "demo-1"
    version = "1"
    name = "Demo codec (not SongGeneration's tokenizer)"
    frame_rate = FRAME_RATE
    sample_rate = SAMPLE_RATE
    is_demo = True

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._window = torch.hann_window(WIN)
        self._fb = AF.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk")
        self._norm = float(self._window.sum()) ** 2
        n = torch.arange(N_MELS, dtype=torch.float32)
        k = torch.arange(1, len(_COEFS) + 1, dtype=torch.float32)[:, None]
        self._dct = torch.cos(math.pi * k * (n + 0.5) / N_MELS) * math.sqrt(2.0 / N_MELS)  # [3, N_MELS]
        mel_pts = np.linspace(2595 * np.log10(1 + F_MIN / 700), 2595 * np.log10(1 + F_MAX / 700), N_MELS + 2)[1:-1]
        self._centers = 700 * (10 ** (mel_pts / 2595) - 1)           # Hz of each mel band's peak
        self._bin_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)

    def __repr__(self) -> str:
        return f"DemoCodec(id={self.id!r}, demo=True)"

    # ---- analysis ---------------------------------------------------------------------
    @staticmethod
    def num_frames(num_samples: int) -> int:
        return num_samples // HOP + 1

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """float [C, N] or [N] at 48 kHz -> log-mel dB [N_MELS, T] of the channel mean."""
        x = wav.float()
        if x.dim() == 2:
            x = x.mean(0)
        spec = torch.stft(x, N_FFT, HOP, WIN, self._window, center=True, return_complex=True)
        power = _power(spec) / self._norm                             # [F, T]
        mel = self._fb.T @ power                                      # [N_MELS, T]
        return 10 * torch.log10(mel + 1e-12)

    def _encode_stream(self, wav: torch.Tensor) -> torch.Tensor:
        db = self.log_mel(wav)
        level = db.mean(0)
        coefs = self._dct @ (db - level)                              # [3, T]
        code = _q(level, *_LEVEL)
        for (bits, lo, hi), c in zip(_COEFS, coefs):
            code = (code << bits) | _q(c, bits, lo, hi)
        return code

    def encode(self, mix: torch.Tensor, vocal: Optional[torch.Tensor] = None,
               bgm: Optional[torch.Tensor] = None) -> torch.LongTensor:
        """float [2, N] at 48 kHz (stems optional; a demo split is used without them) -> long [3, T]."""
        mix = _as_2d(mix)
        if vocal is None or bgm is None:
            vocal, bgm = demo_split(mix, SAMPLE_RATE)
        vocal, bgm = _as_2d(vocal), _as_2d(bgm)
        n = min(mix.shape[-1], vocal.shape[-1], bgm.shape[-1])
        t = self.num_frames(mix.shape[-1])
        streams = [self._encode_stream(mix)]
        for stem in (vocal[..., :n], bgm[..., :n]):
            c = self._encode_stream(stem)
            if c.shape[0] < t:  # stems a little shorter than the mix: hold the last frame
                c = torch.cat([c, c[-1:].expand(t - c.shape[0])])
            streams.append(c[:t])
        return torch.stack(streams).long()

    # ---- synthesis --------------------------------------------------------------------
    def _unpack(self, codes: torch.Tensor) -> torch.Tensor:
        """long [T] -> log-mel dB [N_MELS, T]; special ids (>= 16384) become silence."""
        codes = codes.long()
        silent = codes >= EOS
        c = codes.clamp(0, 16383)
        coefs = []
        for bits, lo, hi in reversed(_COEFS):
            coefs.append(_dq(c & ((1 << bits) - 1), bits, lo, hi))
            c = c >> bits
        coefs = torch.stack(coefs[::-1]) * (~silent).float()          # [3, T]; special ids: flat shape
        level = _dq(c, *_LEVEL)
        level = torch.where(silent, torch.full_like(level, -140.0), level)
        return level[None] + self._dct.T @ coefs

    def _render(self, db: torch.Tensor, seed: int) -> torch.Tensor:
        """log-mel dB [N_MELS, T] -> mono float [N] of shaped noise."""
        t = db.shape[1]
        dbn = db.numpy()
        # Mel band energies are sums over ~(band width) bins: divide to get a per-bin power.
        width = self._fb.sum(0).clamp_min(1e-3).numpy()               # bins per band
        per_bin = dbn - 10 * np.log10(width)[:, None]
        lin = np.stack([np.interp(self._bin_hz, self._centers, per_bin[:, i], left=-140.0, right=-140.0)
                        for i in range(t)], axis=1)
        mag = torch.from_numpy(np.sqrt(10 ** (lin / 10) * self._norm)).float()
        g = torch.Generator().manual_seed(seed)
        phase = torch.rand(mag.shape, generator=g) * (2 * math.pi)
        spec = torch.polar(mag, phase)
        # The window pair (analysis hann, WIN = 2*HOP) overlap-adds to a constant; istft handles it.
        return torch.istft(spec, N_FFT, HOP, WIN, self._window, center=True, length=(t - 1) * HOP)

    def decode(self, tokens: torch.Tensor, prompt: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:
        """long [3, T] (mixed, vocal, bgm) or [2, T] (vocal, bgm) -> (float [2, N], 48000).

        Like the official decoder only vocal + bgm are rendered; `prompt` is accepted for the
        protocol and not used (the demo has no in-context conditioning)."""
        tokens = torch.as_tensor(tokens)
        if tokens.dim() == 3:
            tokens = tokens[0]
        if tokens.shape[0] == 3:
            tokens = tokens[1:]
        if tokens.shape[0] != 2:
            raise ValueError(f"DemoCodec.decode expects tokens [3, T] or [2, T], got {tuple(tokens.shape)}")
        if tokens.shape[1] < 2:
            return torch.zeros(2, 0), SAMPLE_RATE
        vocal = self._render(self._unpack(tokens[0]), self.seed)
        bgm_l = self._render(self._unpack(tokens[1]), self.seed + 1)
        bgm_r = self._render(self._unpack(tokens[1]), self.seed + 2)
        out = torch.stack([vocal + bgm_l, vocal + bgm_r])
        peak = float(out.abs().max())
        if peak > 0.99:
            out = out * (0.99 / peak)
        return out, SAMPLE_RATE


def _power(spec: torch.Tensor) -> torch.Tensor:
    # |z|^2 without the square root complex abs() computes (the hot spot of encode).
    return torch.view_as_real(spec).pow(2).sum(-1)


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x).float()
    if x.dim() == 3:
        x = x[0]
    if x.dim() == 1:
        x = x[None].expand(2, -1)
    return x


DEMO_SPLIT_ID = "demo-split-1"


def demo_split(mix: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """DEMO separation by plain signal processing (not Demucs): vocals sit mostly in the centre
    (mid) and in the 150 Hz..6 kHz band, so the vocal estimate is the mid channel weighted by
    centre dominance and a smooth vocal-band curve; bgm = mix - vocal. Returns ([2, N], [2, N])."""
    mix = _as_2d(mix)
    n_fft = 2048
    hop = n_fft // 2  # hann at 50 % overlap sums to a constant: exact resynthesis
    win = torch.hann_window(n_fft)
    mid = 0.5 * (mix[0] + mix[1])
    side = 0.5 * (mix[0] - mix[1])
    M = torch.stft(mid, n_fft, hop, n_fft, win, center=True, return_complex=True)
    S = torch.stft(side, n_fft, hop, n_fft, win, center=True, return_complex=True)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)[:, None]
    band = torch.sigmoid((freqs - 150) / 40) * torch.sigmoid((6000 - freqs) / 800)
    pm, ps = _power(M), _power(S)
    centre = pm / (pm + ps + 1e-10)
    mask = band * centre
    vocal_mid = torch.istft(M * mask, n_fft, hop, n_fft, win, center=True, length=mix.shape[-1])
    vocal = torch.stack([vocal_mid, vocal_mid])
    return vocal, mix - vocal
