"""Every user-facing string of the studio in English and Chinese; one refusal shows one message; messages
name the fields the user sees. Handlers are called as Gradio calls them (no browser)."""
from __future__ import annotations

import string
import warnings

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")


def _fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}


def test_every_key_has_both_languages_with_the_same_placeholders():
    from studio.i18n import T
    for key, pair in T.items():
        assert len(pair) == 2, key
        en, zh = pair
        assert en.strip() and zh.strip(), key
        assert _fields(en) == _fields(zh), (key, _fields(en), _fields(zh))


def test_every_field_label_is_in_the_table():
    from studio.i18n import T
    from studio.widgets import FIELD_LABELS
    assert set(FIELD_LABELS.values()) <= set(T)


@pytest.fixture()
def app(tmp_path):
    from studio.app import build_app
    from studio.space import SpaceInfo
    return build_app(workspace=tmp_path, space=SpaceInfo(False, None, False, False))


def _mono_song(path, seconds=6.0, sr=44100):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def test_qc_reason_lyric_finding_and_status_render_in_chinese(app, tmp_path):
    from studio import backend
    from studio.tabs import data
    ctx = app.studio_ctx
    idx = ctx.ws.add_song(str(_mono_song(tmp_path / "mono take.wav")), "[Verse 1]\nwalking down the road\n\n[Chorus]\noh oh",
                          "female, pop")
    ctx.ws.update_song(idx, check=backend.check_song(ctx.ws, ctx.ws.song(idx)))
    song = ctx.ws.song(idx)
    en, zh = data.reasons(song, "en"), data.reasons(song, "zh")
    assert any("mono" in r for r in en)
    assert any("单声道" in r for r in zh), zh  # the audio QC finding
    assert any("官方标签" in r or "换行已替换" in r for r in zh), zh  # a lyric finding (core.text.lyrics.Note code)
    table = data.songs_table(ctx, "zh")
    assert list(table.columns)[:2] == ["编号", "文件"]
    assert table.iloc[0, 6] == "已修正"  # status "fixed"
    from studio.i18n import status_word
    assert status_word("running", "zh") == "训练中" and status_word("done", "zh") == "已完成"


def test_presets_render_in_chinese():
    from studio.tabs.train import DEFAULT_PRESET, PRESETS, preset_choices
    zh = dict((v, lbl) for lbl, v in preset_choices("zh"))
    assert set(zh) == set(PRESETS)  # values stay the English names (the API's)
    assert "快速体验" in zh[DEFAULT_PRESET]
    assert any("全量微调" in lbl and "GB" in lbl for lbl in zh.values())


def test_estimate_and_tokenize_texts_render_in_chinese(app):
    from studio import backend
    cfg = backend.train_config(app.studio_ctx.ws, {"base_kind": "demo", "training.max_frames": 50})
    zh = backend.estimate(cfg, "zh")
    assert "显存估算" in zh and "GPU memory" not in zh
    assert "GPU memory estimate" in backend.estimate(cfg, "en")
    from studio.tabs.tokenize import budget_frame, report_frame
    assert list(report_frame([], "zh").columns) == ["编号", "状态", "划分", "秒", "来自缓存", "原因"]
    assert list(budget_frame([], "en").columns)[0] == "song"


def test_ab_explains_a_missing_validation_loss(app):
    from studio import backend
    from studio.backend_export import val_na_reason
    cfg = backend.train_config(app.studio_ctx.ws, {"base_kind": "demo"})
    no_data = val_na_reason(cfg, {"dataset": None, "songs": 0, "note": "no prepared dataset (...)"}, "zh")
    assert "第 2 步" in no_data
    no_val = val_na_reason(cfg, {"dataset": "/x", "songs": 0, "note": "..."}, "en")
    assert "no validation songs" in no_val and "second song" in no_val


def _event(app, api_name):
    return next(f for f in app.fns.values() if f.api_name == api_name)


def test_a_refusal_in_the_page_is_one_message_and_no_output_is_touched(app):
    import gradio as gr
    from gradio.helpers import EventData
    add = _event(app, "add_song")
    assert len(add.outputs) > 5  # the event that used to paint every output with an "Error" badge
    button = app.blocks[add.targets[0][0]]

    class Req:  # the page's session
        session_hash, cookies, headers = "page-session", {}, {}

    # the event fails for every caller, the page included (what a request says of itself is no proof)...
    with pytest.raises(gr.Error, match="Choose an audio file") as failed:
        add.fn(None, "", "", "", Req(), Req(), EventData(button, None))
    assert failed.value.visible is False  # ...with no error toast and no badge left in the page:
    follow = next(f for f in app.fns.values() if f.trigger_after == add._id and f.trigger_only_on_failure)
    assert follow.outputs == add.outputs and follow.show_progress == "hidden"
    with warnings.catch_warnings(record=True) as caught:  # gr.Warning outside a live queue: a Python warning
        warnings.simplefilter("always")
        out = follow.fn(Req())  # the page's follow-up shows it once, every output left as it was
    assert len(out) == len(add.outputs)
    assert all(isinstance(o, dict) and o.get("__type__") == "update" and len(o) == 1 for o in out)  # gr.skip()
    assert [str(w.message) for w in caught] == ["Choose an audio file first."]
    # the same refusal through the HTTP API (no triggering component) stays an error for the script
    with pytest.raises(gr.Error, match="Choose an audio file"):
        add.fn(None, "", "", "", None, None, None)


