"""Run folders: create, launch, stop, re-attach, status, control flags, metrics reading.

A run is a folder (the config's `paths.output_dir`; the studio uses `<workspace>/runs/<run-id>/`):

    config.yaml     the exact config the trainer reads
    run.json        status record: {run_id, status, pid, pgid, pid_start, command, config_hash,
                    created, started, ended, step, total, returncode, error}
    train.log       stdout + stderr of the training process group
    metrics.jsonl   one JSON object a line: {"type": "metrics", ...} and {"type": "event", ...}
    logs/           TensorBoard event files
    checkpoints/    step-N/ (adapter or official layout, plus state/ for exact resume)
    samples/        step-N_<k>.wav
    control/        flag files: stop, save, sample (the trainer checks them every step)

The studio never trains inside its own process: `start_run` starts
`accelerate launch -m core.train --config <run>/config.yaml` as its own process group, and
everything else here only reads or writes files, so a page reload or a second viewer is harmless.
Status values: `RunStatus` (created, starting, running, stopping, done, stopped, error, failed: a condition
outside the run, e.g. disk full: fix it, then resume, crashed).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from core.runs import process
from core.runs.lock import NotARun, RunError, RunNameError, RunNameTaken
from core.runs.metrics import LOG_NAME, METRICS_NAME, metrics_series, read_metrics, tail_log  # noqa: F401
from core.runs.status import ACTIVE, TERMINAL, RunStatus  # noqa: F401  (runs.RunStatus for callers)
from core.config import ConfigError, StudioConfig, load_config
from core.fsutil import atomic_write_json, checkpoint_dirs, slugify

RUN_JSON = "run.json"
CONFIG_NAME = "config.yaml"
CONTROL_DIR = "control"
FLAGS = ("stop", "save", "sample")


# ---- small file helpers ---------------------------------------------------------------------
def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_run_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return {}
    for _ in range(5):  # a writer replaces the file atomically; a read can still race a rename on some FS
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, FileNotFoundError):
            time.sleep(0.05)
    return {}


def update_run_json(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Read-modify-write run.json (atomic replace)."""
    data = read_run_json(run_dir)
    data.update(fields)
    atomic_write_json(Path(run_dir) / RUN_JSON, data)
    return data


def config_hash(cfg: StudioConfig) -> str:
    """sha256 (16 hex) of the canonical config, output_dir excluded (moving a run keeps its hash)."""
    data = cfg.to_dict()
    data["paths"] = dict(data["paths"], output_dir=None)
    blob = json.dumps(data, sort_keys=True, ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---- run folders ----------------------------------------------------------------------------
def runs_root(workspace: str | os.PathLike) -> Path:
    return Path(workspace).expanduser() / "runs"


def create_run(cfg: StudioConfig, name: Optional[str] = None) -> Path:
    """Make `<workspace>/runs/<run-id>/` and write its config.yaml (paths.output_dir = the run dir).

    The run id is `<UTC time>-<mode>` or `<UTC time>-<name>`; paths in the written config are made
    absolute so the run can be started from any working directory.
    """
    workspace = cfg.workspace_dir().resolve()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(name, 'run', 48) if name else cfg.training.type}"
    root = runs_root(workspace)
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / base
    n = 1
    while True:
        try:
            run_dir.mkdir(parents=False, exist_ok=False)
            break
        except FileExistsError:
            n += 1
            run_dir = root / f"{base}-{n}"
    cfg = cfg.model_copy(deep=True)
    cfg.workspace = str(workspace)
    cfg.paths.output_dir = str(run_dir)
    if cfg.paths.prepared_data_dir:
        cfg.paths.prepared_data_dir = str(Path(cfg.paths.prepared_data_dir).expanduser().resolve())
    if cfg.training.dataset_dir:
        cfg.training.dataset_dir = str(Path(cfg.training.dataset_dir).expanduser().resolve())
    cfg.save(run_dir / CONFIG_NAME)
    atomic_write_json(run_dir / RUN_JSON, {
        "run_id": run_dir.name, "name": name, "status": RunStatus.CREATED, "mode": cfg.training.type,
        "config_hash": config_hash(cfg), "created": now_iso(), "pid": None, "command": command_for(run_dir),
    })
    return run_dir


