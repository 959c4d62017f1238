"""Runs and prepares that are sure to fail are refused up front with one message that names the field
as the user sees it and what to do: a base model folder that is not a checkpoint (core.runs.store.start_run,
the `train` command, the studio's Train tab), and the official codec chosen without its files
(core.data.plan / prepare)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.runs import store as runs
from core.config import parse_config
from core.data import DataError, plan, prepare
from core.model import CheckpointError
from tests.datagen import GOOD_LYRICS, write_song

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "not-a-checkpoint"])
def test_start_run_refuses_a_base_folder_that_is_not_a_checkpoint(tmp_path, kind):
    base = tmp_path / "my-model"
    if kind != "missing":
        base.mkdir()
    if kind == "not-a-checkpoint":
        (base / "config.yaml").write_text("lm: {dim: 8}\n", encoding="utf-8")
        (base / "model.pt").write_bytes(b"not a checkpoint")
    run = runs.create_run(parse_config({"workspace": str(tmp_path / "ws"), "paths": {"base_model_path": str(base)}}))
    with pytest.raises(CheckpointError) as err:
        runs.start_run(run)
    msg = str(err.value)
    assert msg.startswith("Base model folder (paths.base_model_path)") and str(base) in msg
    assert "config.yaml and model.pt" in msg and "'demo'" in msg  # what to choose instead
    if kind == "missing":
        assert "does not exist" in msg
    elif kind == "empty-folder":
        assert "has no config.yaml and no model.pt" in msg
    else:
        assert "cannot be used" in msg
    st = runs.read_run_json(run)
    assert st.get("status") not in runs.ACTIVE and not st.get("pid"), st  # nothing was launched
    assert not (run / runs.LOG_NAME).exists()


def test_train_command_refuses_a_bad_base_folder_before_making_a_run(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("workspace: ws\npaths:\n  base_model_path: ./nowhere\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}  # this checkout's core
    res = subprocess.run([sys.executable, "-m", "core", "train", "--config", str(cfg)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Base model folder (paths.base_model_path)" in res.stderr and "does not exist" in res.stderr
    assert not (tmp_path / "ws" / "runs").exists()  # no run folder left behind


@pytest.mark.parametrize("value", ["missing", "empty-folder", "", "demo", "tencent/SongGeneration"])
def test_studio_refuses_the_same_base_models_as_core_in_the_readers_language(tmp_path, value):
    from studio.backend import check_base
    from studio.feedback import UserError, message

    if value == "empty-folder":
        (tmp_path / value).mkdir()
    base = str(tmp_path / value) if value in ("missing", "empty-folder") else value
    cfg = parse_config({"workspace": str(tmp_path / "ws"), "paths": {"base_model_path": base}})
    if value in ("demo", "tencent/SongGeneration"):  # built on first use / downloaded by the trainer
        check_base(cfg)
        return
    with pytest.raises(UserError) as err:
        check_base(cfg)
    en, zh = message(err.value, "en"), message(err.value, "zh")
    assert err.value.key == "bad_base" and en.startswith("Base model folder: ") and zh.startswith("基础模型文件夹：")
    assert "(paths.base_model_path)" not in en  # the field is named once, by the studio
    assert base in en and "'demo'" in en  # core's wording: which value, and what to choose instead
    assert {"missing": "does not exist", "empty-folder": "has no config.yaml", "": "is empty"}[value] in en


def _songs(ws: Path, n: int = 3) -> list[dict]:
    return [{"audio": str(write_song(ws / "wavs" / f"s{i}.wav", seconds=6.0, seed=i)), "idx": f"s{i}",
             "lyrics": GOOD_LYRICS, "description": "female, pop"} for i in range(n)]


def test_official_codec_without_its_files_is_one_message(tmp_path):
    ws = tmp_path / "ws"
    items = _songs(ws)
    for runtime in (None, tmp_path / "empty-runtime"):
        data = {"workspace": str(ws), "data": {"codec": "official"}}
        if runtime is not None:
            runtime.mkdir()
            data["paths"] = {"runtime_path": str(runtime)}
        cfg = parse_config(data)
        for call in (plan, prepare):  # the cache plan and the real run: the same one message, no song judged
            with pytest.raises(DataError) as err:
                call(cfg, items=items)
            msg = str(err.value)
            assert msg.startswith("The official codec cannot run: 5 of its files are missing")
            assert "model_2_fixed.safetensors (mixed-stream tokenizer" in msg and "htdemucs.pth" in msg
            assert "SongGeneration runtime folder (paths.runtime_path)" in msg and "choose the demo codec" in msg
            assert ("no SongGeneration runtime folder" in msg) == (runtime is None)
            if runtime is not None:
                assert f"looked at {runtime / 'ckpt' / 'model_1rvq' / 'model_2_fixed.safetensors'}" in msg
            assert "s0" not in msg and "rejected" not in msg  # not a per-song failure
    assert not (ws / "prepared" / "latest.json").exists()
