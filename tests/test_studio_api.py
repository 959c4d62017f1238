"""The studio's buttons through its HTTP API (gradio_client), against the app launched in-process
on 127.0.0.1 with a temporary workspace and the demo model / demo codec."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.paths import SAMPLE_WAV
from tests.studio_server import running_studio

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

gradio_client = pytest.importorskip("gradio_client")
sf = pytest.importorskip("soundfile")

SAMPLE = SAMPLE_WAV


def synth_song(path: Path, seconds: float = 12.0, sr: int = 48000, seed: int = 0) -> Path:
    """A small stereo 'song': a sung-like melody (vibrato sine + harmonics) over bass and hi-hat noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    notes = 220 * 2 ** (np.array([0, 4, 7, 12, 7, 4, 2, 0]) / 12)
    f = notes[(t * 2).astype(int) % len(notes)] * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    voice = 0.25 * (np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.1 * np.sin(3 * phase))
    bass = 0.2 * np.sin(2 * np.pi * 55 * t) * (0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0))
    hat = 0.05 * rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.02)
    mix = np.stack([voice + bass + hat, 0.9 * voice + bass + hat], axis=1).astype(np.float32)
    sf.write(str(path), mix, sr)
    return path


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    ws = tmp_path_factory.mktemp("studio-ws")
    with running_studio(ws) as (url, demo):
        yield demo, gradio_client.Client(url, verbose=False), ws


def test_endpoints_exist(studio):
    _, client, _ = studio
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    for ep in ("/add_song", "/import_files", "/check_songs", "/accept_fix", "/save_lyric", "/remove_song",
               "/tokenize", "/preview_config", "/inspect_model", "/save_config", "/start_run", "/stop_run",
               "/save_now", "/sample_now", "/resume_run", "/poll", "/list_runs", "/list_checkpoints",
               "/merge", "/generate", "/ab", "/sweep", "/push"):
        assert ep in names, ep


def test_add_fix_and_edit_song(studio, tmp_path):
    _, client, ws = studio
    from gradio_client import handle_file
    wav = synth_song(tmp_path / "my song.wav")
    table, pick, msg, player, original, fixed, findings, *cleared = client.predict(
        handle_file(str(wav)), "[Verse 1]\nwalking down the road\nsun is in my eyes\n\n[Chorus]\noh oh oh",
        "Female, Pop, piano", api_name="/add_song")
    assert pick["value"] == "my_song"
    assert cleared[1:3] == ["", ""]  # the form is emptied for the next song
    assert "[verse] walking down the road" in fixed and " ; [chorus]" in fixed
    assert "**fixed**" in findings
    row = [r for r in table["data"] if r[0] == "my_song"][0]
    assert row[6] == "fixed"
    # accept the fix: the song is now ok and its stored lyric is the official form
    table, *_rest = client.predict("my_song", fixed, api_name="/accept_fix")
    song = json.loads((ws / "uploads/songs/my_song/song.json").read_text())
    assert song["gt_lyric"] == fixed and song["original_lyric"].startswith("[Verse 1]")
    assert [r for r in table["data"] if r[0] == "my_song"][0][6] in ("ok", "warning")
    # the metadata.jsonl given to core.data follows the seed format
    meta = [json.loads(x) for x in (ws / "uploads/metadata.jsonl").read_text().splitlines()]
    assert {"idx", "path", "gt_lyric", "descriptions"} <= set(meta[0])


def test_musicality_per_song(studio, tmp_path):
    _, client, ws = studio
    from gradio_client import handle_file
    wav = synth_song(tmp_path / "tiered.wav", seconds=8, seed=3)
    client.predict(handle_file(str(wav)), "[verse] one line. two lines ; [chorus] la la", "male, rock", "low",
                   api_name="/add_song")
    song = json.loads((ws / "uploads/songs/tiered/song.json").read_text())
    assert song["musicality"] == "low"
    table, pick, msg, *_ = client.predict("tiered", "medium", api_name="/set_musicality")
    assert "medium" in msg
    meta = {m["idx"]: m for m in map(json.loads, (ws / "uploads/metadata.jsonl").read_text().splitlines())}
    assert meta["tiered"]["musicality"] == "medium"  # what core.data.prepare reads
    client.predict("tiered", "", api_name="/set_musicality")  # back to the model's default
    meta = {m["idx"]: m for m in map(json.loads, (ws / "uploads/metadata.jsonl").read_text().splitlines())}
    assert "musicality" not in meta["tiered"]
    client.predict("tiered", api_name="/remove_song")


