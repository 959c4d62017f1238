"""Audio in: read (soundfile), resample (torchaudio), channel layout, and per-song quality checks.

Every finding is an `AudioFinding` with a level ("error": the song is left out, "warning": it is
kept) and a plain-language message a user can act on. Reading never changes the user's file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

CODEC_SAMPLE_RATE = 48000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".w64", ".rf64", ".caf")

# QC thresholds (why these values: see each check below).
MIN_SAMPLE_RATE_ERROR = 16000      # below this the model would learn telephone-band sound
MIN_SAMPLE_RATE_WARN = 44100       # below CD rate high frequencies are missing after upsampling
CLIP_LEVEL = 0.999
CLIP_FRACTION_WARN = 0.001         # 0.1 % of samples at full scale is audible distortion
SILENCE_DBFS = -60.0
EDGE_SILENCE_WARN_S = 5.0          # leading/trailing silence longer than this wastes training frames
QUIET_PEAK_DBFS = -30.0


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and what to do."""


@dataclass
class AudioFinding:
    level: str  # "error" | "warning"
    code: str   # short machine id, e.g. "too_long"
    message: str

    def to_dict(self) -> dict:
        return {"level": self.level, "code": self.code, "message": self.message}


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str = ""
    subtype: str = ""

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


@dataclass
class QCResult:
    info: Optional[AudioInfo]
    findings: list[AudioFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def errors(self) -> list[AudioFinding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[AudioFinding]:
        return [f for f in self.findings if f.level == "warning"]


def format_duration(seconds: float) -> str:
    """600 -> '10m00s', 12.34 -> '12.3 s' (how the reports state a length)."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f} s"


def probe(path: str | Path) -> AudioInfo:
    """Header only (cheap even for long files). Raises AudioError when libsndfile cannot open it."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise AudioError(f"{p.name}: the file is empty (0 bytes); re-export the song")
    try:
        i = sf.info(str(p))
    except Exception as err:  # libsndfile raises RuntimeError/LibsndfileError with its own text
        raise AudioError(f"{p.name}: cannot be read as audio ({_short(err)}); "
                         "export it as WAV or FLAC and try again") from None
    return AudioInfo(str(p), int(i.samplerate), int(i.channels), int(i.frames), i.format, i.subtype)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text[:160]


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """float32 [channels, N] in -1..1 and the file's sample rate (soundfile, never torchaudio.load)."""
    p = Path(path)
    probe(p)  # clear messages for missing / empty / unreadable files
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{p.name}: cannot be decoded ({_short(err)}); export it as WAV or FLAC and try again") from None
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def to_stereo(wav: torch.Tensor) -> torch.Tensor:
    """[C, N] -> [2, N]: mono is duplicated (what the official tokenizers expect), >2 channels keep the front pair."""
    if wav.dim() == 1:
        wav = wav[None]
    if wav.shape[0] == 1:
        return wav.expand(2, -1).clone()
    return wav[:2].contiguous()


def resample(wav: torch.Tensor, sr: int, target_sr: int = CODEC_SAMPLE_RATE) -> torch.Tensor:
    if sr == target_sr:
        return wav
    return AF.resample(wav, sr, target_sr)


def to_codec_layout(wav: torch.Tensor, sr: int, target_sr: int = CODEC_SAMPLE_RATE) -> torch.Tensor:
    """Any file's samples -> float32 stereo [2, N] at the codec's rate."""
    return resample(to_stereo(wav.float()), sr, target_sr)


def load_for_codec(path: str | Path, target_sr: int = CODEC_SAMPLE_RATE) -> torch.Tensor:
    wav, sr = read_audio(path)
    return to_codec_layout(wav, sr, target_sr)


def _frame_db(mono: np.ndarray, sr: int, frame_s: float = 0.05) -> np.ndarray:
    hop = max(1, int(sr * frame_s))
    n = len(mono) // hop
    if n == 0:
        return np.array([20 * math.log10(float(np.sqrt(np.mean(mono ** 2))) + 1e-12)])
    frames = mono[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(rms + 1e-12)


def check_header(info: AudioInfo, *, max_dur: Optional[float], min_dur: float) -> list[AudioFinding]:
    """Checks that need only the header: length and sample rate. `max_dur` None: no upper length
    limit here (songs with section timing are split by core.timing.resolve, which owns that check)."""
    out: list[AudioFinding] = []
    name = Path(info.path).name
    if info.frames == 0:
        out.append(AudioFinding("error", "empty", f"{name}: the file holds no audio samples; re-export the song"))
        return out
    d = info.duration_s
    if max_dur is not None and d > max_dur:
        out.append(AudioFinding("error", "too_long",
                                f"{name} is {format_duration(d)} long; the target model handles at most {format_duration(max_dur)} "
                                f"({max_dur:g} s). Trim the song or pick a model with a longer limit."))
    if d < min_dur:
        out.append(AudioFinding("error", "too_short",
                                f"{name} is only {d:.1f} s long; songs need at least {min_dur:g} s (data.min_duration_s)."))
    if info.sample_rate < MIN_SAMPLE_RATE_ERROR:
        out.append(AudioFinding("error", "low_sample_rate",
                                f"{name} is sampled at {info.sample_rate} Hz; below {MIN_SAMPLE_RATE_ERROR} Hz the model "
                                "would learn muffled, telephone-like sound. Use the original 44.1/48 kHz file."))
    elif info.sample_rate < MIN_SAMPLE_RATE_WARN:
        out.append(AudioFinding("warning", "low_sample_rate",
                                f"{name} is sampled at {info.sample_rate} Hz and is upsampled to 48 kHz; the highest "
                                "frequencies are missing. A 44.1/48 kHz original sounds better."))
    if info.channels == 1:
        out.append(AudioFinding("warning", "mono", f"{name} is mono; both stereo channels get the same signal."))
    elif info.channels > 2:
        out.append(AudioFinding("warning", "multichannel",
                                f"{name} has {info.channels} channels; only the first two (front left/right) are used."))
    return out


def check_signal(wav: torch.Tensor, sr: int, name: str) -> list[AudioFinding]:
    """Checks on the samples: silence, clipping, edge silence, very low level."""
    out: list[AudioFinding] = []
    x = wav.numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.size == 0:
        return [AudioFinding("error", "empty", f"{name}: the file holds no audio samples; re-export the song")]
    peak = float(np.max(np.abs(x)))
    if not np.isfinite(peak):
        return [AudioFinding("error", "invalid_samples", f"{name}: contains NaN or infinite samples; re-export the song")]
    peak_db = 20 * math.log10(peak + 1e-12)
    if peak_db < SILENCE_DBFS:
        return [AudioFinding("error", "silent", f"{name} is silent (peak {peak_db:.0f} dBFS); check the export")]
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION_WARN:
        out.append(AudioFinding("warning", "clipping",
                                f"{name}: {clipped * 100:.2f}% of samples are at full scale (clipping); the model "
                                "may learn the distortion. Use an unclipped master if you have one."))
    if peak_db < QUIET_PEAK_DBFS:
        out.append(AudioFinding("warning", "quiet", f"{name} is very quiet (peak {peak_db:.0f} dBFS); it is used as is."))
    mono = x.mean(axis=0)
    db = _frame_db(mono, sr)
    loud = np.nonzero(db > SILENCE_DBFS)[0]
    if len(loud):
        frame_s = 0.05
        lead = loud[0] * frame_s
        trail = (len(db) - 1 - loud[-1]) * frame_s
        if lead > EDGE_SILENCE_WARN_S:
            out.append(AudioFinding("warning", "leading_silence",
                                    f"{name} starts with {lead:.1f} s of silence; trimming it gives the model more music per step."))
        if trail > EDGE_SILENCE_WARN_S:
            out.append(AudioFinding("warning", "trailing_silence",
                                    f"{name} ends with {trail:.1f} s of silence; trimming it gives the model more music per step."))
    return out


def qc_file(path: str | Path, *, max_dur: Optional[float], min_dur: float = 5.0,
            target_sr: int = CODEC_SAMPLE_RATE) -> tuple[QCResult, Optional[torch.Tensor]]:
    """Probe, check the header, read and check the samples. Returns the QC result and, when usable,
    the audio as float32 stereo [2, N] at `target_sr` (None when the song has an error)."""
    p = Path(path)
    try:
        info = probe(p)
    except AudioError as err:
        code = "empty" if p.is_file() and p.stat().st_size == 0 else ("missing" if not p.is_file() else "unreadable")
        return QCResult(None, [AudioFinding("error", code, str(err))]), None
    res = QCResult(info, check_header(info, max_dur=max_dur, min_dur=min_dur))
    if not res.ok:  # no need to decode a file we already reject (e.g. 10 minutes long)
        return res, None
    try:
        wav, sr = read_audio(p)
    except AudioError as err:
        res.findings.append(AudioFinding("error", "unreadable", str(err)))
        return res, None
    res.findings.extend(check_signal(wav, sr, p.name))
    if not res.ok:
        return res, None
    return res, to_codec_layout(wav, sr, target_sr)
