"""The public studio as an anonymous attacker would try it over HTTP (issue 25).

- the file route: every file of the workspace (sandboxes, keys, run configs, bookkeeping), named by its
  path, is refused; what a visitor was sent (a cached copy) is served;
- a 2-hour compressed, near-silent upload is refused from its header/stream: the server's memory
  grows by far less than the decode would take;
- uploads over the quota are refused by Gradio itself (max_file_size);
- what a new anonymous visitor costs on disk (no copy of the demo model), and how many sandboxes one
  address can make.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.datagen import GOOD_LYRICS, write_song  # noqa: E402
from tests.studio_server import serve  # noqa: E402


def _public_app(ws: Path):
    from studio.app import build_app
    from studio.space import SpaceInfo

    return build_app(workspace=ws, space=SpaceInfo(on_space=True, space_id="x/y", demo_mode=True,
                                                   persistent_data=False, public=True))


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_no_workspace_file_is_served_by_path(tmp_path):
    import httpx
    from gradio_client import Client, handle_file

    ws = tmp_path / "ws"
    demo = _public_app(ws)
    try:
        url = serve(demo)
        alice = Client(url, verbose=False)
        wav = write_song(tmp_path / "alice_song.wav", seconds=2.0, seed=3)
        alice.predict(handle_file(str(wav)), GOOD_LYRICS, "female, pop", api_name="/add_song")
        boxes = demo.studio_ctx.sandboxes
        # neither the workspace nor the key folder is an allowed path: Gradio blocks both (postprocess too)
        roots = (ws.resolve(), boxes.key_dir.resolve())
        assert not any(Path(a).resolve() == r or r in Path(a).resolve().parents or Path(a).resolve() in r.parents
                       for a in demo.allowed_paths for r in roots), demo.allowed_paths
        assert {str(r) for r in roots} <= {str(Path(b).resolve()) for b in demo.blocked_paths}, demo.blocked_paths
        files = [p for root in (ws, boxes.key_dir) for p in root.rglob("*") if p.is_file()]
        names = {p.name for p in files}
        # what an attacker wants most is there to be asked for
        assert {"sandbox.key", "song.json", ".owner.json", "config.yaml"} <= names, names
        assert not (ws / "sandboxes" / ".secret").exists()
        with httpx.Client(base_url=url, timeout=30) as http:
            served = {}
            for p in files:
                for name in (str(p), str(p.relative_to(tmp_path)), f"{ws}/sandboxes/../{p.relative_to(ws.parent)}"):
                    r = http.get(f"/gradio_api/file={name}")
                    if r.status_code == 200:
                        served[name] = r.content[:80]
            assert served == {}, served
            # a visitor's own media still plays: what an event returned is a cached copy
            detail = alice.predict("alice_song", api_name="/song_detail")
            cached = [d for d in (detail if isinstance(detail, (list, tuple)) else [detail])
                      if isinstance(d, str) and d.endswith(".wav")]
            assert cached and not Path(cached[0]).is_relative_to(ws), detail
            r = http.get(f"/gradio_api/file={cached[0]}")
            assert r.status_code == 200 and r.content == wav.read_bytes()
        # nor is the workspace's place on the server told to a visitor
        model = alice.predict("demo", "", api_name="/inspect_model")
        assert "max duration" in str(model) and str(ws) not in str(model), model
    finally:
        demo.close()


def _peak_rss_during(fn) -> tuple[int, object]:
    """(peak resident memory growth of this process while fn runs, what fn returned or raised)."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out = fn()
    except Exception as err:  # the refusal is the expected outcome
        out = err
    finally:
        done.set()
        t.join()
    return peak[0] - base, out


def _two_hour_flac(path: Path) -> Path:
    """2 h of near-silence (one 1-LSB click a second) at 16 kHz: ~4 MB of FLAC, 460 MB as float32."""
    sr = 16000
    block = np.zeros(sr * 60, dtype=np.int16)
    block[::sr] = 1
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(120):
            f.write(block)
    return path


def test_a_two_hour_compressed_upload_costs_little_memory(tmp_path):
    from gradio_client import Client, handle_file

    flac = _two_hour_flac(tmp_path / "long.flac")
    assert flac.stat().st_size < 8 * 2**20 and sf.info(str(flac)).duration == pytest.approx(7200)
    ws = tmp_path / "ws"
    demo = _public_app(ws)
    try:
        client = Client(serve(demo), verbose=False)
        grew, out = _peak_rss_during(
            lambda: client.predict(handle_file(str(flac)), GOOD_LYRICS, "pop", api_name="/add_song"))
        assert grew < 500 * 2**20, f"server memory grew by {grew / 2**20:.0f} MiB"
        assert "longer than the 20m00s any song may last here" in str(out), out
    finally:
        demo.close()


