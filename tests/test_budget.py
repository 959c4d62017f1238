"""A job's time budget (core.runs.budget) and a visitor's compute quota (studio.sandbox.compute_job).

No test waits on wall time: the budget's clock (core.runs.budget's `time`) is a hand-moved clock, moved by
the jobs' own progress hooks (a frame generated, a song tokenized), so a bound passes at a known step.
The studio flow is the newcomer's: the reduced demo model of tests/test_train.py, three short songs
tokenized with the demo codec, a DPO run (the synthetic pairs of tests/test_dpo_train.py) launched as the
Export tab launches it, then A/B of its checkpoint through studio.backend_export.ab.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.runs import budget as budget_mod
from core.runs.budget import Budget, TimeLimit

LYRICS = "[verse] lights on the water. we drift along ; [chorus] hold on. hold on"


class Clock:
    """core.runs.budget's `time`: monotonic() reads a value only the test moves."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(budget_mod, "time", c)
    return c


# ---- the rule --------------------------------------------------------------------------------------
def test_the_budget_names_the_bound_and_the_stage(clock):
    b = Budget("ab", limit_s=10, stall_s=4, limit_key="generation.time_limit_s", stall_key="generation.stall_limit_s")
    b.enter("load", "base")
    for _ in range(3):
        clock.now += 3  # under the stall bound each time
        b.check()
    clock.now += 3  # 12 s in all: past the job's bound
    with pytest.raises(TimeLimit) as e:
        b.check()
    assert e.value.code == "time_limit" and e.value.params["stage"] == "load" and e.value.params["limit"] == "10"
    assert "generation.time_limit_s" in str(e.value) and "A/B stopped during loading a model (base)" in str(e.value)

    b = Budget("ab", stall_s=4, stall_key="generation.stall_limit_s")
    b.enter("val", "B")
    clock.now += 5  # the validation loss made no step for 5 s
    with pytest.raises(TimeLimit) as e:
        b.enter("decode", "B")  # the stage that stalled is named, not the next one
    assert e.value.code == "time_stall" and e.value.params["stage"] == "val" and e.value.params["seconds"] == "5"

    b = Budget("tokenize", quota_s=2)
    clock.now += 3
    with pytest.raises(TimeLimit) as e:
        b.check()
    assert e.value.code == "time_quota"


def test_an_unset_generation_bound_is_sized_from_the_model_and_length():
    import torch

    small, big = torch.nn.Linear(10, 10), torch.nn.Linear(4000, 4000)  # 64 MB of float32
    assert budget_mod.generation_bound(small, 100, 1) == pytest.approx(300 + 3 * 100 * 0.05)
    assert budget_mod.generation_bound(big, 100, 2) == pytest.approx(300 + 3 * 100 * 2 * 0.064, rel=1e-3)
    b = Budget("single", limit_s=7)
    b.size(1000)  # a bound the config gave is kept
    assert b.limit_s == 7


def test_a_watched_job_keeps_the_callers_context_and_errors(clock):
    """run_watched runs the job in a thread with the caller's context (Gradio's progress reporter lives in
    context variables) and hands back its result or its own error."""
    import contextvars

    var = contextvars.ContextVar("event", default=None)
    var.set("event-7")
    b = Budget("single", limit_s=100)
    assert budget_mod.run_watched(b, lambda x: (var.get(), x), 3) == ("event-7", 3)

    def fails():
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="own error"):
        budget_mod.run_watched(b, fails)


