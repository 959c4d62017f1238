"""Songs with known section starts, made here: espeak-ng sings known lines at known times over a real
instrumental recording from a Debian package (asc-music: three GPL-2+ game soundtracks as MP3).

Used by tests/test_alignment.py (one song) and bench/timing.py (all of them). The voice is speech
synthesis with a slow rate, a raised pitch and a little vibrato (sox) -- sung-like, not singing --
mixed at a chosen level against the music, panned to the centre as a produced vocal would be.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

MUSIC_DIR = Path("/usr/share/games/asc/music")
SR = 22050             # the music's own rate
APT_PACKAGES = ("espeak-ng", "sox", "asc-music")


def missing_tools() -> list[str]:
    """What is absent for synthesis (apt package names); [] when a song can be made."""
    out = [p for p in ("espeak-ng", "sox") if shutil.which(p) is None]
    if not MUSIC_DIR.is_dir() or not any(MUSIC_DIR.glob("*.mp3")):
        out.append("asc-music")
    return out


@dataclass
class Section:
    tag: str                    # official tag ("[verse]", "[inst-short]" ...)
    length_s: float
    lines: list[str] = field(default_factory=list)
    lead_s: float = 0.4         # first line starts this long after the section start
    period_s: float = 4.5       # one line starts every period_s seconds


@dataclass
class Plan:
    name: str
    music: str                  # file name in MUSIC_DIR
    music_offset_s: float
    sections: list[Section]
    vocal_db: float = -1.0      # vocal level against the music while singing (dB)
    pitch: int = 60

    @property
    def duration_s(self) -> float:
        return sum(s.length_s for s in self.sections)

    def starts(self) -> list[float]:
        out, t = [], 0.0
        for s in self.sections:
            out.append(t)
            t += s.length_s
        return out

    def gt_lyric(self) -> str:
        """The song's lyrics in the official grammar (sentences end with '.')."""
        parts = []
        for s in self.sections:
            parts.append(f"{s.tag} " + ".".join(ln.lower() for ln in s.lines) if s.lines else s.tag)
        return " ; ".join(parts)


V1 = ["the river carries me away", "past the houses made of stone", "every morning feels the same",
      "but tonight I walk alone", "the wind is cold along the shore", "I count the boats that pass me by",
      "I used to know the way back home", "now I only watch the sky"]
V2 = ["the city lights are calling out", "a hundred windows burning bright", "I hear the thunder far away",
      "and I will follow through the night", "the streets are empty after rain", "my shadow walks a step ahead",
      "I hum the song you used to sing", "and read the letters you had read"]
V3 = ["the summer rain is falling down", "on every road that leads to you", "I keep the promise that I made",
      "and every word of it is true", "the garden grows behind the wall", "the roses open one by one",
      "I wait beside the open door", "until the evening has begun"]
CH = ["hold on hold on to me", "we are running to the sea", "hold on hold on to me", "we are young and we are free",
      "take my hand and sing along", "we will never be alone"]
BR = ["when the morning comes again", "I will find you by the water", "and the light will carry us"]


def _sec(tag, lines, period=4.5, lead=0.4, tail=1.0):
    return Section(tag, round(lead + period * len(lines) + tail, 2), list(lines), lead, period)