def test_a_header_that_understates_the_length_is_still_capped(tmp_path, monkeypatch):
    """Memory for one check is bounded by MAX_AUDIO_S whatever the header claims."""
    from core.audio import io as audio

    wav = write_song(tmp_path / "s.wav", seconds=6.0, seed=1)
    monkeypatch.setattr(audio, "MAX_AUDIO_S", 4.0)
    real = audio.probe

    def lying_probe(p, name=None):  # a header claiming 3 s
        info = real(p, name)
        info.frames = info.sample_rate * 3
        return info

    monkeypatch.setattr(audio, "probe", lying_probe)
    res, out = audio.qc_file(wav, max_dur=None, min_dur=1.0)
    assert out is None and [f.code for f in res.errors] == ["too_long"]
    assert "holds more audio than its header says" in res.errors[0].message
    with pytest.raises(audio.AudioError, match="holds more audio than its header says"):
        audio.read_audio(wav, max_seconds=4.0)


def test_uploads_over_the_quota_are_refused_by_the_server(tmp_path, monkeypatch):
    import httpx

    monkeypatch.setenv("STUDIO_QUOTA_UPLOAD_MB", "1")
    ws = tmp_path / "ws"
    demo = _public_app(ws)
    try:
        url = serve(demo)
        assert demo.max_file_size == 2**20
        with httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/gradio_api/upload", files={"files": ("big.wav", b"\0" * (2 * 2**20))})
            assert r.status_code == 413, r.text[:200]
            ok = http.post("/gradio_api/upload", files={"files": ("small.wav", b"\0" * 1000)})
            assert ok.status_code == 200
        assert demo.delete_cache is not None  # Gradio's temporary copies are deleted when old
    finally:
        demo.close()


def test_a_new_anonymous_visitor_costs_no_copy_of_the_demo_model(tmp_path, monkeypatch):
    from studio.sandbox import Limits, Sandboxes

    monkeypatch.setenv("SPACE_ID", "x/y")  # behind the Space's proxy: its X-Forwarded-For hop is the address

    class Req:
        def __init__(self, h, addr="203.0.113.7"):
            self.session_hash, self.username = h, None
            self.headers = {"x-forwarded-for": f"10.0.0.1, {addr}"}  # the client's own entry, then the proxy's

    boxes = Sandboxes(tmp_path / "ws", Limits(new_sandboxes=3))
    before = _tree_size(tmp_path)
    first = boxes.for_request(Req("a1"))
    shared = _tree_size(tmp_path) - before  # the first visitor builds the shared demo runtime once
    assert (first.root / "models" / "demo").is_symlink()
    ckpt = first.root / "models" / "demo" / "ckpt" / "songgen_demo" / "config.yaml"
    assert ckpt.is_file()
    mid = _tree_size(tmp_path)
    boxes.for_request(Req("a2"))
    boxes.for_request(Req("a3"))
    per_visitor = (_tree_size(tmp_path) - mid) / 2
    assert per_visitor < 4096, per_visitor  # a marker and the owner record, no model copy
    assert shared > 10 * per_visitor
    # a fourth new sandbox from the same address within the hour is refused; another address is not
    with pytest.raises(Exception, match="Too many new sessions"):
        boxes.for_request(Req("a4"))
    boxes.for_request(Req("b1", addr="198.51.100.9"))
    # an existing visitor keeps working
    assert boxes.for_request(Req("a1")).root == first.root
    # a fresh page's load events create one sandbox at the same time: the second link finds the first
    boxes._link_demo(first.root)
    assert (first.root / "models" / "demo").resolve() == boxes.shared_demo.resolve()


# ---- one visitor, bounded: one job at a time, the compute quota held while a job runs -------------------
def _sandbox(tmp_path, **quota):
    from studio.state import Quota, Workspace

    q = {"upload_bytes": 2**20, "songs": 5, "compute_seconds": 5.0, **quota}
    return Workspace(tmp_path / "ws" / "sandboxes" / "visitor", quota=Quota(**q))