def load_run_config(run_dir: str | os.PathLike) -> StudioConfig:
    return load_config(Path(run_dir) / CONFIG_NAME)


def run_config_for_checkpoint(path: str | os.PathLike) -> Optional[StudioConfig]:
    """The config of the run that owns checkpoint folder `path` (`<run>/checkpoints/step-N`), or None
    when the folder is not inside a run or the run's config.yaml is missing or unreadable."""
    ckpt = Path(path).expanduser()
    run_cfg = ckpt.parent.parent / CONFIG_NAME
    if ckpt.parent.name != "checkpoints" or not run_cfg.is_file():
        return None
    try:
        return load_config(run_cfg)
    except ConfigError:
        return None


def command_for(run_dir: str | os.PathLike, resume: bool = False, num_processes: Optional[int] = None,
                multi_gpu: bool = False, cfg: Optional[StudioConfig] = None) -> str:
    """The shell command that trains this run (what the UI shows; `start_run` runs the same)."""
    return shlex.join(launch_argv(run_dir, resume=resume, num_processes=num_processes,
                                  multi_gpu=multi_gpu, executable="accelerate", cfg=cfg))


def launch_argv(run_dir: str | os.PathLike, resume: bool = False, num_processes: Optional[int] = None,
                multi_gpu: bool = False, executable: Optional[str] = None,
                cfg: Optional[StudioConfig] = None) -> list[str]:
    """argv for `accelerate launch [--config_file <training.distributed>] [layout] -m core.train
    --config <run>/config.yaml [--resume]` (core.runs.launch builds it from the run's config).

    `executable=None` uses the accelerate CLI of this interpreter (`python -m accelerate.commands.launch`),
    which needs no PATH lookup. `cfg`: the run's config when the caller has just read it (start_run
    reads it once for its checks and the launch), else it is read from the run folder.
    """
    from core.runs import launch

    run_dir = Path(run_dir).resolve()
    try:
        layout = launch.layout_for(cfg if cfg is not None else load_run_config(run_dir), num_processes=num_processes)
    except (ConfigError, FileNotFoundError):  # no (valid) config yet: the default layout
        layout = launch.Layout(num_processes=num_processes)
    return launch.launch_argv(run_dir / CONFIG_NAME, layout, resume=resume, multi_gpu=multi_gpu,
                              executable=executable)


def flag_path(run_dir: str | os.PathLike, flag: str) -> Path:
    if flag not in FLAGS:
        raise ValueError(f"unknown control flag {flag!r}; expected one of {FLAGS}")
    return Path(run_dir) / CONTROL_DIR / flag


