"""Synthetic songs and a bad-input corpus for the data tests (small, deterministic, fast to write)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.paths import SHARED  # noqa: E402
SAMPLE_WAV = SHARED / "data" / "sample_prompt_audio.wav"
LYRICS_EXAMPLES = SHARED / "data" / "lyrics_examples.jsonl"

GOOD_LYRICS = ("[intro-short] ; [verse] the night is young.we sing along ; "
               "[chorus] hold on.hold on to me ; [outro-short]")


# A 60-s song: intro, verse, chorus, inst, verse, chorus, outro.
LRC_60 = """[ti:City Lights]
[ar:Test]
[00:00.00][intro]
[00:04.00][verse] the city lights are calling
[00:08.50] i walk alone tonight
[00:14.00][chorus] hold on hold on
[00:18.20] we shine until the morning
[00:24.00][inst]
[00:30.00][Verse 2] the river runs forever
[00:35.00] the night is young
[00:40.00][chorus] hold on hold on
[00:45.00] we shine until the morning
[00:52.00][outro]
"""


def synth_song(seconds: float = 12.0, sr: int = 48000, seed: int = 0, channels: int = 2) -> np.ndarray:
    """A 'song': a centred melody (the vocal) over panned chords and noise hits; [N, channels] float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    beat = 0.5
    notes = 220 * 2 ** (rng.integers(0, 12, size=int(seconds / beat) + 1) / 12)
    f = notes[(t / beat).astype(int)]
    phase = 2 * np.pi * np.cumsum(f) / sr
    melody = 0.25 * (np.sin(phase) + 0.3 * np.sin(2 * phase)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t))
    chord = 0.08 * sum(np.sin(2 * np.pi * 110 * r * t) for r in (1, 1.25, 1.5))
    hits = np.zeros(n)
    for k in range(int(seconds / beat)):
        s = int(k * beat * sr)
        ln = min(n - s, 2400)
        hits[s:s + ln] += rng.standard_normal(ln) * np.exp(-np.arange(ln) / 400) * 0.2
    left = melody + chord * 1.4 + hits * 0.6
    right = melody + chord * 0.6 + hits * 1.0
    out = np.stack([left, right], 1) if channels == 2 else ((left + right) / 2)[:, None]
    return out.astype(np.float32)


def write_song(path: Path, seconds: float = 12.0, sr: int = 48000, seed: int = 0, channels: int = 2,
               subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth_song(seconds, sr, seed, channels), sr, subtype=subtype)
    return path


def write_long_quiet(path: Path, seconds: float = 600.0, sr: int = 8000) -> Path:
    """Ten minutes of low-level noise, cheaply (8 kHz mono 16-bit: ~9.6 MB)."""
    rng = np.random.default_rng(1)
    sf.write(str(path), (rng.standard_normal(int(seconds * sr)) * 0.01).astype(np.float32), sr, subtype="PCM_16")
    return path


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_bad_corpus(root: Path) -> dict:
    """A folder with a metadata.jsonl mixing good songs and every kind of bad input.

    Returns {"metadata": path, "expect": {idx: expected status or reason fragment}}."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    write_song(wavs / "good1.wav", 12, seed=1)
    write_song(wavs / "good2.wav", 14, seed=2)
    write_song(wavs / "good3.flac", 13, seed=3)
    write_song(wavs / "fixme.wav", 12, seed=4)
    write_song(wavs / "instr.wav", 12, seed=5)
    write_song(wavs / "tags.wav", 12, seed=6)
    write_song(wavs / "monolow.wav", 12, sr=8000, seed=7, channels=1)
    write_long_quiet(wavs / "long.wav")
    (wavs / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio" * 10)
    (wavs / "empty.wav").write_bytes(b"")
    lines = [
        {"idx": "good1", "path": "wavs/good1.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "female, pop, sad, piano"},
        {"idx": "good2", "path": str((wavs / "good2.wav").resolve()), "gt_lyric": GOOD_LYRICS, "descriptions": None},
        {"idx": "good3", "path": "wavs/good3.flac", "gt_lyric": GOOD_LYRICS,
         "descriptions": "[Musicality-very-high], Male, Rock, energetic"},
        {"idx": "fixme", "path": "wavs/fixme.wav",
         "gt_lyric": "[Verse 1]\nHello world, how are you?\n\n[Chorus]\nLa la la！\n[Outro]",
         "descriptions": "female, pop"},
        {"idx": "instr", "path": "wavs/instr.wav", "gt_lyric": "[intro-short] ; [inst-long] ; [outro-short]",
         "descriptions": "electronic"},
        {"idx": "tags", "path": "wavs/tags.wav", "gt_lyric": "[Spoken Word] hello there ; [chorus] yeah",
         "descriptions": "female, zorblax-core"},
        {"idx": "monolow", "path": "wavs/monolow.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
        {"idx": "long", "path": "wavs/long.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
        {"idx": "corrupt", "path": "wavs/corrupt.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
        {"idx": "empty", "path": "wavs/empty.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
        {"idx": "nofile", "path": "wavs/does_not_exist.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
        {"idx": "nolyric", "path": "wavs/good1.wav", "descriptions": "male"},
        {"idx": "good1", "path": "wavs/good2.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "male"},
    ]
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines[:5])
    text += '{"idx": "broken", "path": "wavs/good1.wav", "gt_lyric": \n'   # broken JSON line
    text += "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in lines[5:])
    meta = root / "metadata.jsonl"
    meta.write_text(text, encoding="utf-8")
    expect = {
        "good1": "ok", "good2": "ok", "good3": "fixed", "fixme": "fixed", "instr": "warning",
        "tags": ("rejected", "unknown section tag"), "monolow": ("rejected", "8000 Hz"),
        "long": ("rejected", "10m00s"), "corrupt": ("rejected", "cannot be read"), "empty": ("rejected", "empty"),
        "nofile": ("rejected", "not found"), "nolyric": ("rejected", "gt_lyric"), "line-6": ("rejected", "not valid JSON"),
    }
    return {"metadata": meta, "expect": expect}
