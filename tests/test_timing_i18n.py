"""Timing in the reader's language: every note and refusal of core.timing has a code and a wording in both
locale files; a message inside a message (a file's refusal, a list of LRC problems) is worded whole; the
Data tab's timing findings and the prompt warning are Chinese in a Chinese page and name the user's own
files (the workspace keeps them as audio.wav / lyrics.lrc)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.timing.lrc import parse_lrc, timing_from_lrc
from core.timing.sections import TimingError, in_file
from studio.i18n import TABLES, finding, say

TIMING = Path(__file__).resolve().parent.parent / "core" / "timing"
CODED = ("lrc.py", "sections.py", "resolve.py", "propose.py", "songprep.py", "transcribe.py", "vocal_activity.py",
         "alignment.py")


def _codes(path: Path) -> tuple[set[str], set[str]]:
    """(note codes, refusal codes) written in one module: note("code", ...) / coded("code", ...) and
    TimingError(..., code="code")."""
    notes, errors = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name in ("note", "coded") and node.args and isinstance(node.args[0], ast.Constant):
            notes.add(node.args[0].value)
        for kw in node.keywords:
            if name == "TimingError" and kw.arg == "code" and isinstance(kw.value, ast.Constant):
                errors.add(kw.value.value)
    return notes, errors


def test_every_timing_message_has_a_code_and_both_wordings():
    seen = 0
    for f in CODED:
        notes, errors = _codes(TIMING / f)
        seen += len(notes) + len(errors)
        for code in notes:
            assert f"ly_{code}" in TABLES["en"] or f"err_{code}" in TABLES["en"], f"{f}: note {code} has no wording"
        for code in errors:
            assert f"err_{code}" in TABLES["en"], f"{f}: refusal {code} has no wording"
        src = (TIMING / f).read_text(encoding="utf-8")
        # no uncoded message is left: no refusal without a code, no note appended as a bare f-string
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TimingError" and node.args:
                assert any(kw.arg == "code" for kw in node.keywords), f"{f}:{node.lineno}: TimingError without a code"
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "append" and node.args
                    and isinstance(node.args[0], (ast.JoinedStr, ast.Constant))
                    and isinstance(node.func.value, (ast.Name, ast.Attribute))
                    and getattr(node.func.value, "id", getattr(node.func.value, "attr", "")) in ("notes", "errors",
                                                                                                 "changes", "warnings")):
                raise AssertionError(f"{f}:{node.lineno}: an uncoded message")
    assert seen > 60


def test_a_refused_lrc_is_worded_whole_in_chinese_and_the_english_is_unchanged():
    lrc = parse_lrc("[00:01.00][verse] a b c\nno time here\n[xx] not a section\n")
    with pytest.raises(TimingError) as err:
        timing_from_lrc(lrc, 30.0)
    english = str(err.value)
    assert english.startswith("the LRC file has problems: line 2 has no time tag [mm:ss.xx]; line 3: [xx] is not")
    msg = in_file("我的歌.lrc", err.value)
    assert str(msg) == f"我的歌.lrc: {english}"
    zh = say(msg, "zh")
    assert zh.startswith("我的歌.lrc：LRC 文件有问题：第 2 行没有时间标签 [mm:ss.xx]；第 3 行：[xx] 不是段落名"), zh
    # kept as JSON (report.json, a song's saved check) it is worded the same
    assert say(json.loads(json.dumps(msg.to_dict())), "zh") == zh
    assert say(msg, "en") == str(msg)


def _song(tmp_path, seconds: float, name: str):
    from studio.state import Workspace
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    wav = src / name
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(str(wav), np.stack([x, x], 1).astype(np.float32), 16000)
    ws = Workspace(tmp_path / "ws")
    idx = ws.add_song(wav, "[verse] the city lights are calling ; [chorus] hold on hold on", "pop")
    return ws, idx


def test_timing_findings_name_the_users_lrc_and_read_in_chinese(tmp_path):
    from studio import backend
    ws, idx = _song(tmp_path, 12.0, "Night Drive.wav")
    (tmp_path / "Night Drive (final).lrc").write_text("[00:01.00] nothing here matches\n", encoding="utf-8")
    ws.attach_lrc(idx, tmp_path / "Night Drive (final).lrc")
    row = json.loads(ws.metadata_path.read_text(encoding="utf-8").splitlines()[0])
    assert row["source_name"] == "Night Drive.wav" and row["lrc_name"] == "Night Drive (final).lrc"
    chk = backend.check_song(ws, ws.song(idx), max_dur=150)
    assert chk["status"] == "rejected"
    en = [finding(f, "Night Drive.wav", "en") for f in chk["reason_findings"]]
    zh = [finding(f, "Night Drive.wav", "zh") for f in chk["reason_findings"]]
    assert any(r.startswith("Night Drive (final).lrc: the words of section(s)") for r in en), en
    assert not any("lyrics.lrc" in r for r in en + zh)
    assert any(r.startswith("Night Drive (final).lrc：在 LRC 中找不到这些段落的歌词") for r in zh), zh


def test_the_prompt_warning_is_coded_and_names_the_users_audio(tmp_path):
    from core.data.inputs import load_metadata
    from studio import backend
    ws, idx = _song(tmp_path, 6.0, "短歌.wav")
    song = load_metadata(ws.write_metadata())[0]
    assert song.audio_name == "短歌.wav" and Path(song.audio).name == "audio.wav"
    chk = backend.check_song(ws, ws.song(idx), max_dur=150)
    prompt = next(f for f in chk["reason_findings"] if f.get("code") == "prompt_short")
    assert prompt["message"] == "短歌.wav is shorter than the model's 10 s prompt; the rest of its prompt is left empty"
    assert finding(prompt, "短歌.wav", "zh") == "短歌.wav 比模型 10 秒的提示音频短；提示的其余部分留空"
    assert not any("audio.wav" in f["message"] for f in chk["reason_findings"])


def test_two_sections_that_begin_on_one_lrc_line_are_refused_not_a_crash():
    # the sheet's verse and chorus both begin on the LRC's only line: before, an IndexError in prepare's check
    sheet = "[verse] hold on ; [chorus] hold on tight"
    with pytest.raises(TimingError, match=r"section\(s\) 1 \[verse\]") as err:
        timing_from_lrc(parse_lrc("[00:02.00]hold on hold on tight\n"), 20.0, sheet)
    assert err.value.code == "lrc_words_missing"
    t, _ = timing_from_lrc(parse_lrc("[00:02.00]hold on hold on tight\n"), 20.0, sheet, partial=True)
    assert [s.start_s for s in t.sections] == [None, 2.0]


def test_an_items_lyrics_over_the_token_budget_read_in_chinese():
    from core.text.fields import lyric_token_problem
    from core.text.lyrics import note
    where = note("lyrics_of_item", "lyrics of item {k} ({a}-{b} s)", k=2, a="100", b="190")
    msg = lyric_token_problem("la " * 40, 30, lambda t: len(t.split()), where)
    assert str(msg).startswith("lyrics of item 2 (100-190 s): the lyrics are 40 tokens, over the model's budget of 30")
    zh = say(msg.to_dict(), "zh")
    assert zh.startswith("第 2 个片段（100-190 秒）的歌词：歌词有 40 个 token，超过模型 30 个的上限"), zh