def set_flag(run_dir: str | os.PathLike, flag: str) -> Path:
    path = flag_path(run_dir, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(now_iso(), encoding="utf-8")
    return path


def clear_flags(run_dir: str | os.PathLike) -> None:
    for flag in FLAGS:
        flag_path(run_dir, flag).unlink(missing_ok=True)


def start_run(run_dir: str | os.PathLike, resume: bool = False, num_processes: Optional[int] = None,
              multi_gpu: bool = False, env: Optional[dict[str, str]] = None,
              exclusive: bool = False) -> dict[str, Any]:
    """Start training of `run_dir` as its own process group; returns the updated run.json record.

    Output goes to `<run>/train.log` (appended, so a resumed run keeps its history). `resume=True`
    continues from the latest checkpoint. Refuses (core.model.CheckpointError, naming the field) a base
    model folder that is not a checkpoint, and a run whose process is still alive, and
    with `exclusive=True` (the studio: one machine, one training) also while any other run of the
    same workspace is active.
    """
    run_dir = Path(run_dir).resolve()
    if not (run_dir / CONFIG_NAME).is_file():
        raise NotARun(f"{run_dir / CONFIG_NAME} not found: create the run first (create_run)", run=run_dir.name)
    cfg = load_run_config(run_dir)  # fail here, in the caller, on a broken config; the launch uses this read
    from core.model.info import check_base_model
    check_base_model(cfg)  # a run sure to fail on its base model is never launched (CheckpointError)
    status = run_status(run_dir)
    if status.get("status") in ACTIVE:
        raise RunError(f"run {run_dir.name} is already {status['status']} (pid {status.get('pid')}); "
                       "stop it first", code="run_active", run=run_dir.name, status=status["status"])
    from core.runs.lock import describe_holder, lock_holder

    holder = lock_holder(run_dir)
    own = {status.get("trainer_pid"), status.get("pid")} - {None}
    deadline = time.time() + 15
    while holder is not None and holder.get("pid") in own and time.time() < deadline:
        # this run's own trainer, already marked ended (e.g. killed): the kernel frees its lock when
        # the process has finished exiting, which can take a moment for a large process
        time.sleep(0.2)
        holder = lock_holder(run_dir)
    if holder is not None:  # a trainer started elsewhere (e.g. a shell) holds this folder
        raise RunError(f"run {run_dir.name} is in use by another training process ({describe_holder(holder)}); "
                       "stop it first", code="run_in_use", run=run_dir.name, holder=describe_holder(holder))
    if exclusive:
        # two clicks at once: the check and the launch happen under one lock of the runs folder
        from filelock import FileLock
        with FileLock(run_dir.parent / ".start.lock", thread_local=False, preserve_lock_file=True):
            return _start_exclusive(run_dir, cfg, resume, num_processes, multi_gpu, env)
    return _launch(run_dir, cfg, resume, num_processes, multi_gpu, env)


def _start_exclusive(run_dir: Path, cfg: StudioConfig, resume, num_processes, multi_gpu, env) -> dict[str, Any]:
    other = active_run(run_dir.parent.parent)
    if other is not None and Path(other["run_dir"]).resolve() != run_dir:
        raise RunError.busy(other.get("run_id", Path(other["run_dir"]).name), other["status"])
    return _launch(run_dir, cfg, resume, num_processes, multi_gpu, env)


# a trainer never inherits the server's secrets (HF_TOKEN, OAuth): training downloads and pushes nothing
_TRAINER_ENV = set("PATH HOME USER LOGNAME LANG LANGUAGE TZ TMPDIR TEMP TMP PYTHONPATH PYTHONHASHSEED VIRTUAL_ENV "
                   "CONDA_PREFIX LD_LIBRARY_PATH HF_HOME HF_HUB_CACHE HF_HUB_OFFLINE HF_DATASETS_CACHE HF_ENDPOINT "
                   "HF_DATASETS_OFFLINE TRANSFORMERS_CACHE TRANSFORMERS_OFFLINE MASTER_ADDR MASTER_PORT".split())
_TRAINER_ENV_PREFIXES = ("LC_", "XDG_", "CUDA_", "NVIDIA_", "NCCL_", "OMP_", "GOMP_", "MKL_", "OPENBLAS_", "TORCH",
                         "PYTORCH_", "ACCELERATE_", "TRITON_", "STUDIO_", "SONGGEN_")
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "OAUTH")


