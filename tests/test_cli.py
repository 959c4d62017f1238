"""The one CLI (core.cli, `python -m core`, `songgen-studio`): runs from any folder with no PYTHONPATH
(the package is installed, `pip install -e .`), relative config paths follow the config file, `merge`
finds the run's checkpoint itself, `generate` defaults to a short song."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.runs import store as runs
from core.cli import DEFAULT_GENERATE_SECONDS, build_parser, choose_checkpoint, default_checkpoint
from core.config import load_config, parse_config
from tests.datagen import GOOD_LYRICS, write_song

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_prepare_from_another_folder_with_relative_config_paths(tmp_path):
    """A YAML in project/ with paths relative to it, run from elsewhere/ with no PYTHONPATH."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    for i in range(2):
        write_song(project / "songs" / f"s{i}.wav", seconds=12.0, seed=i)
        (project / "songs" / f"s{i}.txt").write_text(GOOD_LYRICS, encoding="utf-8")
    (project / "cfg.yaml").write_text("workspace: ws\npaths:\n  raw_data_dir: songs\n  prepared_data_dir: prepared\n"
                                      "data:\n  codec: demo\n  separation: demo\n", encoding="utf-8")
    elsewhere.mkdir()
    res = _run([sys.executable, "-m", "core", "prepare", "--config", "../project/cfg.yaml", "--no-progress"], elsewhere)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "prepared: 2" in res.stdout
    assert (project / "prepared" / "latest.json").is_file() and (project / "ws").is_dir()
    assert not any(elsewhere.iterdir())  # nothing landed in the shell's folder
    # the console script runs the same commands
    exe = Path(sys.executable).with_name("songgen-studio")
    script = str(exe) if exe.is_file() else shutil.which("songgen-studio")
    assert script, "songgen-studio is not installed: pip install -e ."
    res = _run([script, "prepare", "--help"], elsewhere)
    assert res.returncode == 0 and "--no-progress" in res.stdout and "--config" in res.stdout


def test_help_and_bad_config_exit_codes(tmp_path):
    res = _run([sys.executable, "-m", "core", "--help"], tmp_path)
    assert res.returncode == 0 and all(c in res.stdout for c in ("prepare", "train", "merge", "generate", "push"))
    res = _run([sys.executable, "-m", "core", "merge", "--config", "missing.yaml"], tmp_path)
    assert res.returncode == 2 and "config file not found" in res.stderr
    res = _run([sys.executable, "-m", "core", "generate", "--gen-type", "loud"], tmp_path)
    assert res.returncode == 2 and "choose one of mixed" in res.stderr


def test_every_command_shares_config_and_set():
    parser = build_parser()
    for cmd in ("model-info", "prepare", "train", "merge", "generate", "push"):
        args = parser.parse_args([cmd, "--config", "c.yaml", "--set", "a.b=1", "--set", "c.d=2"])
        assert args.config == "c.yaml" and args.set == ["a.b=1", "c.d=2"]
    assert DEFAULT_GENERATE_SECONDS <= 60


def _checkpoint(run: Path, step: int) -> Path:
    ck = run / "checkpoints" / f"step-{step}"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text(json.dumps({"step": step, "reason": "save_every"}))
    return ck


def test_merge_picks_the_runs_best_else_newest_checkpoint(tmp_path):
    cfg = parse_config({"workspace": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        default_checkpoint(cfg)
    old = runs.create_run(cfg, name="a-old")
    new = runs.create_run(cfg, name="b-new")
    _checkpoint(old, 10)
    assert default_checkpoint(cfg) == old / "checkpoints" / "step-10"  # the newest run that has one
    _checkpoint(new, 5)
    _checkpoint(new, 20)
    assert default_checkpoint(cfg) == new / "checkpoints" / "step-20"
    own = load_config(old / "config.yaml")  # a run's config: its own output_dir decides
    assert default_checkpoint(own) == old / "checkpoints" / "step-10"
    ck, why = choose_checkpoint(cfg)
    assert ck == new / "checkpoints" / "step-20" and "newest" in why and "step 20" in why
    # a run with a best checkpoint (lowest validation loss, run.json) merges that one, and says so
    runs.update_run_json(new, best={"path": str(new / "checkpoints" / "step-5"), "step": 5, "val_loss": 2.5})
    ck, why = choose_checkpoint(load_config(new / "config.yaml"))
    assert ck == new / "checkpoints" / "step-5" and "best" in why and "2.5000" in why and "step 5" in why


def test_merge_command_without_checkpoint_says_which_it_took(tmp_path):
    """`merge --config <the run's config.yaml>` as in the README: the run's best checkpoint is taken and named
    (this fake one then fails to export, with the export's own message; the choice is what is checked)."""
    cfg = parse_config({"workspace": str(tmp_path / "ws")})
    run = runs.create_run(cfg, name="mine")
    _checkpoint(run, 4)
    _checkpoint(run, 8)
    runs.update_run_json(run, best={"path": str(run / "checkpoints" / "step-4"), "step": 4, "val_loss": 3.25})
    env = {**_env(), "PYTHONPATH": str(REPO)}  # this checkout's core, wherever the package is installed from
    res = subprocess.run([sys.executable, "-m", "core", "merge", "--config", str(run / "config.yaml")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert f"using the best checkpoint of run {run.name} (lowest validation loss 3.2500, step 4)" in res.stderr
    assert str(run / "checkpoints" / "step-4") in res.stderr and res.returncode == 1