def plans() -> list[Plan]:
    """Three 3-4 minute songs, 7-8 sections each; the second has long instrumental breaks."""
    a = Plan("river", "frontiers.mp3", 20.0, [
        Section("[intro-medium]", 12.0), _sec("[verse]", V1), _sec("[chorus]", CH, period=4.2),
        Section("[inst-short]", 8.0), _sec("[verse]", V3), _sec("[chorus]", CH, period=4.2),
        _sec("[bridge]", BR, period=5.0), _sec("[chorus]", CH, period=4.2, tail=8.0)], vocal_db=-1.0)
    b = Plan("breaks", "machine_wars.mp3", 5.0, [
        Section("[intro-long]", 24.0), _sec("[verse]", V2), _sec("[chorus]", CH), Section("[inst-long]", 28.0),
        _sec("[verse]", V1[:6]), Section("[inst-long]", 24.0), _sec("[chorus]", CH, tail=10.0)],
        vocal_db=-3.0, pitch=45)
    c = Plan("summer", "time_to_strike.mp3", 40.0, [
        Section("[intro-short]", 7.0), _sec("[verse]", V3, period=4.6), _sec("[chorus]", CH, period=4.0),
        _sec("[verse]", V2, period=4.4), _sec("[chorus]", CH, period=4.0),
        Section("[inst-medium]", 14.0), _sec("[chorus]", CH, period=4.0, tail=9.0)], vocal_db=1.0, pitch=70)
    return [a, b, c]


def _speak(text: str, pitch: int, tmp: Path, k: int) -> np.ndarray:
    raw, sung = tmp / f"l{k}.wav", tmp / f"s{k}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "125", "-p", str(pitch), "-a", "160", "-w", str(raw), text],
                   check=True, capture_output=True)
    # a slow vibrato and a rate that matches the mix; sox keeps the timing of every word, and without
    # dither (-D) a song renders the same every time (the aligner's search is discrete)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SR), "-c", "1", str(sung), "tremolo", "5", "20", "reverb", "15"],
                   check=True, capture_output=True)
    x, _ = sf.read(str(sung), dtype="float32")
    return x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x), dtype=np.float64)) + 1e-12)


def _truth(plan: Plan, lines_truth: list) -> list[dict]:
    """A sung section starts at its first line (as in an LRC); an instrumental one where the voice
    before it stops (the end of the last line, what a listener marks), or at 0 for an intro."""
    out, k, last_end = [], 0, 0.0
    for s, t in zip(plan.sections, plan.starts()):
        if s.lines:
            out.append({"tag": s.tag, "start_s": lines_truth[k][0]})
            k += len(s.lines)
            last_end = lines_truth[k - 1][2]
        else:
            out.append({"tag": s.tag, "start_s": round(last_end if out else 0.0, 3)})
    return out


def render(plan: Plan, out_wav: Path) -> dict:
    """Write the song (stereo WAV at SR) and return its truth: section starts and line starts."""
    n = int(plan.duration_s * SR)
    music, msr = sf.read(str(MUSIC_DIR / plan.music), dtype="float32", always_2d=True)
    a = int(plan.music_offset_s * msr)
    music = music[a:a + int(plan.duration_s * msr) + msr]
    import torch
    import torchaudio.functional as AF

    music = AF.resample(torch.from_numpy(music.T.copy()), msr, SR).numpy()[:, :n]
    music = np.pad(music, ((0, 0), (0, n - music.shape[1])))
    voice = np.zeros(n, dtype=np.float32)
    lines_truth = []
    with tempfile.TemporaryDirectory() as td:
        k = 0
        for start, sec in zip(plan.starts(), plan.sections):
            for j, line in enumerate(sec.lines):
                t = start + sec.lead_s + j * sec.period_s
                x = _speak(line, plan.pitch + (j % 2) * 8, Path(td), k)
                k += 1
                i = int(t * SR)
                x = x[: max(0, n - i)]
                voice[i:i + len(x)] += x
                loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
                lines_truth.append([round(t, 3), line, round(float(t + (loud[-1] + 1) / SR), 3)])
    sung = np.abs(voice) > 1e-4
    if sung.any():  # level while singing, against the music over the same samples
        gain = 10 ** (plan.vocal_db / 20) * _rms(music[:, sung].mean(0)) / _rms(voice[sung])
        voice *= gain
    mix = music + voice[None, :]
    mix /= max(1.0, float(np.abs(mix).max()) / 0.98)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_wav), mix.T, SR)
    return {"name": plan.name, "duration_s": plan.duration_s, "gt_lyric": plan.gt_lyric(),
            "sections": _truth(plan, lines_truth),
            "lines": lines_truth}