def trainer_env(extra: Optional[dict[str, str]] = None, base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """A trainer's environment: the server's, less what training does not need and any name that looks
    like a secret, plus `extra` (the caller's own settings)."""
    keep = {k: v for k, v in (os.environ if base is None else base).items()
            if (k in _TRAINER_ENV or k.startswith(_TRAINER_ENV_PREFIXES)) and not any(w in k for w in _SECRET_WORDS)}
    return {**keep, **(extra or {})}


def _launch(run_dir: Path, cfg: StudioConfig, resume, num_processes, multi_gpu, env) -> dict[str, Any]:
    clear_flags(run_dir)
    argv = launch_argv(run_dir, resume=resume, num_processes=num_processes, multi_gpu=multi_gpu, cfg=cfg)
    child_env = trainer_env(env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    # The trainer must run the same `core` as the process that starts it (a checkout next to an
    # older installed copy would otherwise train with other code); installed or not, this holds.
    here = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    log = open(run_dir / LOG_NAME, "ab")
    log.write(f"\n===== {now_iso()} {shlex.join(argv)}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(argv, cwd=str(run_dir), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=child_env, start_new_session=True)
    finally:
        log.close()
    process.remember_child(run_dir, proc)
    return update_run_json(
        run_dir, status=RunStatus.STARTING, pid=proc.pid, pgid=proc.pid, pid_start=process.process_start_time(proc.pid),
        launched_by="studio",
        command=command_for(run_dir, resume=resume, num_processes=num_processes, multi_gpu=multi_gpu, cfg=cfg),
        started=now_iso(), ended=None, returncode=None, error=None, resume=bool(resume),
    )


def request_save(run_dir: str | os.PathLike) -> Path:
    """Ask the trainer to save a checkpoint after the current step."""
    return _request(run_dir, "save")


def request_sample(run_dir: str | os.PathLike) -> Path:
    """Ask the trainer to generate samples after the current step."""
    return _request(run_dir, "sample")


def _request(run_dir: str | os.PathLike, flag: str) -> Path:
    # a finished run has no trainer left to read the flag: refused, never a promise that is not kept
    status = run_status(run_dir).get("status")
    if status in TERMINAL:
        raise RunError.not_running(Path(run_dir).name, str(status), flag)
    return set_flag(run_dir, flag)


def stop_run(run_dir: str | os.PathLike, wait: float = 0.0, force: bool = False) -> dict[str, Any]:
    """Ask the run to stop: it saves a checkpoint, then exits with status "stopped".

    `wait` seconds: block until the process is gone. `force=True`: after `wait`, kill the process
    group (SIGTERM, then SIGKILL after 10 s); the run is then marked "stopped" without a final save
    unless the trainer managed one (its SIGTERM handler saves too).
    """
    run_dir = Path(run_dir)
    set_flag(run_dir, "stop")
    info = read_run_json(run_dir)
    if info.get("status") in (RunStatus.STARTING, RunStatus.RUNNING):
        info = update_run_json(run_dir, status=RunStatus.STOPPING)
    deadline = time.time() + max(0.0, wait)
    while time.time() < deadline and process.group_alive(run_dir, info):
        time.sleep(0.2)
    if force and process.group_alive(run_dir, info):
        process.kill_group(info, signal.SIGTERM)
        t_end = time.time() + 10
        while time.time() < t_end and process.group_alive(run_dir, info):
            time.sleep(0.2)
        if process.group_alive(run_dir, info):
            process.kill_group(info, signal.SIGKILL)
            time.sleep(0.2)
        if read_run_json(run_dir).get("status") not in TERMINAL:
            update_run_json(run_dir, status=RunStatus.STOPPED, ended=now_iso(), error="killed by stop_run(force=True)")
    return run_status(run_dir)


def kill_run(run_dir: str | os.PathLike, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the run's whole process group (no save; for tests and emergencies)."""
    process.kill_group(read_run_json(run_dir), sig)


def run_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """run.json plus liveness: an active run whose process is gone is marked "crashed" (persisted).

    Adds `alive` (bool), `latest_checkpoint` (path or None) and `last_step` (from metrics) to the record.
    """
    run_dir = Path(run_dir)
    info = read_run_json(run_dir)
    if not info:
        info = {"run_id": run_dir.name,
                "status": RunStatus.CREATED if (run_dir / CONFIG_NAME).exists() else RunStatus.MISSING}
    rc = process.exit_code(run_dir)
    alive = False
    if info.get("status") in ACTIVE:
        alive = rc is None and process.pid_alive(info.get("pid"), info.get("pid_start"))
        if not alive:
            # re-read: the trainer may have written a terminal status just before exiting
            info = read_run_json(run_dir) or info
            if info.get("status") in ACTIVE:
                tail = tail_log(run_dir, 20)
                err = f"process {info.get('pid')} is gone without a final status"
                if rc is not None:
                    err += f" (exit code {rc})"
                info = update_run_json(run_dir, status=RunStatus.CRASHED, ended=now_iso(), returncode=rc,
                                       error=err, log_tail=tail)
    elif rc is not None and info.get("returncode") is None and info.get("status") in TERMINAL:
        info = update_run_json(run_dir, returncode=rc)
    out = dict(info)
    out["alive"] = alive
    ckpt = latest_checkpoint(run_dir)
    out["latest_checkpoint"] = str(ckpt) if ckpt else None
    return out


def mark_crashed_runs(workspace: str | os.PathLike) -> list[str]:
    """On studio start: mark every active run whose process is gone as crashed; returns their ids."""
    marked = []
    for d in _run_dirs(workspace):
        if read_run_json(d).get("status") in ACTIVE and run_status(d).get("status") == RunStatus.CRASHED:
            marked.append(d.name)
    return marked


def _run_dirs(workspace: str | os.PathLike) -> list[Path]:
    root = runs_root(workspace)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and (p / CONFIG_NAME).exists()),
                  key=lambda p: p.name, reverse=True)


def list_runs(workspace: str | os.PathLike) -> list[dict[str, Any]]:
    """All runs under `<workspace>/runs/`, newest first, each a `run_status` record plus `run_dir`."""
    out = []
    for d in _run_dirs(workspace):
        rec = run_status(d)
        rec["run_dir"] = str(d)
        out.append(rec)
    return out


def active_run(workspace: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The workspace's run that is starting, running or stopping (its process alive), if any."""
    return next((r for r in list_runs(workspace) if r.get("status") in ACTIVE), None)


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints `checkpoints/step-N` (those with a trainer_state.json), oldest first."""
    return [p for p in checkpoint_dirs(Path(run_dir) / "checkpoints") if (p / "trainer_state.json").is_file()]


def latest_checkpoint(run_dir: str | os.PathLike) -> Optional[Path]:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def _refuse_if_active(run_dir: Path, what: str) -> None:
    st = run_status(run_dir)
    if st.get("alive") or st.get("status") in ACTIVE:
        raise RunError.active(run_dir.name, st.get("status"), what)


def delete_run(run_dir: str | os.PathLike) -> None:
    """Remove a run's folder (checkpoints, samples, logs); refuses while the run is active."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_NAME).is_file() and not (run_dir / RUN_JSON).is_file():
        raise NotARun(f"{run_dir} is not a run folder (no {CONFIG_NAME} or {RUN_JSON})", run=run_dir.name)
    _refuse_if_active(run_dir, "delete")
    process.forget_child(run_dir)
    shutil.rmtree(run_dir)


def rename_run(run_dir: str | os.PathLike, new_name: str) -> Path:
    """Give a run a new name (its folder becomes `<new name as a slug>` beside the old one; the
    config's output_dir and run.json follow). Refuses while the run is active or when the name is
    taken; returns the new folder."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / CONFIG_NAME).is_file():
        raise NotARun(f"{run_dir} is not a run folder (no {CONFIG_NAME})", run=run_dir.name)
    _refuse_if_active(run_dir, "rename")
    slug = slugify(new_name, "", 80)
    if not slug:
        raise RunNameError.empty(new_name)
    target = run_dir.with_name(slug)
    if target == run_dir:
        update_run_json(run_dir, name=new_name)
        return run_dir
    if target.exists():
        raise RunNameTaken(f"a run named {slug} already exists; choose another name", name=slug)
    os.rename(run_dir, target)
    process.forget_child(run_dir)
    cfg = load_run_config(target)
    cfg.paths.output_dir = str(target)
    cfg.save(target / CONFIG_NAME)
    update_run_json(target, run_id=target.name, name=new_name, command=command_for(target))
    return target


def wait_for(run_dir: str | os.PathLike, statuses=TERMINAL, timeout: float = 600.0,
             poll: float = 0.25) -> dict[str, Any]:
    """Block until the run reaches one of `statuses` (or `timeout` seconds pass); returns run_status."""
    deadline = time.time() + timeout
    while True:
        st = run_status(run_dir)
        if st.get("status") in statuses or time.time() > deadline:
            return st
        time.sleep(poll)
