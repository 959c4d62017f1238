"""Run calls of the studio (list, status, log, samples, start checks, stop / save / sample requests, resume,
rename, delete, the checkpoint table, and which folders the UI may act on): the runs half of
`studio.backend`, which re-exports these names so tabs keep one seam. Engine modules are imported inside
functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.runs import store as runs
from core.config import StudioConfig
from core.errors import StudioError
from studio.feedback import UserError, refusal
from studio.i18n import status_word, tr, value_word
from studio.widgets import name_fields


def list_runs(ws) -> list[dict[str, Any]]:
    return runs.list_runs(ws.root)


def run_status(run_dir: str) -> dict[str, Any]:
    return runs.run_status(run_dir)


def tail_log(run_dir: str, lines: int = 40) -> str:
    return runs.tail_log(run_dir, lines)


def samples(run_dir: str) -> list[str]:
    folder = Path(run_dir) / "samples"
    if not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.glob("*.wav"), key=lambda p: (p.stat().st_mtime, p.name))]


def run_config_text(run_dir: str) -> str:
    p = Path(run_dir) / "config.yaml"
    return p.read_text(encoding="utf-8") if p.is_file() else ""


def run_command(run_dir: str) -> str:
    info = run_status(run_dir)
    return info.get("command") or runs.command_for(run_dir)


def check_base(cfg: StudioConfig, lang: str = "en") -> None:
    """Refuse a base model that cannot train before any run is created: core's check (the demo and Hub
    ids pass; a local folder must be a SongGeneration checkpoint; an empty value is refused), its
    message under the field's name in the reader's language."""
    from core.model.info import BaseModelError, check_base_model
    try:
        check_base_model(cfg)
    except BaseModelError as err:  # core names the field in English: "bad_base" names it in `lang`
        raise UserError("bad_base", err=lambda lg, d=err.detail: name_fields(d, lg)) from None


def refuse_if_busy(ws, lang: str = "en") -> None:
    other = runs.active_run(ws.root)
    if other is not None:
        raise UserError("run_busy", run=other.get("run_id") or Path(other["run_dir"]).name,
                        status=lambda lg, st=other.get("status", ""): status_word(st, lg))


def delete_run(ws, run_dir: str) -> None:
    try:
        runs.delete_run(check_run_dir(ws, run_dir))
    except StudioError as err:
        raise refusal(err) from None


def rename_run(ws, run_dir: str, name: str) -> str:
    try:
        return str(runs.rename_run(check_run_dir(ws, run_dir), name or ""))
    except StudioError as err:
        raise refusal(err) from None


def checkpoint_rows(run_dir: str, lang: str = "en") -> list[list[Any]]:
    """step, why it was saved, train loss, validation loss, time, best — newest first (core.training.checkpoints)."""
    from core.training.checkpoints import list_checkpoints

    def num(x):
        return "—" if x is None else f"{x:.4f}"

    rows = []
    for c in reversed(list_checkpoints(run_dir)):
        rows.append([c["step"], value_word("reason", c["reason"], lang), num(c["loss"]), num(c["val_loss"]), (c["time"] or "")[:19].replace("T", " "),
                     "★" if c["best"] else ""])
    return rows


def check_run_dir(ws, run_dir: str) -> str:
    """Only folders under <workspace>/runs are runs the UI may act on."""
    p = Path(run_dir).resolve()
    if p.parent != (ws.root / "runs").resolve() or not (p / "config.yaml").is_file():
        raise UserError("not_a_run", run=run_dir)
    return str(p)


def check_checkpoint(ws, ckpt: str) -> str:
    """Only `<workspace>/runs/<run>/checkpoints/step-N` folders are checkpoints the UI may act on."""
    p = Path(ckpt)
    real = p.resolve()
    runs_dir = (ws.root / "runs").resolve()
    if (p.is_symlink() or real.parent.name != "checkpoints" or real.parent.parent.parent != runs_dir
            or not real.name.startswith("step-") or not real.is_dir()):
        raise UserError("not_a_ckpt", name=Path(ckpt).name)
    return str(real)


def stop_run(run_dir: str):
    return runs.stop_run(run_dir)


def request_save(run_dir: str):
    try:
        return runs.request_save(run_dir)
    except StudioError as err:  # a finished run: core's refusal, worded by code
        raise refusal(err) from None


def request_sample(run_dir: str):
    try:
        return runs.request_sample(run_dir)
    except StudioError as err:
        raise refusal(err) from None


def resume_run(run_dir: str):
    try:
        return runs.start_run(run_dir, resume=True)
    except StudioError as err:
        raise refusal(err) from None
