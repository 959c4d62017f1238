"""core.audio.io: soundfile reading, resampling to 48 kHz stereo, QC findings with plain reasons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from core.audio import io as audio
from tests.datagen import SAMPLE_WAV, write_song


def test_read_and_layout_mono_8k(tmp_path: Path):
    p = write_song(tmp_path / "m.wav", seconds=2, sr=8000, channels=1)
    wav, sr = audio.read_audio(p)
    assert sr == 8000 and wav.shape == (1, 16000) and wav.dtype == torch.float32
    out = audio.to_codec_layout(wav, sr)
    assert out.shape == (2, 96000)
    assert torch.equal(out[0], out[1])  # mono duplicated


def test_sample_song_passes_qc():
    res, wav = audio.qc_file(SAMPLE_WAV, max_dur=150, min_dur=5)
    assert res.ok, res.findings
    assert res.info.sample_rate == 48000 and res.info.channels == 2
    assert wav.shape[0] == 2 and abs(wav.shape[1] / 48000 - res.info.duration_s) < 1e-3


def _codes(findings):
    return {(f.level, f.code) for f in findings}


def test_header_checks(tmp_path: Path):
    info = audio.AudioInfo("x.wav", 8000, 1, 8000 * 600)
    codes = _codes(audio.check_header(info, max_dur=150, min_dur=5))
    assert {("error", "too_long"), ("error", "low_sample_rate"), ("warning", "mono")} <= codes
    short = audio.AudioInfo("s.wav", 48000, 2, 48000 * 2)
    assert ("error", "too_short") in _codes(audio.check_header(short, max_dur=150, min_dur=5))
    f = audio.check_header(audio.AudioInfo("l.wav", 48000, 2, 48000 * 200), max_dur=270, min_dur=5)
    assert not f  # 200 s is fine for a 4m30 model
    msg = audio.check_header(audio.AudioInfo("l.wav", 48000, 2, 48000 * 200), max_dur=150, min_dur=5)[0].message
    assert "2m30s" in msg and "3m20s" in msg
    w = audio.check_header(audio.AudioInfo("w.wav", 22050, 2, 22050 * 20), max_dur=150, min_dur=5)
    assert _codes(w) == {("warning", "low_sample_rate")}


def test_signal_checks():
    sr = 48000
    t = torch.arange(sr * 20) / sr
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    silent_edges = tone.clone()
    silent_edges[: sr * 7] = 0
    silent_edges[-sr * 6:] = 0
    codes = _codes(audio.check_signal(torch.stack([silent_edges, silent_edges]), sr, "x.wav"))
    assert {("warning", "leading_silence"), ("warning", "trailing_silence")} <= codes
    clipped = (tone * 10).clamp(-1, 1)
    assert ("warning", "clipping") in _codes(audio.check_signal(torch.stack([clipped, clipped]), sr, "c.wav"))
    assert _codes(audio.check_signal(torch.zeros(2, sr * 10), sr, "z.wav")) == {("error", "silent")}
    assert not audio.check_signal(torch.stack([tone, tone]), sr, "ok.wav")


def test_unreadable_empty_missing(tmp_path: Path):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    for name, code in (("bad.wav", "unreadable"), ("empty.wav", "empty"), ("missing.wav", "missing")):
        res, wav = audio.qc_file(tmp_path / name, max_dur=150)
        assert wav is None and not res.ok
        assert res.errors[0].code == code, res.errors
        assert name in res.errors[0].message


def test_long_file_is_rejected_without_decoding(tmp_path: Path, monkeypatch):
    p = tmp_path / "long.wav"
    sf.write(str(p), np.zeros(8000 * 300, dtype=np.int16), 8000, subtype="PCM_16")
    monkeypatch.setattr(audio, "read_audio", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    res, wav = audio.qc_file(p, max_dur=150)
    assert wav is None and ("error", "too_long") in _codes(res.findings)


def test_never_uses_torchaudio_load():
    src = Path(audio.__file__).read_text(encoding="utf-8")
    assert "torchaudio.load(" not in src and "import soundfile" in src
