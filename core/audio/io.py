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

from core.errors import StudioError

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
# The longest file any check or decode reads (a timed song longer than the model's max_dur is split, so
# this is not max_dur): it bounds the memory of one decode (~460 MB float32 stereo at 48 kHz) whatever
# the header says -- a small compressed upload can claim, or hold, hours of audio.
MAX_AUDIO_S = 20 * 60
SCAN_BLOCK_S = 10.0  # the signal checks stream the file in blocks of this length
FRAME_S = 0.05       # level frames of the edge-silence check


class AudioError(StudioError, ValueError):
    """Audio that cannot be used; the message names the file and what to do."""
    code = "audio"


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


def probe(path: str | Path, name: Optional[str] = None) -> AudioInfo:
    """Header only (cheap even for long files). Raises AudioError when libsndfile cannot open it; `name`: the
    file as the user knows it (default: its own name)."""
    p = Path(path)
    name = name or p.name
    if not p.is_file():
        raise AudioError(f"{p}: file not found", code="audio_missing", path=str(p))
    if p.stat().st_size == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes); re-export the song", code="audio_empty", name=name)
    try:
        i = sf.info(str(p))
    except Exception as err:  # libsndfile raises RuntimeError/LibsndfileError with its own text
        why = _short(err)
        raise AudioError(f"{name}: cannot be read as audio ({why}); export it as WAV or FLAC and try again",
                         code="audio_unreadable", name=name, why=why) from None
    return AudioInfo(str(p), int(i.samplerate), int(i.channels), int(i.frames), i.format, i.subtype)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text[:160]


def _too_long(name: str, what: str) -> str:
    return (f"{name} {what}, longer than the {format_duration(MAX_AUDIO_S)} any song may last here; trim it "
            "(or split it into songs) and add it again")


def _too_long_error(name: str, duration_s: Optional[float] = None) -> AudioError:
    """The refusal of a file over MAX_AUDIO_S: by its header's length, or (None) by what it really holds."""
    limit = format_duration(MAX_AUDIO_S)
    if duration_s is None:
        return AudioError(_too_long(name, "holds more audio than its header says"), code="audio_over_header",
                          name=name, limit=limit)
    length = format_duration(duration_s)
    return AudioError(_too_long(name, f"is {length} long"), code="audio_too_long", name=name, length=length,
                      limit=limit)


def _undecodable(name: str, err: BaseException) -> AudioError:
    why = _short(err)
    return AudioError(f"{name}: cannot be decoded ({why}); export it as WAV or FLAC and try again",
                      code="audio_undecodable", name=name, why=why)


def read_audio(path: str | Path, max_seconds: Optional[float] = None,
               name: Optional[str] = None) -> tuple[torch.Tensor, int]:
    """float32 [channels, N] in -1..1 and the file's sample rate (soundfile, never torchaudio.load).
    At most `max_seconds` are decoded, whatever the header claims: a longer stream is an AudioError."""
    p = Path(path)
    name = name or p.name
    info = probe(p, name)  # clear messages for missing / empty / unreadable files
    cap = int((MAX_AUDIO_S if max_seconds is None else max_seconds) * info.sample_rate)
    if info.frames > cap:
        raise _too_long_error(name, info.duration_s)
    try:
        data, sr = sf.read(str(p), frames=cap + 1, dtype="float32", always_2d=True)
    except Exception as err:
        raise _undecodable(name, err) from None
    if len(data) > cap:  # the header understated the length
        raise _too_long_error(name)
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


@dataclass
class SignalStats:
    """What the signal checks need, accumulated block by block so a file is never held whole."""
    sr: int
    peak: float = 0.0
    clipped: int = 0
    values: int = 0
    frame_db: list = field(default_factory=list)  # one array per block, FRAME_S frames
    tail: Optional[np.ndarray] = None              # the last block's samples past its last whole frame

    def add(self, block: np.ndarray) -> None:
        """`block`: [C, N] float samples; N a multiple of the frame hop except in the last block."""
        if block.size == 0:
            return
        mag = np.abs(block)
        self.peak = max(self.peak, float(np.max(mag)))
        self.clipped += int(np.count_nonzero(mag >= CLIP_LEVEL))
        self.values += block.size
        mono = block.mean(axis=0, dtype=np.float64)
        hop = max(1, int(self.sr * FRAME_S))
        n = len(mono) // hop
        self.frame_db.append(20 * np.log10(np.sqrt(np.mean(mono[: n * hop].reshape(n, hop) ** 2, axis=1)) + 1e-12))
        self.tail = mono[n * hop:]

    def db(self) -> np.ndarray:
        frames = np.concatenate(self.frame_db) if self.frame_db else np.zeros(0)
        if len(frames) == 0 and self.tail is not None and len(self.tail):  # shorter than one frame
            return np.array([20 * math.log10(float(np.sqrt(np.mean(self.tail ** 2))) + 1e-12)])
        return frames