# ---- the newcomer's flow on the demo model ----------------------------------------------------------
@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A workspace with tokenized songs, and a finished DPO run started as the Export tab starts it."""
    from core.codec import get_codec
    from core.runs import store as runs
    from studio import backend, preference
    from studio.state import Workspace
    from tests.test_dpo_train import synthetic_pairs
    from tests.test_studio_api import synth_song
    from tests.test_train import make_small_demo

    root = tmp_path_factory.mktemp("budget-ws")
    ckpt = make_small_demo(root)
    ws = Workspace(root)
    ws.set_state(base_model=str(ckpt), **{"data.val_fraction": 0.34})
    for i, secs in enumerate((7.0, 6.0, 5.5)):
        ws.add_song(synth_song(root / f"src{i}.wav", seconds=secs, seed=i), LYRICS, "female, pop")
    assert backend.prepare(ws)["dataset_dir"]
    preference._store(ws).add(synthetic_pairs(get_codec(preference._cfg(ws)))[:8])
    train = {"base_kind": "folder", "base_path": str(ckpt), "training.max_steps": 2, "training.max_frames": 40,
             "training.save_every": 2, "training.eval_every": 2, "training.num_samples": 0}
    run = preference.start_dpo_run(ws, train, {}, "no pairs")
    st = runs.wait_for(run, timeout=400)
    assert st["status"] == "done", runs.tail_log(run, 30)
    return {"root": root, "ws": ws, "ckpt": str(runs.latest_checkpoint(run))}


def _sandbox(flow, seconds: float):
    """The flow's workspace as a public-Space visitor's sandbox with `seconds` of compute, none used yet."""
    from studio.state import Quota, Workspace

    ws = Workspace(flow["root"], quota=Quota(upload_bytes=2**30, songs=20, compute_seconds=seconds))
    ws.set_state(compute_seconds_used=0.0)
    return ws


class Recorder:
    """A gr.Progress stand-in: keeps every (fraction, text); moves the clock `per_frame` s at each frame."""

    def __init__(self, clock: Clock | None = None, per_frame: float = 0.0):
        self.calls: list[tuple] = []
        self.clock, self.per_frame = clock, per_frame

    def __call__(self, frac, desc=""):
        self.calls.append((frac, desc))
        if ": frame " in desc and self.clock is not None:
            self.clock.now += self.per_frame


def test_ab_of_a_dpo_checkpoint_finishes_with_progress_for_every_stage(flow):
    from studio import backend

    rec = Recorder()
    res = backend.ab(flow["ws"], flow["ckpt"], 1.0, LYRICS, "female, pop", 1, 0, None, progress=rec)
    assert Path(res["a"]).is_file() and Path(res["b"]).is_file()
    texts = [d for _, d in rec.calls]
    assert all(f is not None for f, _ in rec.calls)  # Gradio shows no text for a progress of None
    for stage in ("reading the validation songs", "loading", "frame 1/", "decoding and writing A_base",
                  "decoding and writing B_step-2", "held-out validation loss of A_base",
                  "held-out validation loss of B_step-2"):
        assert any(stage in t for t in texts), f"no progress for {stage!r}: {texts[:6]} ..."
    assert "Held-out validation loss" in res["note"] and "n/a" not in res["note"]
    man = json.loads((Path(res["a"]).parent / "manifest.json").read_text(encoding="utf-8"))
    assert man["status"] == "done" and len(man["items"]) == 2


def test_generation_is_stopped_by_its_time_bound_and_left_marked_stopped(flow, clock):
    from core.export import compare
    from core.runs import store as runs
    from studio import backend_export

    cfg = runs.run_config_for_checkpoint(flow["ckpt"])
    cfg.generation.time_limit_s = 5.0
    frames = []

    def progress(name, done, total):  # each frame takes a second of the job's five
        frames.append(done)
        clock.now += 1.0

    with pytest.raises(TimeLimit) as e:
        compare.ab_compare(cfg, flow["ckpt"], out_dir=flow["root"] / "gen-stopped", with_val_loss=False,
                           progress=progress)
    assert e.value.code == "time_limit" and e.value.params["stage"] == "frames"
    assert "generation.time_limit_s" in str(e.value)
    assert len(frames) == 6  # frame 7 found 6 s spent: stopped at the bound, not at the end of the song
    man = json.loads((flow["root"] / "gen-stopped" / "manifest.json").read_text(encoding="utf-8"))
    assert man["status"] == "stopped" and "past its limit of 5 s" in man["error"] and not man["items"]
    assert "STOPPED" in (flow["root"] / "gen-stopped" / "summary.txt").read_text(encoding="utf-8")
    assert backend_export._finished(flow["root"] / "gen-stopped" / "manifest.json") is False


def test_a_stall_in_the_frame_loop_stops_generation_naming_the_stage(flow, clock):
    from core.export import compare
    from core.runs import store as runs

    cfg = runs.run_config_for_checkpoint(flow["ckpt"])
    cfg.generation.stall_limit_s = 60.0
    frames = []

    def progress(name, done, total):
        frames.append(done)
        if done == 3:
            clock.now += 61.0  # frame 4 takes longer than the stall bound

    with pytest.raises(TimeLimit) as e:
        compare.generate_single(cfg, flow["ckpt"], out_dir=flow["root"] / "gen-stall", with_val_loss=False,
                                progress=progress)
    assert e.value.code == "time_stall" and e.value.params["stage"] == "frames" and frames[-1] == 3


def test_a_stage_that_hangs_inside_one_call_still_ends_the_ab_at_the_stall_bound(flow, clock, monkeypatch):
    """Loading a model that never returns makes no step: the studio's watchdog (core.runs.budget.run_watched)
    answers at the stall bound naming the stage, and the job stops at its next step once the load returns."""
    import threading

    from core.export import generate
    from studio import backend, sandbox

    entered, release = threading.Event(), threading.Event()
    real_base = generate.ModelLoader.base

    def hung_base(self):
        entered.set()
        release.wait(300)  # hangs until the test has seen the answer
        return real_base(self)

    monkeypatch.setattr(generate.ModelLoader, "base", hung_base)

    def later():  # once the load hangs, the clock passes the 600 s stall bound of the run's config
        entered.wait(300)
        clock.now += 601

    threading.Thread(target=later, daemon=True).start()
    ws = _sandbox(flow, 10_000.0)  # a visitor's sandbox: the hung job keeps it busy until the job ends
    try:
        with pytest.raises(Exception) as e:
            backend.ab(ws, flow["ckpt"], 1.0, LYRICS, "pop", 1, 0, None)
        with pytest.raises(Exception) as busy:
            backend.prepare(ws)
        assert busy.value.key == "job_busy"
    finally:
        release.set()
    for t in threading.enumerate():  # the job itself stops at its next step
        if t.name.startswith("job-"):
            t.join(300)
    with sandbox.one_job(ws):  # and the sandbox is free again
        pass
    assert e.value.key == "err_time_stall", e.value
    text = e.value.text("en")
    assert "A/B stopped during loading a model" in text and "generation.stall_limit_s" in text
    assert "加载模型" in e.value.text("zh")
    newest = max((flow["root"] / "generations").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((newest / "manifest.json").read_text(encoding="utf-8"))["status"] == "stopped"


def test_prepare_stalled_on_a_song_is_stopped_at_the_next(flow, clock, tmp_path):
    from core import data
    from core.config import load_config
    from core.runs.budget import data_budget, song_steps

    cfg = load_config(None, {"workspace": str(flow["root"]), "paths.metadata_path": str(flow["ws"].write_metadata()),
                             "paths.base_model_path": flow["ws"].get_state()["base_model"],
                             "paths.prepared_data_dir": str(tmp_path / "prepared"), "data.stall_limit_s": 100})
    seen = []

    def progress(done, total, message):
        seen.append(message)
        if done == 0:
            clock.now += 101  # the first song took longer than the stall bound

    with pytest.raises(TimeLimit) as e:
        data.prepare(cfg, progress=song_steps(data_budget(cfg), progress))
    assert e.value.code == "time_stall" and e.value.params["stage"] == "song" and len(seen) == 1
    assert not (tmp_path / "prepared" / "latest.json").exists()  # no dataset presented as prepared


def test_a_tokenize_spends_the_quota_then_a_generation_is_refused(flow, clock):
    from studio import backend, preference
    from studio.state import Quota, Workspace

    ws = _sandbox(flow, 5.0)
    before = ws.get_state().get("dataset_dir")
    songs = []

    def progress(frac, desc=""):  # the studio's bar; each song takes 3 s of the visitor's 5
        songs.append(desc)
        clock.now += 3.0

    with pytest.raises(Exception) as e:
        backend.prepare(ws, progress)
    assert e.value.key == "err_time_quota", e.value.text("en")
    assert "compute time is spent" in e.value.text("en") and "编码" in e.value.text("zh")
    assert len(songs) == 2  # stopped at its third song, not at the end
    assert ws.get_state().get("dataset_dir") == before
    # the total is the sandbox's: a reload (a new Workspace of the same folder) sees it spent
    again = Workspace(flow["root"], quota=Quota(upload_bytes=2**30, songs=20, compute_seconds=5.0))
    assert again.compute_seconds_left() == 0
    for call in (lambda: backend.generate(again, flow["ckpt"], 1.0, LYRICS, "pop", 1, 0, None),
                 lambda: backend.ab(again, flow["ckpt"], 1.0, LYRICS, "pop", 1, 0, None),
                 lambda: backend.sweep(again, flow["ckpt"], [0, 1], LYRICS, "pop", 1, 0, None),
                 lambda: preference.generate(again, flow["ckpt"], 1.0, LYRICS, "pop", 1, 0, 2)):
        with pytest.raises(Exception) as e:
            call()
        assert getattr(e.value, "key", None) == "compute_quota", e.value


def test_a_generation_spends_the_quota_then_a_tokenize_is_refused(flow, clock):
    from studio import backend

    ws = _sandbox(flow, 4.0)
    rec = Recorder(clock, per_frame=1.0)
    with pytest.raises(Exception) as e:
        backend.ab(ws, flow["ckpt"], 1.0, LYRICS, "pop", 1, 0, None, progress=rec)
    assert e.value.key == "err_time_quota", e.value.text("en")
    assert "A/B stopped during generating frames" in e.value.text("en")
    assert "A/B 对比在生成帧" in e.value.text("zh")
    assert sum(1 for _, d in rec.calls if ": frame " in d) == 5  # the 5th frame passed the 4 s
    assert ws.compute_seconds_left() == 0
    newest = max((flow["root"] / "generations").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((newest / "manifest.json").read_text(encoding="utf-8"))["status"] == "stopped"
    from studio import backend_export
    assert backend_export._latest_generation(ws) != newest  # never offered as samples for a model card
    with pytest.raises(Exception) as e:
        backend.prepare(ws)
    assert e.value.key == "compute_quota"


def test_the_compute_count_is_kept_across_page_reloads(tmp_path, clock):
    """An anonymous visitor gets a new sandbox at each page load: its address's count follows it; a signed-in
    user's sandbox keeps its own."""
    from types import SimpleNamespace

    from studio.sandbox import Limits, Sandboxes, compute_job

    def req(session, addr="203.0.113.7", user=None):
        return SimpleNamespace(session_hash=session, username=user, headers={}, client=SimpleNamespace(host=addr))

    boxes = Sandboxes(tmp_path / "ws", Limits(compute_seconds=10))
    with compute_job(boxes.for_request(req("page-1"))):
        clock.now += 7  # a job of 7 s
    assert boxes.for_request(req("page-2")).compute_seconds_left() == 3  # the reload: a new session, same address
    assert boxes.for_request(req("page-3", addr="198.51.100.9")).compute_seconds_left() == 10
    with compute_job(boxes.for_request(req("page-4", user="ann"))):
        clock.now += 4
    assert boxes.for_request(req("page-5", user="ann")).compute_seconds_left() == 6