def test_bulk_import_pairs_lyrics_and_reports_problems(studio, tmp_path):
    _, client, ws = studio
    from gradio_client import handle_file
    a = synth_song(tmp_path / "alpha.wav", seconds=8, seed=1)
    (tmp_path / "alpha.txt").write_text("[verse] one line. two lines ; [chorus] la la", encoding="utf-8")
    b = synth_song(tmp_path / "beta.wav", seconds=8, seed=2)
    meta = tmp_path / "metadata.jsonl"
    meta.write_text(json.dumps({"path": "beta.wav", "idx": "beta_song", "gt_lyric": "[verse] hi there",
                                "descriptions": "male, rock", "musicality": "high"}) + "\n{broken\n",
                    encoding="utf-8")
    out = client.predict([handle_file(str(p)) for p in (a, tmp_path / "alpha.txt", b, meta)], api_name="/import_files")
    msg = out[2]
    assert "Imported 2" in msg and "line 2: not valid JSON" in msg
    ids = [c[0] for c in out[1]["choices"]]
    assert "alpha" in ids and "beta_song" in ids
    assert json.loads((ws / "uploads/songs/beta_song/song.json").read_text())["musicality"] == "high"
    # remove works and is persisted
    client.predict("alpha", api_name="/remove_song")
    assert not (ws / "uploads/songs/alpha").exists()
    client.predict("beta_song", api_name="/remove_song")


def test_tokenize_preview_and_train_loop(studio):
    demo, client, ws = studio
    from gradio_client import handle_file
    client.predict(handle_file(str(SAMPLE)), "[verse] the night is long. i sing along ; [chorus] oh la la",
                   "female, pop", api_name="/add_song")
    summary, report, budget, hist = client.predict("demo", "auto", "stems", "", 0.0, api_name="/tokenize")
    assert "Prepared dataset" in summary and "DEMO" in summary
    statuses = {r[0]: r[1] for r in report["data"]}
    assert statuses.get("sample_prompt_audio") in ("ok", "warning", "fixed")
    # a second tokenize reuses the cache
    summary2, report2, *_ = client.predict("demo", "auto", "stems", "", 0.0, api_name="/tokenize")
    assert "encoded **0**" in summary2
    plan = client.predict("demo", "auto", "stems", "", 0.0, api_name="/plan_cache")
    assert "to encode: **0**" in plan and "reused from the cache: **" in plan

    yaml_text, cmd, _est = client.predict(training_max_steps=6, training_max_frames=100, training_save_every=3,
                                          training_num_samples=0, api_name="/preview_config")
    assert "max_steps: 6" in yaml_text and "core.train" in cmd and "--config" in cmd

    run_upd, msg, *_ = client.predict(training_max_steps=6, training_max_frames=100, training_save_every=3,
                                             training_num_samples=0, run_name="api-test", api_name="/start_run")
    run = run_upd["value"]
    assert Path(run).is_dir() and "api-test" in Path(run).name and "Started" in msg
    # a second start while this run is active is refused, and leaves no new run folder behind
    before = sorted(p.name for p in (ws / "runs").iterdir())
    with pytest.raises(Exception, match="before starting another"):
        client.predict(training_max_steps=6, training_max_frames=100, training_num_samples=0, run_name="twice",
                       api_name="/start_run")
    assert sorted(p.name for p in (ws / "runs").iterdir()) == before
    # the Hub token is never in anything the studio wrote
    deadline, points = time.time() + 240, 0
    status = ""
    while time.time() < deadline:
        status, bar, plot, log, *_ = client.predict(run, api_name="/poll")
        # an update carries the frame (and its colour map); a bare {"__type__": "update"}: nothing new
        frame = plot.get("value", plot) if isinstance(plot, dict) else None
        if isinstance(frame, dict) and "data" in frame:
            points = max(points, len(frame["data"]))
        if "done" in status or "error" in status or "crashed" in status:
            break
        time.sleep(2)
    assert "done" in status, (status, (Path(run) / "train.log").read_text()[-2000:])
    assert points > 0
    assert "step 6 / 6" in bar
    # checkpoints show up in the export tab
    upd = client.predict(None, api_name="/list_checkpoints")
    labels = [c[0] for c in upd["choices"]]
    assert any("step-6" in lbl for lbl in labels)
    # resume of a finished run continues from its latest checkpoint without error
    runs = client.predict(run, api_name="/list_runs")
    assert run in [c[1] for c in runs["choices"]]


def test_flags_on_a_run(studio, tmp_path):
    _, client, ws = studio
    # flags are files the trainer reads; the buttons write them
    from core.runs.store import create_run, flag_path
    from core.config import load_config
    run = create_run(load_config(None, {"workspace": str(ws)}), name="flags")
    client.predict(None, api_name="/list_runs")  # the run list is refreshed from the files
    client.predict(str(run), api_name="/save_now")
    client.predict(str(run), api_name="/sample_now")
    client.predict(str(run), api_name="/stop_run")
    for f in ("save", "sample", "stop"):
        assert flag_path(run, f).is_file()


