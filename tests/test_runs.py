"""Run folders, status, flags, metrics reading, schedule, bucketing, crop rule: fast, no model."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.runs import process  # noqa: E402
from core.runs import store as runs
from core.config import parse_config  # noqa: E402
from core.training.schedule import crop_window, derive_seed, lr_factor, plan_epoch, shard  # noqa: E402


def _cfg(ws: Path, **training):
    return parse_config({"workspace": str(ws), "training": training})


def test_create_run_writes_config_and_record(tmp_path):
    run = runs.create_run(_cfg(tmp_path, type="full"), name="my run!")
    assert run.parent == tmp_path / "runs" and run.name.endswith("my-run")
    cfg = runs.load_run_config(run)
    assert Path(cfg.paths.output_dir) == run and cfg.training.type == "full"
    info = runs.read_run_json(run)
    assert info["status"] == "created" and info["config_hash"] == runs.config_hash(cfg)
    assert info["command"] == f"accelerate launch -m core.train --config {run / 'config.yaml'}"
    assert runs.command_for(run, resume=True).endswith("--resume")
    assert "--multi_gpu --num_processes 2" in runs.command_for(run, num_processes=2, multi_gpu=True)
    second = runs.create_run(_cfg(tmp_path), name="my run!")
    assert second != run
    assert [r["run_id"] for r in runs.list_runs(tmp_path)] == sorted([run.name, second.name], reverse=True)


def test_config_hash_ignores_output_dir(tmp_path):
    a = _cfg(tmp_path)
    b = a.model_copy(deep=True)
    b.paths.output_dir = "/elsewhere"
    assert runs.config_hash(a) == runs.config_hash(b)
    b.training.learning_rate = 0.5
    assert runs.config_hash(a) != runs.config_hash(b)


def test_dead_process_is_marked_crashed(tmp_path):
    run = runs.create_run(_cfg(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    runs.update_run_json(run, status="running", pid=proc.pid, pid_start=None)
    assert runs.mark_crashed_runs(tmp_path) == [run.name]
    st = runs.run_status(run)
    assert st["status"] == "crashed" and not st["alive"] and "gone" in st["error"]
    # a terminal status is never overwritten
    runs.update_run_json(run, status="done")
    assert runs.run_status(run)["status"] == "done"


def test_live_process_and_pid_reuse(tmp_path):
    run = runs.create_run(_cfg(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        start = process.process_start_time(proc.pid)
        runs.update_run_json(run, status="running", pid=proc.pid, pgid=proc.pid, pid_start=start)
        st = runs.run_status(run)
        assert st["status"] == "running" and st["alive"]
        # the same pid with another start time is another process: the run is gone
        runs.update_run_json(run, pid_start=(start or 0) + 12345)
        assert runs.run_status(run)["status"] == "crashed"
        runs.update_run_json(run, status="running", pid_start=start)
        runs.kill_run(run)  # SIGKILL to the process group
        proc.wait(timeout=10)
        assert runs.run_status(run)["status"] == "crashed"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_flags(tmp_path):
    run = runs.create_run(_cfg(tmp_path))
    runs.request_save(run)
    runs.request_sample(run)
    assert runs.flag_path(run, "save").is_file() and runs.flag_path(run, "sample").is_file()
    runs.stop_run(run)
    assert runs.flag_path(run, "stop").is_file()
    runs.clear_flags(run)
    assert not any(runs.flag_path(run, f).exists() for f in runs.FLAGS)
    with pytest.raises(ValueError):
        runs.flag_path(run, "explode")


def test_read_metrics_incremental(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    path = run / runs.METRICS_NAME
    lines = [{"type": "metrics", "step": i, "loss": 10.0 - i * 0.001} for i in range(1, 100_001)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    recs, off = runs.read_metrics(run, 0, max_bytes=1 << 30)
    assert len(recs) == 100_000 and off == path.stat().st_size
    t0 = time.perf_counter()
    again, off2 = runs.read_metrics(run, off)
    assert again == [] and off2 == off and time.perf_counter() - t0 < 0.05  # a poll costs nothing
    with open(path, "a") as fh:  # a half-written line waits for the next poll
        fh.write(json.dumps({"type": "event", "event": "checkpoint", "step": 100_000}) + "\n" + '{"type": "metr')
    new, off3 = runs.read_metrics(run, off)
    assert [r["event"] for r in new] == ["checkpoint"]
    with open(path, "a") as fh:
        fh.write('ics", "step": 5, "loss": null}\n')
    new, off4 = runs.read_metrics(run, off3)
    assert new == [{"type": "metrics", "step": 5, "loss": None}] and off4 == path.stat().st_size
    series = runs.metrics_series(recs + new)
    assert series[4] == (5, None) and len(series) == 100_000  # the later line of a step wins
    path.write_text("")  # replaced file: start again
    assert runs.read_metrics(run, off4) == ([], 0)


def test_lr_schedule_shape():
    total, warm, m = 100, 10, 0.1
    f = [lr_factor(u, total, warm, m) for u in range(total + 5)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warm-up, peak at the last one
    assert all(b > a for a, b in zip(f[:9], f[1:10]))
    assert f[10] == pytest.approx(1.0)
    mid = warm + (total - warm) // 2
    assert f[mid] == pytest.approx(m + 0.5 * (1 - m) * (1 + math.cos(math.pi * 0.5)))
    assert all(b <= a for a, b in zip(f[10:total], f[11:total]))
    assert f[total] == f[total + 4] == pytest.approx(m)
    assert lr_factor(0, 10, 0, 0.0) == pytest.approx(1.0)


def test_plan_epoch_buckets_and_is_deterministic():
    lengths = [10, 500, 20, 490, 30, 480, 15, 470, 25]
    a = plan_epoch(lengths, 2, seed=3, epoch=0, bucket_size=64)
    assert a == plan_epoch(lengths, 2, seed=3, epoch=0, bucket_size=64)
    assert a != plan_epoch(lengths, 2, seed=3, epoch=1, bucket_size=64)
    assert all(len(b) == 2 for b in a) and len(a) == 5  # 9 songs wrap to 10
    assert set(i for b in a for i in b) == set(range(9))
    waste = sum(max(lengths[i] for i in b) * 2 - sum(lengths[i] for i in b) for b in a)
    assert waste < 100  # long with long, short with short
    assert shard([4, 5, 6, 7], 0, 2) == [4, 6] and shard([4, 5, 6, 7], 1, 2) == [5, 7]
    assert plan_epoch([7], 4, 0, 0) == [[0, 0, 0, 0]]  # tiny data repeats to a full batch
    with pytest.raises(ValueError):
        plan_epoch([], 2, 0, 0)


def test_crop_window_rule():
    assert crop_window(50, 100, 0, 0, "a") == (0, 50, True)
    starts = {crop_window(1000, 100, 0, e, "a")[0] for e in range(20)}
    assert len(starts) > 10 and all(0 <= s <= 900 for s in starts)
    assert crop_window(1000, 100, 0, 3, "a") == crop_window(1000, 100, 0, 3, "a")
    s, n, end = crop_window(1000, 100, 0, 3, "a")
    assert n == 100 and end == (s == 900)
    assert crop_window(1000, 100, 0, 3, "a", random_start=False) == (0, 100, False)
    assert derive_seed(1, "x") == derive_seed(1, "x") != derive_seed(2, "x")


def test_start_run_refuses_missing_config(tmp_path):
    with pytest.raises(FileNotFoundError):
        runs.start_run(tmp_path / "nope")


def test_delete_run_refuses_an_active_run(tmp_path):
    run = runs.create_run(_cfg(tmp_path), name="to-delete")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        runs.update_run_json(run, status="running", pid=proc.pid, pgid=proc.pid,
                             pid_start=process.process_start_time(proc.pid))
        with pytest.raises(RuntimeError, match="stop it"):
            runs.delete_run(run)
        with pytest.raises(RuntimeError, match="stop it"):
            runs.rename_run(run, "other")
        assert run.is_dir()
    finally:
        proc.kill()
        proc.wait(timeout=10)
    runs.update_run_json(run, status="stopped")
    runs.delete_run(run)
    assert not run.exists() and runs.list_runs(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        runs.delete_run(tmp_path / "runs" / "nothing-here")


def test_rename_run_moves_folder_and_config(tmp_path):
    run = runs.create_run(_cfg(tmp_path), name="first")
    other = runs.create_run(_cfg(tmp_path), name="second")
    runs.update_run_json(run, status="done")
    ck = run / "checkpoints" / "step-5"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{}")
    new = runs.rename_run(run, "My voice LoRA")
    assert new == tmp_path.resolve() / "runs" / "My-voice-LoRA" and not run.exists()
    assert Path(runs.load_run_config(new).paths.output_dir) == new
    info = runs.read_run_json(new)
    assert info["run_id"] == "My-voice-LoRA" and info["name"] == "My voice LoRA" and info["status"] == "done"
    assert str(new / "config.yaml") in info["command"]
    assert runs.latest_checkpoint(new) == new / "checkpoints" / "step-5"
    with pytest.raises(FileExistsError):
        runs.rename_run(new, other.name)
    with pytest.raises(ValueError):
        runs.rename_run(new, "!!!")


def test_run_config_for_checkpoint(tmp_path):
    run = runs.create_run(_cfg(tmp_path, type="lora"))
    ck = run / "checkpoints" / "step-3"
    ck.mkdir(parents=True)
    cfg = runs.run_config_for_checkpoint(ck)
    assert cfg is not None and Path(cfg.paths.output_dir) == run and cfg.training.type == "lora"
    assert runs.run_config_for_checkpoint(tmp_path / "loose" / "step-3") is None
    (run / "config.yaml").write_text("training: [not, a, mapping\n")
    assert runs.run_config_for_checkpoint(ck) is None


def test_mark_crashed_runs(tmp_path):
    run = runs.create_run(_cfg(tmp_path))
    done = runs.create_run(_cfg(tmp_path), name="finished")
    runs.update_run_json(run, status="running", pid=2 ** 22 + 7, pid_start=1.0)
    runs.update_run_json(done, status="done")
    assert runs.mark_crashed_runs(tmp_path) == [run.name]
    assert runs.read_run_json(run)["status"] == "crashed" and runs.read_run_json(done)["status"] == "done"
    assert runs.mark_crashed_runs(tmp_path) == []


def test_status_enum_reads_old_and_new_run_json_alike(tmp_path):
    from core.runs.status import RunStatus

    old = tmp_path / "old"
    old.mkdir()
    (old / runs.RUN_JSON).write_text(json.dumps({"run_id": "old", "status": "stopped"}))  # written before the enum
    status = runs.read_run_json(old)["status"]
    assert status == RunStatus.STOPPED and status in runs.TERMINAL and status not in runs.ACTIVE
    new = runs.create_run(_cfg(tmp_path))
    runs.update_run_json(new, status=RunStatus.RUNNING)
    assert json.loads((new / runs.RUN_JSON).read_text())["status"] == "running"  # the plain word on disk
    assert {"running": "en cours"}[RunStatus.RUNNING] == "en cours" and f"{RunStatus.FAILED}" == "failed"
    assert runs.run_status(tmp_path / "nothing")["status"] == RunStatus.MISSING == "missing"


def test_save_and_sample_now_refused_by_core_on_a_finished_run(tmp_path):
    from core.runs.lock import RunError
    run = runs.create_run(_cfg(tmp_path), name="old")
    for status in ("done", "stopped", "failed"):
        runs.update_run_json(run, status=status)
        for send, flag in ((runs.request_save, "save"), (runs.request_sample, "sample")):
            with pytest.raises(RunError) as e:
                send(run)
            assert e.value.code == f"run_not_running_{flag}" and e.value.params == {"run": Path(run).name, "status": status}
            assert not runs.flag_path(run, flag).exists()
