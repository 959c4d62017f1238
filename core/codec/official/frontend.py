"""MusicFM's audio front end: 48 kHz stereo window -> 24 kHz mono -> normalised dB mel spectrogram."""
from __future__ import annotations

import torch
import torchaudio.functional as AF

SAMPLE_RATE = 48000
MODEL_RATE = 24000
N_FFT = 2048
HOP = 240
N_MELS = 128
# MusicFM's fixed dataset statistics for the 2048-point mel ("melspec_2048"); not stored in the files.
MEL_MEAN = 6.768444971712967
MEL_STD = 18.417922652295623


def to_mono_24k(wav: torch.Tensor) -> torch.Tensor:
    """[B, 2, N] at 48 kHz -> [B, N'] at 24 kHz, N' a multiple of 960 (one token = 960 samples at 24 kHz)."""
    x = (wav[:, 0] + wav[:, 1]) / 2
    # torchaudio's default windowed-sinc resampler is what the reference uses; other resamplers flip near-tie codes
    x = AF.resample(x, SAMPLE_RATE, MODEL_RATE)
    return x[..., : (x.shape[-1] // 960) * 960]


class MelFrontEnd(torch.nn.Module):
    """Power STFT -> HTK mel (filterbank and window taken from the weight file when present) -> dB -> normalise."""

    def __init__(self, fb: torch.Tensor | None = None, window: torch.Tensor | None = None):
        super().__init__()
        if fb is None:
            fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, MODEL_RATE / 2, N_MELS, MODEL_RATE, norm=None, mel_scale="htk")
        if window is None:
            window = torch.hann_window(N_FFT)
        self.register_buffer("fb", fb.float().clone(), persistent=False)
        self.register_buffer("window", window.float().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N] at 24 kHz -> [B, 128, N/240] normalised log-mel (last STFT frame dropped)."""
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window, center=True,
                          pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        power = spec.abs().pow(2.0)
        mel = torch.matmul(power.transpose(-1, -2), self.fb).transpose(-1, -2)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return (db[..., :-1] - MEL_MEAN) / MEL_STD