def test_errors_are_messages_not_crashes(studio):
    _, client, _ = studio
    with pytest.raises(Exception) as e:
        client.predict(None, api_name="/stop_run")
    assert "AppError" in type(e.value).__name__ or "No run" in str(e.value)
    with pytest.raises(Exception) as e:
        client.predict("folder", "", api_name="/inspect_model")
    assert "checkpoint folder" in str(e.value)


def test_i18n_table_complete():
    from studio.i18n import T, tr
    for key, pair in T.items():
        assert len(pair) == 2 and all(p.strip() for p in pair), key
        assert tr(key, "zh") != "" and tr(key, "en") != ""


def test_chinese_build(tmp_path):
    from studio.app import build_app
    from studio.space import SpaceInfo
    demo = build_app(workspace=tmp_path, lang="zh", space=SpaceInfo(False, None, False, False))
    labels = json.dumps(demo.get_config_file(), ensure_ascii=False, default=str)
    assert "开始训练" in labels and "歌词" in labels


def test_monitor_incremental_matches_full(tmp_path):
    from studio import monitor
    from core.runs.store import read_metrics
    run = tmp_path / "run"
    run.mkdir()
    path = run / "metrics.jsonl"
    with open(path, "w") as fh:
        for s in range(1, 51):
            fh.write(json.dumps({"type": "metrics", "step": s, "total": 100, "loss": 5 - s * 0.01,
                                 "loss_mixed": 5.0, "loss_vocal": 4.0, "loss_bgm": None}) + "\n")
    v = monitor.refresh(run)
    assert v.series["loss"].steps[-1] == 50
    with open(path, "a") as fh:  # a resumed run repeats steps 41..60: later lines win
        for s in range(41, 61):
            fh.write(json.dumps({"type": "metrics", "step": s, "total": 100, "loss": 1.0}) + "\n")
        fh.write('{"type": "metrics", "step": 61, "lo')  # partly written line is left for later
    v = monitor.refresh(run)
    full = monitor.full_reread(run)
    assert v.series["loss"].steps == list(range(1, 61)) == full.series["loss"].steps
    assert v.series["loss"].raw == full.series["loss"].raw
    assert all(abs(a - b) < 1e-12 for a, b in zip(v.series["loss"].ema, full.series["loss"].ema))
    assert v.series["loss"].raw[45] == 1.0
    assert all(x is None for x in v.series["loss_bgm"].raw)
    rows = v.rows(max_points=10)
    assert len([r for r in rows if r[2] == "loss (raw)"]) <= 11
    assert math.isclose(read_metrics(run)[1], path.stat().st_size - len('{"type": "metrics", "step": 61, "lo'))


def test_merge_ab_and_push_never_store_the_token(studio, monkeypatch, tmp_path):
    """After the training test: merge, A/B, then push through the UI's API to a loopback fake Hub. The token
    typed in the password field reaches core.export.hub and is found in no file the studio wrote."""
    import secrets
    from tests.fake_hub import FakeHub
    _, client, ws = studio
    ck = client.predict(None, api_name="/list_checkpoints")["value"]
    assert ck and "step-" in ck
    msg = client.predict(ck, 1.0, api_name="/merge")
    assert "Merged model" in msg and "lora-merge" in msg
    a, b, note = client.predict(ck, 1.0, "[verse] la la. la ; [chorus] oh oh", "pop", 1, 0, None, api_name="/ab")
    assert Path(a).name.startswith("A_base") and Path(b).name.startswith("B_step-") and "validation loss" in note
    sw = client.predict(ck, "0, 1", "[verse] la la. la ; [chorus] oh oh", "pop", 1, 0, None, api_name="/sweep")
    shown = [u for u in sw if u.get("visible")]
    assert [Path(u["value"]).name for u in shown] == ["strength-0_seed0.wav", "strength-1_seed0.wav"]

    token = "hf_" + secrets.token_hex(17)
    fake = FakeHub(token)
    monkeypatch.setenv("HF_ENDPOINT", fake.start())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        with pytest.raises(Exception) as e:  # a wrong token: an error in words, the token not echoed
            client.predict(ck, 1.0, "alice/studio-test", True, True, True, False, "hf_wrongwrongwrong123",
                           api_name="/push")
        assert "wrongwrong" not in str(e.value)
        out = client.predict(ck, 1.0, "alice/studio-test", True, True, True, False, token, api_name="/push")
        assert "alice/studio-test" in out and "private" in out
        files = fake.files("alice/studio-test")
        assert {"README.md", "adapter/adapter_config.json", "merged/model.pt"} <= set(files)
        assert any(f.startswith("samples/") for f in files)
    finally:
        fake.stop()
    leaks = [str(p) for p in Path(ws).rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert leaks == []