def check_header(info: AudioInfo, *, max_dur: Optional[float], min_dur: float,
                 name: Optional[str] = None) -> list[AudioFinding]:
    """Checks that need only the header: length and sample rate. `max_dur` None: no upper length
    limit here (songs with section timing are split by core.timing.resolve, which owns that check).
    `name`: the file as the user knows it (default: its own name)."""
    out: list[AudioFinding] = []
    name = name or Path(info.path).name
    if info.frames == 0:
        out.append(AudioFinding("error", "empty", f"{name}: the file holds no audio samples; re-export the song"))
        return out
    d = info.duration_s
    if d > MAX_AUDIO_S and (max_dur is None or max_dur >= MAX_AUDIO_S):
        out.append(AudioFinding("error", "too_long", _too_long(name, f"is {format_duration(d)} long")))
    elif max_dur is not None and d > max_dur:
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
    stats = SignalStats(int(sr))
    stats.add(wav.numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav))
    return signal_findings(stats, name)


def scan_signal(path: str | Path, max_seconds: Optional[float] = None,
                name: Optional[str] = None) -> tuple[list[AudioFinding], float]:
    """The signal checks streamed over the file, SCAN_BLOCK_S at a time (memory: one block), reading at
    most `max_seconds` -> (findings, seconds read). Raises AudioError when it cannot be decoded."""
    p = Path(path)
    name = name or p.name
    info = probe(p, name)
    hop = max(1, int(info.sample_rate * FRAME_S))
    block = hop * max(1, int(SCAN_BLOCK_S / FRAME_S))
    cap = int((MAX_AUDIO_S if max_seconds is None else max_seconds) * info.sample_rate)
    stats, frames = SignalStats(info.sample_rate), 0
    try:
        for chunk in sf.blocks(str(p), blocksize=block, frames=cap + 1, dtype="float32", always_2d=True):
            frames += len(chunk)
            stats.add(chunk.T)
    except Exception as err:
        raise _undecodable(name, err) from None
    if frames > cap:
        return [AudioFinding("error", "too_long", _too_long(name, "holds more audio than its header says"))], frames / info.sample_rate
    return signal_findings(stats, name), frames / info.sample_rate


def signal_findings(stats: SignalStats, name: str) -> list[AudioFinding]:
    out: list[AudioFinding] = []
    if stats.values == 0:
        return [AudioFinding("error", "empty", f"{name}: the file holds no audio samples; re-export the song")]
    peak = stats.peak
    if not np.isfinite(peak):
        return [AudioFinding("error", "invalid_samples", f"{name}: contains NaN or infinite samples; re-export the song")]
    peak_db = 20 * math.log10(peak + 1e-12)
    if peak_db < SILENCE_DBFS:
        return [AudioFinding("error", "silent", f"{name} is silent (peak {peak_db:.0f} dBFS); check the export")]
    clipped = stats.clipped / stats.values
    if clipped > CLIP_FRACTION_WARN:
        out.append(AudioFinding("warning", "clipping",
                                f"{name}: {clipped * 100:.2f}% of samples are at full scale (clipping); the model "
                                "may learn the distortion. Use an unclipped master if you have one."))
    if peak_db < QUIET_PEAK_DBFS:
        out.append(AudioFinding("warning", "quiet", f"{name} is very quiet (peak {peak_db:.0f} dBFS); it is used as is."))
    db = stats.db()
    loud = np.nonzero(db > SILENCE_DBFS)[0]
    if len(loud):
        lead = loud[0] * FRAME_S
        trail = (len(db) - 1 - loud[-1]) * FRAME_S
        if lead > EDGE_SILENCE_WARN_S:
            out.append(AudioFinding("warning", "leading_silence",
                                    f"{name} starts with {lead:.1f} s of silence; trimming it gives the model more music per step."))
        if trail > EDGE_SILENCE_WARN_S:
            out.append(AudioFinding("warning", "trailing_silence",
                                    f"{name} ends with {trail:.1f} s of silence; trimming it gives the model more music per step."))
    return out


def qc_file(path: str | Path, *, max_dur: Optional[float], min_dur: float = 5.0,
            target_sr: int = CODEC_SAMPLE_RATE, decode: bool = True) -> tuple[QCResult, Optional[torch.Tensor]]:
    """Probe, check the header, stream the samples through the signal checks; then, when usable and
    `decode`, read the audio as float32 stereo [2, N] at `target_sr` (None when the song has an error
    or `decode` is False). Nothing is decoded whole before the header and the stream have passed."""
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
        findings, _ = scan_signal(p)
        res.findings.extend(findings)
        if not res.ok or not decode:
            return res, None
        wav, sr = read_audio(p)
    except AudioError as err:
        res.findings.append(AudioFinding("error", "unreadable", str(err)))
        return res, None
    return res, to_codec_layout(wav, sr, target_sr)
