"""The Data tab in the reader's language: every finding core.data makes of a song's inputs and audio
(core/data/steps.py, core/data/inputs.py) and every refusal of core/audio/io.py has a code and a wording in
both locale files; a metadata.jsonl with broken lines and bad audio reads as Chinese in a Chinese page, the
English unchanged."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from core import data
from core.config import load_config
from core.data.inputs import load_metadata, scan_folder
from core.data.limits import DataError
from studio.i18n import TABLES, finding, say
from tests.datagen import GOOD_LYRICS
from tests.studio_server import english_sentences

CORE = Path(__file__).resolve().parent.parent / "core"
CODED = ("data/steps.py", "data/inputs.py", "audio/io.py", "data/prepare.py", "text/fields.py")
ERRORS = ("AudioError", "DataError")
FINDING_LISTS = ("problems", "findings")
KEYS = {"path", "lyric", "descriptions", "idx"}  # metadata.jsonl's keys, shown as they are


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call)]


def _name(call: ast.Call) -> str:
    return getattr(call.func, "attr", None) or getattr(call.func, "id", None) or ""


def _is_text(node: ast.AST) -> bool:
    """A message written out in place: an f-string, a string constant, or one of them joined with `+`/`or`."""
    if isinstance(node, (ast.JoinedStr, ast.Constant)):
        return isinstance(node, ast.JoinedStr) or isinstance(node.value, str)
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    if isinstance(node, ast.BoolOp):
        return any(_is_text(v) for v in node.values)
    return False


def _receiver(call: ast.Call) -> str:
    target = getattr(call.func, "value", None)
    return getattr(target, "id", None) or getattr(target, "attr", None) or ""


def test_every_data_and_audio_message_has_a_code_and_both_wordings():
    seen = 0
    for f in CODED:
        for call in _calls(CORE / f):
            name = _name(call)
            where = f"{f}:{call.lineno}"
            if name in ("note", "coded", "_note") and call.args and isinstance(call.args[0], ast.Constant):
                code = call.args[0].value
                seen += 1
                assert f"ly_{code}" in TABLES["en"] or f"err_{code}" in TABLES["en"], f"{where}: note {code} has no wording"
            if name in ERRORS and (call.args or call.keywords):
                code = next((kw.value for kw in call.keywords if kw.arg == "code"), None)
                assert isinstance(code, ast.Constant), f"{where}: {name} without a code"
                seen += 1
                assert f"err_{code.value}" in TABLES["en"], f"{where}: refusal {code.value} has no wording"
            # no finding left as a bare sentence: appended to a song's problems, or added to its report
            if name == "append" and _receiver(call) in FINDING_LISTS and call.args:
                assert not _is_text(call.args[0]), f"{where}: an uncoded message appended"
            if name == "add" and _receiver(call) == "rep" and len(call.args) > 1:  # code=...: worded by it
                coded_here = any(kw.arg == "code" for kw in call.keywords)
                assert coded_here or not _is_text(call.args[1]), f"{where}: an uncoded finding"
    for key in [k for k in TABLES["en"] if k.startswith(("ly_", "err_"))]:
        assert key in TABLES["zh"], f"{key} has no Chinese wording"
    assert seen > 35


def _metadata(root: Path) -> Path:
    (root / "wavs").mkdir(parents=True)
    (root / "wavs" / "empty.wav").write_bytes(b"")
    lines = ['{"idx": "broken", "path": "wavs/a.wav", ',
             json.dumps({"idx": "nopath", "gt_lyric": GOOD_LYRICS, "descriptions": "pop"}),
             json.dumps({"idx": "gone", "path": "wavs/gone.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "pop"}),
             json.dumps({"idx": "empty", "path": "wavs/empty.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "pop"})]
    meta = root / "metadata.jsonl"
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return meta


def test_broken_metadata_and_bad_audio_read_in_chinese_and_the_english_is_unchanged(tmp_path):
    meta = _metadata(tmp_path / "user")
    cfg = load_config(None, {"workspace": str(tmp_path / "ws"), "paths.prepared_data_dir": str(tmp_path / "prep"),
                             "paths.metadata_path": str(meta)})
    report = {e["idx"]: e for e in data.plan(cfg)["report"]}
    assert {"line-1", "nopath", "gone", "empty"} <= set(report)
    assert all(report[i]["status"] == "rejected" for i in ("line-1", "nopath", "gone", "empty"))
    en = {i: [finding(f, i, "en") for f in e["findings"] if f["level"] == "error"] for i, e in report.items()}
    zh = {i: [finding(f, i, "zh") for f in e["findings"] if f["level"] == "error"] for i, e in report.items()}
    # the English is what it always was
    assert en["line-1"][0].startswith("line 1 of metadata.jsonl is not valid JSON (")
    assert en["line-1"][0].endswith('each line must be one object like {"path": ..., "gt_lyric": ..., '
                                    '"descriptions": ..., "idx": ...}')
    assert en["nopath"] == ["line 2 has no 'path' (the audio file)"]
    assert en["gone"][0].startswith("audio file 'wavs/gone.wav' not found (looked in: ")
    assert en["empty"] == ["empty.wav: the file is empty (0 bytes); re-export the song"]
    # and the Chinese has no English sentence left
    assert zh["line-1"][0].startswith("metadata.jsonl 第 1 行不是有效的 JSON（"), zh
    assert zh["nopath"] == ["第 2 行没有 'path'（音频文件）"]
    assert zh["gone"][0].startswith("找不到音频文件 'wavs/gone.wav'（查找位置："), zh
    assert zh["empty"] == ["empty.wav：文件是空的（0 字节）；请重新导出这首歌"]
    for idx in ("line-1", "nopath", "gone", "empty"):
        for text in zh[idx]:
            # a JSON parser's own words may stay inside the brackets, and the example's keys are the format's
            # own; no sentence of ours is left
            outside = text.split("（", 1)[0] + text.rsplit("）", 1)[-1]
            assert not english_sentences(outside, KEYS), (idx, text)
    # kept as JSON (report.json) the findings are worded the same
    saved = json.loads(json.dumps(report["gone"]["findings"], ensure_ascii=False))
    assert finding(saved[0], "gone", "zh") == zh["gone"][0]


def test_a_folder_and_the_config_refusals_are_coded(tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "Song One.wav").write_bytes(b"")
    songs = scan_folder(folder)
    assert str(songs[0].problems[0]).startswith("no lyrics file Song One.txt (or timed lyrics Song One.lrc) next to")
    assert say(songs[0].problems[0], "zh").startswith("Song One.wav 旁边没有歌词文件 Song One.txt")
    with pytest.raises(DataError) as err:
        load_metadata(tmp_path / "nowhere.jsonl")
    assert err.value.code == "data_metadata_missing"
    assert str(err.value) == f"paths.metadata_path: {tmp_path / 'nowhere.jsonl'} does not exist; point it at your metadata.jsonl"
    assert say(err.value, "zh") == f"paths.metadata_path：{tmp_path / 'nowhere.jsonl'} 不存在；请指向你的 metadata.jsonl"
    with pytest.raises(DataError) as err:
        scan_folder(tmp_path / "nowhere")
    assert err.value.code == "data_not_a_folder" and "不是文件夹" in say(err.value, "zh")


def test_an_audio_refusal_names_the_users_file_in_both_languages(tmp_path):
    from core.audio import io as audio_mod
    bad = tmp_path / "audio.wav"
    bad.write_bytes(b"RIFF not really a wave file at all")
    with pytest.raises(audio_mod.AudioError) as err:
        audio_mod.read_audio(bad, name="我的歌.wav")
    assert err.value.code == "audio_unreadable"
    assert str(err.value).startswith("我的歌.wav: cannot be read as audio (")
    zh = say(err.value, "zh")
    assert zh.startswith("我的歌.wav：无法作为音频读取（") and zh.endswith("请导出为 WAV 或 FLAC 后再试"), zh


def test_field_reasons_and_unreadable_text_files_are_worded_in_chinese(tmp_path):
    """core/text/fields.py's reasons (a value of the wrong type, an unreadable lyric file) are coded notes: the
    English unchanged, the Chinese worded whole, also inside a refusal that wraps them (metadata.jsonl)."""
    from core.text.fields import decode_text, description_field, lyric_field, number_field
    from studio import feedback

    for src in ("text/fields.py",):  # no reason returned as a written-out sentence
        for node in ast.walk(ast.parse((CORE / src).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
                assert not _is_text(node.value.elts[1]), f"{src}:{node.lineno}: an uncoded reason"
    reasons = [lyric_field(["x"], "line 1")[1], description_field(5, "line 2")[1], number_field("abc", "prompt_start_s", "s")[1],
               decode_text(b"caf\xe9", "lyrics.txt")[1]]
    assert reasons[0].startswith("line 1: 'gt_lyric' must be a text string, got a list")
    assert reasons[3] == "lyrics.txt is not UTF-8 text (byte 0xe9 at position 3); open it in a text editor and save it as UTF-8"
    for r in reasons:
        zh = say(r, "zh")
        assert zh != str(r) and not english_sentences(zh, KEYS | {"gt_lyric", "prompt_start_s", "descriptions"}), zh
    (tmp_path / "metadata.jsonl").write_bytes(b"\xff\xfe\x00\xd8")
    with pytest.raises(DataError) as e:
        load_metadata(tmp_path / "metadata.jsonl")
    zh = feedback.message(e.value, "zh")
    assert "字节序标记" in zh and "byte-order mark" in feedback.message(e.value, "en"), zh


def test_where_a_field_is_wrong_is_worded_in_the_readers_language_too(tmp_path):
    """The place a field reason names (a metadata.jsonl line, a song of a list, "this song") is itself coded: a
    Chinese page reads 第 2 行 / 第 1 首歌, not the English "line 2" inside a Chinese sentence; the English unchanged."""
    from core.data.inputs import coerce_items

    (tmp_path / "a.wav").write_bytes(b"")
    meta = tmp_path / "metadata.jsonl"
    meta.write_text("\n".join([
        json.dumps({"idx": "ok", "path": "a.wav", "gt_lyric": GOOD_LYRICS, "descriptions": "pop"}),
        json.dumps({"idx": "bad", "path": "a.wav", "gt_lyric": ["x"], "descriptions": "pop",
                    "prompt_start_s": "soon"})]) + "\n", encoding="utf-8")
    bad = [s for s in load_metadata(meta) if s.idx == "bad"][0]
    listed = coerce_items([{"audio": str(tmp_path / "a.wav"), "lyrics": 5, "description": "pop"}])[0]
    en = [str(p) for p in bad.problems + listed.problems]
    assert "line 2: 'gt_lyric' must be a text string, got a list" in en[0]
    assert en[1].startswith("this song: 'prompt_start_s' must be a number of seconds")
    assert en[2].startswith("song #1: ")
    zh = [say(p, "zh") for p in bad.problems + listed.problems]
    assert zh[0].startswith("第 2 行") and zh[1].startswith("这首歌") and zh[2].startswith("第 1 首歌"), zh
    for text in zh:
        assert not english_sentences(text, KEYS | {"gt_lyric", "prompt_start_s", "lyrics"}), text
        assert "line" not in text and "song" not in text, text
    # kept as JSON (a saved check, report.json) the place is worded the same
    saved = json.loads(json.dumps([p.to_dict() for p in bad.problems], ensure_ascii=False))
    assert [say(s, "zh") for s in saved] == zh[:2]