def test_config_errors_name_the_fields_in_the_readers_language(app):
    preview = app.studio_ui["train"]["preview"]
    inputs = app.studio_ui["train"]["inputs"]
    vals = [c.value for c in inputs]
    labels = [getattr(c.label, "key", None) for c in inputs]
    vals[labels.index("lr")] = -1.0

    class Req:  # a browser that picked Chinese in the page
        cookies = {"studio_lang": "zh"}
        headers = {}

    _, _, text = preview(*vals, Req())
    assert "“学习率”" in text and "training.learning_rate" not in text
    from studio.widgets import name_fields
    msg = name_fields("set paths.runtime_path to the SongGeneration runtime root", "en")
    assert msg.startswith("set “SongGeneration runtime folder")


def test_empty_tables_have_real_headers(app):
    cfg = app.get_config_file()
    by_id = {c["props"].get("elem_id"): c for c in cfg["components"]}
    for elem in ("songs-table", "tok-report", "tok-budget", "ckpt-table"):
        headers = by_id[elem]["props"]["value"]["headers"]
        assert headers and not any(str(h).isdigit() for h in headers), (elem, headers)


def test_bulk_import_problems_render_in_chinese(tmp_path):
    from studio.i18n import in_lang
    from studio.state import Workspace
    ws = Workspace(tmp_path / "ws")
    meta = tmp_path / "metadata.jsonl"
    meta.write_text('{broken\n{"idx": "x"}\n', encoding="utf-8")
    added, problems = ws.import_files([str(meta)])
    assert not added
    assert [str(p) for p in problems] == ["metadata.jsonl line 1: not valid JSON (one object per line), skipped",
                                          "metadata.jsonl line 2: no 'path' (the audio file name), skipped"]
    zh = [in_lang(p, "zh") for p in problems]
    assert zh[0].startswith("metadata.jsonl 第 1 行：不是有效的 JSON") and "缺少 'path'" in zh[1]


def test_the_sample_list_follows_the_samples_folder(app):
    """The final sample is written after the last metrics line: the list must pick it up by itself."""
    from core.config import load_config
    from core.runs.store import create_run
    ws = app.studio_ctx.ws
    run = create_run(load_config(None, {"workspace": str(ws.root)}), name="samples")
    tick = app.studio_ui["train"]["samples_tick"]
    (run / "samples").mkdir()
    (run / "samples" / "step-0_0.wav").write_bytes(b"RIFF")
    upd, seen = tick(str(run), None)
    assert upd["value"].endswith("step-0_0.wav")
    assert tick(str(run), seen)[0] == {"__type__": "update"}  # nothing new: nothing sent
    (run / "samples" / "step-6_0.wav").write_bytes(b"RIFF")
    upd, seen = tick(str(run), seen)
    assert upd["value"].endswith("step-6_0.wav") and len(upd["choices"]) == 2


def test_the_language_script_runs_before_gradio_picks_the_page_language(app):
    """Gradio mounts `head` after choosing the page's locale; the studio serves its script first in <head>."""
    import socket
    import urllib.request
    from studio.app import launch
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        html = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
    finally:
        app.close()
    head = html.index("<head>")
    assert head < html.index("localStorage.getItem('studio-lang')") < html.index("<script type=\"module\"")


def test_a_too_long_song_is_refused_in_chinese_with_what_to_do(tmp_path):
    from studio import backend
    from studio.i18n import finding
    wav = tmp_path / "long.wav"
    sf.write(str(wav), (0.2 * np.random.default_rng(0).standard_normal((44100 * 12, 2))).astype(np.float32), 44100)
    from studio.state import Workspace
    chk = backend.check_song(Workspace(tmp_path / "ws"), {"idx": "long", "path": str(wav), "source_name": "long.wav",
                                                          "gt_lyric": "[verse] a b. c d ; [chorus] e f"}, max_dur=10)
    assert chk["status"] == "rejected"
    zh = [finding(f, "long.wav", "zh") for f in chk["reason_findings"]]
    assert any("超过模型 10 秒的上限" in r and "分段时间" in r for r in zh), zh


def test_style_tag_findings_render_in_chinese(tmp_path):
    """core.text.description's findings are coded like the lyric ones: a mapped Chinese tag and an unknown tag."""
    from studio import backend
    from studio.i18n import finding
    from tests.paths import SAMPLE_WAV
    song = {"idx": "s", "path": str(SAMPLE_WAV), "gt_lyric": "[verse] hello there.we go ; [chorus] la la",
            "descriptions": "女声, 流行, weirdtag"}
    from studio.state import Workspace
    check = backend.check_song(Workspace(tmp_path / "ws"), song, 150)
    zh = [finding(f, "s", "zh") for f in check["reason_findings"]]
    assert "风格标签已映射到官方词表：女声 -> female, 流行 -> pop" in zh, zh
    assert "描述标签 'weirdtag' 不在官方词表中；已保留" in zh, zh
    assert "description tag 'weirdtag' is not in the official vocabularies; it is kept" in check["reasons"]
