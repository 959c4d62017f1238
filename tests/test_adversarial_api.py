"""The public studio's HTTP API as a script (or an attacker) drives it by hand (issue 25, round two).

- a refusal fails the event for every caller: a raw /gradio_api/queue/join that sends what the page
  sends (a `trigger_id`, a session) still reads an error on the stream, for a Data tab refusal, a quota
  and a run action; the page's follow-up then hands that session the outputs it shows in place;
- Gradio's temporary copy of an upload is gone once add_song has copied it into the sandbox, and a
  second use of that upload is refused with a reason instead of a bare "file not found".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.datagen import GOOD_LYRICS, write_song  # noqa: E402
from tests.studio_server import serve  # noqa: E402

httpx = pytest.importorskip("httpx")


def _public_app(ws: Path):
    from studio.app import build_app
    from studio.space import SpaceInfo

    return build_app(workspace=ws, space=SpaceInfo(on_space=True, space_id="x/y", demo_mode=True,
                                                   persistent_data=False, public=True))


def _event(demo, api_name: str):
    return next(f for f in demo.fns.values() if f.api_name == api_name)


def _follow_up(demo, f):
    return next(g for g in demo.fns.values() if g.trigger_after == f._id and g.trigger_only_on_failure)


def _raw(http: httpx.Client, f, data: list, session: str, page: bool = True) -> dict:
    """Run event `f` as the page does (its button's `trigger_id`) over the bare queue protocol -> the
    stream's process_completed message."""
    body = {"data": data, "fn_index": f._id, "session_hash": session, "event_data": None,
            "trigger_id": f.targets[0][0] if page and f.targets else None}
    r = http.post("/gradio_api/queue/join", json=body)
    assert r.status_code == 200, r.text
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the stream ended without process_completed")


def _upload(http: httpx.Client, path: Path) -> str:
    r = http.post("/gradio_api/upload", files={"files": (path.name, path.read_bytes())})
    assert r.status_code == 200, r.text
    return r.json()[0]


def _file(path: str, name: str) -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def test_refusals_fail_for_a_raw_caller_that_sends_what_the_page_sends(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_QUOTA_SONGS", "1")
    demo = _public_app(tmp_path / "ws")
    add, save_now = _event(demo, "add_song"), _event(demo, "save_now")
    try:
        url = serve(demo)
        with httpx.Client(base_url=url, timeout=120) as http:
            # the Data tab: no audio file
            done = _raw(http, add, [None, GOOD_LYRICS, "pop", ""], "mallory1")
            assert done["success"] is False, done
            assert done["output"]["error"] == "Choose an audio file first.", done
            # the page's follow-up (same session) shows it as one warning, every output left as it was
            shown = _raw(http, _follow_up(demo, add), [], "mallory1")
            assert shown["success"] is True
            assert all(o == {"__type__": "update"} for o in shown["output"]["data"]), shown

            # a quota: one song allowed, the second refused
            wav = write_song(tmp_path / "s.wav", seconds=2.0, seed=4)
            first = _raw(http, add, [_file(_upload(http, wav), "s.wav"), GOOD_LYRICS, "pop", ""], "mallory2")
            assert first["success"] is True, first
            wav2 = write_song(tmp_path / "t.wav", seconds=2.0, seed=5)
            done = _raw(http, add, [_file(_upload(http, wav2), "t.wav"), GOOD_LYRICS, "pop", ""], "mallory2")
            assert done["success"] is False and "song limit reached" in done["output"]["error"], done

            # a run action whose refusal the page shows under the buttons: Save now with no run picked
            done = _raw(http, save_now, [None], "mallory3")
            assert done["success"] is False and "No run selected" in done["output"]["error"], done
            shown = _raw(http, _follow_up(demo, save_now), [], "mallory3")
            assert shown["success"] is True and shown["output"]["data"][0].startswith("⚠ No run selected"), shown
            # what one session was refused is never shown to another
            other = _raw(http, _follow_up(demo, save_now), [], "mallory4")
            assert other["output"]["data"] == [{"__type__": "update"}], other
            # and without a trigger_id (a plain script) it is the same error
            done = _raw(http, save_now, [None], "mallory5", page=False)
            assert done["success"] is False and "No run selected" in done["output"]["error"], done
    finally:
        demo.close()


def test_an_upload_is_deleted_once_add_song_has_copied_it(tmp_path):
    demo = _public_app(tmp_path / "ws")
    add = _event(demo, "add_song")
    try:
        url = serve(demo)
        with httpx.Client(base_url=url, timeout=120) as http:
            wav = write_song(tmp_path / "keep.wav", seconds=2.0, seed=6)
            uploaded = _upload(http, wav)
            assert Path(uploaded).is_file()
            done = _raw(http, add, [_file(uploaded, "keep.wav"), GOOD_LYRICS, "pop", ""], "visitor")
            assert done["success"] is True, done
            assert not Path(uploaded).exists(), "Gradio's temporary copy outlived the add"
            assert wav.is_file()  # the caller's own file is never touched
            assert len(list((tmp_path / "ws" / "sandboxes").rglob("song.json"))) == 1
            # the same upload again: refused with a reason, not a bare missing file
            again = _raw(http, add, [_file(uploaded, "keep.wav"), GOOD_LYRICS, "pop", ""], "visitor")
            assert again["success"] is False and "no longer on the server" in again["output"]["error"], again
        assert demo.delete_cache == (600, 600)  # abandoned uploads go after 10 minutes
    finally:
        demo.close()


def test_files_an_event_returns_are_staged_outside_the_workspace(tmp_path, monkeypatch):
    """serving.publish_outputs: the file outputs' paths (a value, an update's value, a list) become copies
    in the private staging folder, named as before; text outputs and Gradio's own files are left alone."""
    import tempfile

    import gradio as gr

    from studio import serving

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-uploads"))
    ws = tmp_path / "ws"
    song = write_song(ws / "songs" / "a" / "audio.wav", seconds=1.0, seed=2)
    cfg = ws / "configs" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("a: 1\n", encoding="utf-8")
    outputs = [gr.Textbox(), gr.Audio(type="filepath"), gr.File(), gr.Gallery()]
    text, audio, upd, gallery = serving.publish_outputs(
        (str(song), str(song), gr.update(value=str(cfg), visible=True), [(str(song), "caption")]), outputs)
    assert text == str(song)  # a text output naming a path is text, not a file to hand out
    staged = [Path(audio), Path(upd["value"]), Path(gallery[0][0])]
    for p, src in zip(staged, (song, cfg, song)):
        assert p.name == src.name and p.read_bytes() == src.read_bytes()
        assert not p.is_relative_to(ws) and p.is_relative_to(tempfile.gettempdir())
    assert upd["visible"] is True and gallery[0][1] == "caption"
    assert len({p.parent for p in staged}) == 3  # each under a folder of its own, named at random

    # Gradio's own upload folder: handed over as is, and deleted only there
    upload = Path(serving.get_upload_folder()) / "abc123" / "up.wav"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(song.read_bytes())
    assert serving.publish_outputs(str(upload), [gr.Audio()]) == str(upload)
    serving.discard_uploads([str(song), str(upload)], "lyrics with no path", None)
    assert song.is_file() and not upload.exists() and not upload.parent.exists()
