"""The studio's Timing editor logic (studio/timing_edit.py) on a real workspace: LRC in, starts edited and
saved, proposal from a vocal stem accepted, picture and clips written, metadata.jsonl carries lrc/timing."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from studio import timing_edit as te
from studio.state import Workspace

SR = 16000
LRC = "[00:00.00][intro]\n[00:04.00][verse] hello there\n[00:08.00] second line\n[00:12.00][chorus] sing it\n"


def _song(tmp_path, seconds=20.0):
    """Mix = soft pad everywhere + tone where sung (4-11.2 s, 12-20 s); vocal stem = the tone only."""
    t = np.arange(int(seconds * SR)) / SR
    sung = ((t >= 4) & (t < 11.2)) | (t >= 12)
    voice = 0.3 * np.sin(2 * math.pi * 330 * t) * sung
    pad = 0.05 * np.sin(2 * math.pi * 110 * t)
    sf.write(tmp_path / "song.wav", np.stack([voice + pad, voice + pad], 1).astype(np.float32), SR)
    sf.write(tmp_path / "song.vocal.wav", np.stack([voice, voice], 1).astype(np.float32), SR)
    sf.write(tmp_path / "song.bgm.wav", np.stack([pad, pad], 1).astype(np.float32), SR)
    (tmp_path / "song.lrc").write_text(LRC, encoding="utf-8")
    return tmp_path / "song.wav"


def test_lrc_edit_save_and_metadata(tmp_path):
    ws = Workspace(tmp_path / "ws")
    audio = _song(tmp_path)
    idx = ws.add_song(audio, "", "pop", stems={"vocal": str(tmp_path / "song.vocal.wav"),
                                               "bgm": str(tmp_path / "song.bgm.wav")})
    v = te.use_lrc(ws, idx, str(tmp_path / "song.lrc"))
    assert v.source == "lrc"
    assert v.sections == [("[intro-short]", 0.0), ("[verse]", 4.0), ("[chorus]", 12.0)]
    assert any("filled from the LRC" in n for n in v.notes)
    assert ws.song(idx)["gt_lyric"] == "[intro-short] ; [verse] hello there.second line. ; [chorus] sing it."
    # edit one start; saved as "edited", and the metadata for prepare carries it
    v = te.save_starts(ws, idx, [0.0, 4.5, 12.0])
    assert v.source == "edited" and v.sections[1] == ("[verse]", 4.5)
    row = json.loads(ws.metadata_path.read_text(encoding="utf-8").splitlines()[0])
    assert row["lrc"].endswith("lyrics.lrc")
    assert row["timing"]["source"] == "edited" and row["timing"]["sections"][1] == {"tag": "[verse]", "start_s": 4.5}
    with pytest.raises(te.TimingEditError, match="starts must increase"):
        te.save_starts(ws, idx, [0.0, 13.0, 12.0])
    with pytest.raises(te.TimingEditError, match="missing: 2"):
        te.save_starts(ws, idx, [0.0, None, 12.0])
    assert ws.song(idx)["timing"]["sections"][1]["start_s"] == 4.5    # a refused edit changes nothing
    png = te.picture(ws, idx, [0.0, 4.5, 12.0])
    assert png.endswith(".png") and (tmp_path / "ws").as_posix() in png
    clip = te.clip_from(ws, idx, 12.0)
    info = sf.info(clip)
    assert abs(info.duration - 8.0) < 0.01


def test_proposal_is_shown_then_accepted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    audio = _song(tmp_path)
    idx = ws.add_song(audio, "[intro-short] ; [verse] hello there.second line. ; [chorus] sing it.", "pop",
                      stems={"vocal": str(tmp_path / "song.vocal.wav"), "bgm": str(tmp_path / "song.bgm.wav")})
    p = te.propose(ws, idx)
    assert ws.song(idx).get("timing") is None                  # never applied silently
    assert p["stem"] == "the song's vocal stem"
    assert [abs(a - b) <= 0.5 for a, b in zip(p["starts"], [0.0, 4.0, 12.0])] == [True] * 3
    assert p["confidence"] > 0.5
    v = te.save_starts(ws, idx, p["starts"], "proposed")
    assert v.source == "proposed"


def test_data_check_long_song_with_and_without_timing(tmp_path):
    """The Data tab's check: a song longer than the model's limit is fine with an LRC (split), refused
    without timing with the ways to add it; an LRC-only song gets its lyrics from the LRC."""
    from studio.backend import check_song
    ws = Workspace(tmp_path / "ws")
    audio = _song(tmp_path)
    idx = ws.add_song(audio, "", "pop")
    chk = check_song(ws, ws.song(idx), max_dur=15.0)
    assert chk["status"] == "rejected" and any("Timing editor" in r for r in chk["reasons"])
    ws.attach_lrc(idx, tmp_path / "song.lrc")
    chk = check_song(ws, ws.song(idx), max_dur=15.0)
    assert chk["status"] != "rejected", chk["reasons"]
    assert any("split at section boundaries into 2 training items" in r for r in chk["reasons"])
    assert chk["fixed_lyric"].startswith("[intro-short] ; [verse] hello there")


def test_presets_never_give_an_official_checkpoint_demo_only_crops():
    from studio.tabs.train import DEFAULT_PRESET, PRESETS, preset_values
    assert PRESETS[DEFAULT_PRESET]["training.max_frames"] == 150
    assert preset_values(DEFAULT_PRESET, "demo")["training.max_frames"] == 150
    for kind in ("folder", "hub"):
        assert preset_values(DEFAULT_PRESET, kind)["training.max_frames"] is None
        for name in PRESETS:  # a GPU preset may window long songs (on section boundaries), never to a demo snippet
            mf = preset_values(name, kind).get("training.max_frames")
            assert mf is None or mf >= 30 * 25, (name, mf)