class _Clock:
    """core.runs.budget's `time` with a hand-moved monotonic clock (no test waits on wall time)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def test_a_tokenize_job_is_stopped_at_the_quota_while_it_runs(tmp_path, monkeypatch):
    from core import data
    from core.runs import budget
    from studio import backend

    ws = _sandbox(tmp_path)
    clock = _Clock()
    monkeypatch.setattr(budget, "time", clock)
    steps = []

    def long_prepare(cfg, progress=None, **kw):  # what core.data.prepare does: report each song it starts
        for i in range(100):
            clock.now += 1.0  # each song takes a second of the quota's 5
            progress(i, 100, f"song {i}")
            steps.append(i)
        return None

    monkeypatch.setattr(data, "prepare", long_prepare)
    with pytest.raises(Exception, match="compute time is spent"):
        backend.prepare(ws)
    assert len(steps) == 5  # stopped at the quota, not at the end of the job
    assert ws.compute_seconds_left() == 0
    with pytest.raises(Exception, match="Compute time limit reached"):
        backend.prepare(ws)


def test_one_visitor_runs_one_job_at_a_time(tmp_path, monkeypatch):
    from studio import backend, preference

    ws = _sandbox(tmp_path, compute_seconds=900.0)
    inside, release = threading.Event(), threading.Event()

    def slow_prepare(ws_, progress, lang, **kw):
        inside.set()
        release.wait(60)
        return {"ok": True}

    monkeypatch.setattr(backend, "_prepare", slow_prepare)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(out=backend.prepare(ws)))
    t.start()
    try:
        assert inside.wait(60)
        with pytest.raises(Exception, match="Another job of this session"):
            backend.prepare(ws)  # a second tab, or a script calling the API in parallel
        with pytest.raises(Exception, match="Another job of this session"):
            preference.generate(ws, None, 1.0, GOOD_LYRICS, "pop", 1, 0, 2)  # candidates for pairs
    finally:
        release.set()
        t.join(60)
    assert first["out"] == {"ok": True}
    # another visitor is not held up by this one
    other = _sandbox(tmp_path / "b", compute_seconds=900.0)
    release.set()
    assert backend.prepare(other) == {"ok": True}


def _active_run(ws) -> Path:
    from core.config import parse_config
    from core.runs import process
    from core.runs import store as runs

    run = runs.create_run(parse_config({"workspace": str(ws.root), "paths": {"base_model_path": "demo"}}), name="sft")
    runs.update_run_json(run, status="running", pid=os.getpid(), pgid=None, launched_by="studio",
                         pid_start=process.process_start_time(os.getpid()))
    return run


def test_a_dpo_run_is_refused_while_the_visitor_trains(tmp_path):
    from core.preference.pairs import PairStore, pairs_dir
    from core.runs import store as runs
    from studio import preference
    from studio.sandbox import one_job

    ws = _sandbox(tmp_path)
    _active_run(ws)
    store = PairStore(pairs_dir(preference._cfg(ws)))
    store.add([{"prompt_id": "p", "lyrics": GOOD_LYRICS, "description": "pop", "chosen": [[1, 2]] * 3,
                "rejected": [[3, 4]] * 3}])
    for _ in range(3):
        with pytest.raises(Exception, match="wait for it to finish"):
            preference.start_dpo_run(ws, {"base_kind": "demo"}, {}, "no pairs")
    assert len(runs.list_runs(ws.root)) == 1  # only the SFT run: no DPO run was created or started
    with pytest.raises(Exception, match="Another job of this session"):
        with one_job(ws):  # nor any other job of this visitor while it trains
            pass


def test_a_visitor_cannot_launch_more_processes_than_the_machine_has(tmp_path, monkeypatch):
    import torch

    from core.runs import store as runs
    from studio import backend

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    ws = _sandbox(tmp_path)
    (ws.root / "prepared" / "ds").mkdir(parents=True)
    ws.set_state(dataset_dir=str(ws.root / "prepared" / "ds"))
    with pytest.raises(Exception, match="runs at most 1"):
        backend.start_new_run(ws, {"base_kind": "demo", "training.num_processes": 3})
    assert runs.list_runs(ws.root) == []


def test_every_kind_of_file_counts_against_the_byte_quota(tmp_path):
    from studio import preference, timing_edit

    ws = _sandbox(tmp_path, upload_bytes=200_000)
    wav = write_song(tmp_path / "s.wav", seconds=1.0, seed=1)  # ~190 KB
    idx = ws.add_song(wav, GOOD_LYRICS, "pop")
    big_lrc = tmp_path / "big.lrc"
    big_lrc.write_text("[00:01.00][verse] la la la\n" * 2000, encoding="utf-8")  # ~52 KB
    with pytest.raises(Exception, match="upload limit reached"):
        timing_edit.use_lrc(ws, idx, str(big_lrc))
    assert ws.song(idx).get("lrc_path") is None
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("{}\n" * 10_000, encoding="utf-8")  # 30 KB
    with pytest.raises(Exception, match="upload limit reached"):
        preference.import_pairs(ws, str(pairs))


def test_what_new_anonymous_visitors_cost_on_a_live_public_studio(tmp_path):
    """Each new session is a sandbox: after the first visitor built the shared demo runtime, another
    visitor who looks at the demo model costs a few bookkeeping bytes, not a copy of the model."""
    from gradio_client import Client

    ws = tmp_path / "ws"
    demo = _public_app(ws)
    try:
        url = serve(demo)
        Client(url, verbose=False).predict("demo", "", api_name="/inspect_model")
        before = _tree_size(ws)
        for _ in range(3):
            assert "max duration" in str(Client(url, verbose=False).predict("demo", "", api_name="/inspect_model"))
        per_visitor = (_tree_size(ws) - before) / 3
        boxes = [p for p in (ws / "sandboxes").iterdir() if not p.name.startswith(".")]
        assert per_visitor < 64 * 1024, f"{per_visitor:.0f} bytes per new visitor"
        assert len(boxes) == 4 and all((b / "models" / "demo").is_symlink() for b in boxes)
    finally:
        demo.close()
