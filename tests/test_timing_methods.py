"""Timing without typing: SongPrep import, transcription with a local (tiny, random-weight) Whisper model,
the section sheet guessed from timed lines, and `python -m core timing ...` JSON
(core/timing/songprep.py, transcribe.py, propose.py, core/cli_timing.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.text import lyrics as lyr
from core.timing.propose import run_method
from core.timing.sections import TimingError, normalize
from core.timing.songprep import parse_songprep
from core.timing.transcribe import Line, model_kind, sheet_from_lines
from tests.datagen import write_song

ROOT = Path(__file__).resolve().parents[1]

GOOD = ("[intro][0.00:5.80] ; [verse][5.80:25.40]Yesterday, all my troubles seemed so far away. Now it looks as "
        "though they're here to stay ; [chorus][25.40:45.20]Why she had to go, I don't know ; "
        "[Guitar Solo][45.20:52.00] ; [pre-chorus][52.00:58.00]I said something wrong ; [outro][58.00:60.00]")


# ---- SongPrep ---------------------------------------------------------------------------------------
def test_songprep_well_formed_becomes_official_lyrics_and_timing():
    r = parse_songprep(GOOD, 60.0)
    t, changes = normalize(r.timing, lyr.STRUCTURE_TAGS)
    assert t.source == "songprep"
    assert [s.tag for s in t.sections] == ["[intro-short]", "[verse]", "[chorus]", "[inst-short]", "[verse]",
                                           "[outro-short]"]
    assert [s.start_s for s in t.sections] == [0.0, 5.8, 25.4, 45.2, 52.0, 58.0]
    assert r.lyrics.startswith("[intro-short] ; [verse] Yesterday all my troubles seemed so far away.")
    assert lyr.check_lyrics(r.lyrics).ok
    assert r.notes == []


@pytest.mark.parametrize("text, reason", [
    ("[intro][0.00:6.00] ; [verse][5.00:20.00]la la la", "overlap"),
    ("[intro][0.00:6.00] ; [kazoo][6.00:20.00]", "not a section name we know"),
    ("[intro][0.00:6.00] ; [verse]5.80:25.40 words", r"entry 2 .* is not \"\[structure\]\[start:end\]lyric\""),
    ("[verse][10.00:8.00]words", "not after its start"),
    ("[intro][0.00:6.00] ; [inst][6.00:20.00]some words", "instrumental section but has words"),
    ("[intro][0.00:6.00] ; [chorus][6.00:20.00]", "sung section without words"),
    ("[intro][0.00:6.00] ; [verse][75.00:80.00]words", "after the end of the audio"),
    ("  ", "empty"),
])
def test_songprep_refuses_with_the_reason(text, reason):
    with pytest.raises(TimingError, match=reason):
        parse_songprep(text, 60.0)


def test_songprep_gap_is_said_and_entry_named():
    r = parse_songprep("[intro][0.00:5.00] ; [verse][7.50:20.00]words here", 30.0)
    assert r.notes == ["2.5 s between entry 1 and entry 2 belong to entry 1"]
    with pytest.raises(TimingError, match=r"entry 2 \[verse\]"):
        parse_songprep("[intro][0.00:5.00] ; [verse][4.00:20.00]words", 30.0)


# ---- transcription ----------------------------------------------------------------------------------
def _lines(t0, texts, per=4.0):
    return [Line(t0 + k * per, t0 + k * per + 2.5, x) for k, x in enumerate(texts)]


def test_sheet_from_timed_lines_guesses_chorus_from_repeats_and_instrumental_gaps():
    chorus = ["hold on hold on to me", "we are running to the sea"]
    lines = (_lines(10, ["the river carries me away", "past the houses made of stone"]) + _lines(22, chorus)
             + _lines(50, ["the summer rain is falling", "on every road"]) + _lines(62, chorus))
    t, conf, notes = sheet_from_lines(lines, 80.0)
    assert [(s.tag, s.start_s) for s in t.sections] == [
        ("[intro-short]", 0.0), ("[verse]", 10.0), ("[chorus]", 22.0), ("[inst-short]", 28.5), ("[verse]", 50.0),
        ("[chorus]", 62.0), ("[outro-short]", 68.5)]
    assert t.source == "transcribed" and len(conf) == len(t.sections) and all(0 <= c <= 1 for c in conf)
    assert t.sections[2].text == "hold on hold on to me.we are running to the sea."
    assert lyr.check_lyrics(t.lyrics()).ok and notes == []
    with pytest.raises(TimingError, match="no words"):
        sheet_from_lines([], 30.0)


def test_transcription_model_folder_is_checked_before_loading(tmp_path):
    with pytest.raises(TimingError, match="does not exist"):
        model_kind(tmp_path / "nope")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(TimingError, match="holds no Whisper model"):
        model_kind(tmp_path / "m")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    from tests.tiny_whisper import build

    return build(tmp_path_factory.mktemp("whisper") / "tiny-whisper")


def test_transcribe_end_to_end_with_a_tiny_local_model(tiny_whisper, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt would fail the test
    song = write_song(tmp_path / "song.wav", seconds=40.0, sr=16000)
    r = run_method("transcribe", song, None, model_dir=str(tiny_whisper), language="en")
    # random weights hear random words: the path must still give a reviewable sheet or a clear refusal
    if r.refused:
        assert "transcription" in r.refused
    else:
        assert r.timing.source == "transcribed" and r.lyrics and lyr.check_lyrics(r.lyrics).ok
        starts = [s.start_s for s in r.timing.sections]
        assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] < 40.0
        assert len(r.confidence) == len(starts)
        assert any("review the words" in n for n in r.notes)
    missing = run_method("transcribe", song, None, model_dir=str(tmp_path / "none"))
    assert "does not exist" in missing.refused


# ---- the CLI -----------------------------------------------------------------------------------------
def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "core", "timing", *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, timeout=600)


def test_cli_import_json_and_write_only_when_asked(tmp_path):
    write_song(tmp_path / "a.wav", seconds=60.0, sr=16000)
    write_song(tmp_path / "b.wav", seconds=20.0, sr=16000)
    (tmp_path / "a.songprep.txt").write_text(GOOD, encoding="utf-8")
    rows = [{"idx": "a", "path": "a.wav", "gt_lyric": "", "songprep": "a.songprep.txt"},
            {"idx": "b", "path": "b.wav", "gt_lyric": "", "songprep": "[verse][25.00:30.00]too late"}]
    meta = tmp_path / "metadata.jsonl"
    meta.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    before = meta.read_text()
    p = _cli("import", "--metadata", str(meta), cwd=tmp_path)
    assert p.returncode == 1, p.stderr  # one song refused
    out = json.loads(p.stdout)
    a, b = out["songs"]
    assert a["idx"] == "a" and a["source"] == "songprep" and "refused" not in a
    assert [s["section"] for s in a["sections"]][:3] == ["[intro-short]", "[verse]", "[chorus]"]
    assert a["sections"][1] == {"section": "[verse]", "start_s": 5.8, "confidence": 1.0, "source": "songprep"}
    assert "after the end of the audio" in b["refused"]
    assert meta.read_text() == before  # nothing written without --write
    p = _cli("import", "--metadata", str(meta), "--write", cwd=tmp_path)
    assert json.loads(p.stdout)["written"] == 1
    saved = [json.loads(x) for x in meta.read_text().splitlines()]
    assert saved[0]["timing"]["source"] == "songprep" and saved[0]["gt_lyric"].startswith("[intro-short] ; [verse]")
    assert saved[0]["timing"]["sections"][2] == {"tag": "[chorus]", "start_s": 25.4}
    assert "timing" not in saved[1]
    assert (tmp_path / "metadata.jsonl.bak").read_text() == before
    from core.data.inputs import load_metadata
    assert load_metadata(meta)[0].timing["source"] == "songprep"


def test_cli_usage_errors(tmp_path):
    p = _cli("align", cwd=tmp_path)
    assert p.returncode == 2 and "--audio" in p.stderr
    write_song(tmp_path / "a.wav", seconds=10.0, sr=16000)
    p = _cli("align", "--audio", "a.wav", "--lyrics", "[verse] 啊.河流带我远行", cwd=tmp_path)
    out = json.loads(p.stdout)["songs"][0]
    assert p.returncode == 1 and "English" in out["refused"] and out["sections"] == []
