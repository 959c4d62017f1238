"""Export calls of the studio (merge, generate, A/B, sweep, push): the export half of `studio.backend`,
which re-exports these names so tabs keep one seam. Engine modules are imported inside functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from core.runs import store as runs
from core.config import StudioConfig
from core.errors import StudioError
from studio.feedback import UserError, refusal
from studio.i18n import tr, value_word
from studio.sandbox import compute_job, hold_while_running
from studio.widgets import name_fields

def all_checkpoints(ws, lang: str = "en") -> list[tuple[str, str]]:
    """Every checkpoint of every run, newest first, labelled with its step first (so a narrow
    dropdown still shows it), why it was saved, its train and validation loss and when."""
    from core.training.checkpoints import list_checkpoints
    out = []
    for r in runs.list_runs(ws.root):
        for c in reversed(list_checkpoints(r["run_dir"])):
            bits = [value_word("reason", c["reason"], lang)]
            if c["loss"] is not None:
                bits.append(f"{tr('loss_short', lang)} {c['loss']:.3f}")
            if c["val_loss"] is not None:
                bits.append(f"{tr('val_short', lang)} {c['val_loss']:.3f}")
            if c["best"]:
                bits.append("★")
            when = (c["time"] or "")[5:16].replace("T", " ")  # MM-DD HH:MM
            out.append((f"{c['name']} · {' · '.join(bits)} · {r['run_id']}" + (f" · {when}" if when else ""), c["path"]))
    return out


_VERIFIED: dict[str, tuple] = {}


def verify_checkpoint(ckpt: str) -> None:
    """core.training.safe_state.verify_checkpoint before a checkpoint is merged, generated from or pushed: a
    damaged, altered or foreign-file checkpoint is refused with its problems. A result is remembered
    until a file of the folder changes (hashing a full model on every generate would be slow)."""
    from core.training.safe_state import verify_checkpoint as verify

    folder = Path(ckpt)
    stamp = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()))
    if _VERIFIED.get(str(folder)) == stamp:
        return
    problems = verify(folder)
    if problems:
        raise UserError("ckpt_refused", name=f"{folder.parent.parent.name}/{folder.name}", problems="; ".join(problems[:4]))
    _VERIFIED[str(folder)] = stamp


def _run_cfg_for(ckpt: str) -> StudioConfig:
    """The config of the run a checkpoint belongs to (<run>/checkpoints/step-N), once the checkpoint is verified."""
    verify_checkpoint(ckpt)
    cfg = runs.run_config_for_checkpoint(ckpt)
    if cfg is None:
        raise UserError("ckpt_no_run", name=ckpt)
    return cfg


def job_refusal(err: StudioError) -> UserError:
    """feedback.refusal, with a job stopped by its time budget (core.runs.budget.TimeLimit) worded whole in the
    reader's language: its job and stage by their codes, the config key by its field label; a visitor's
    spent compute quota as the sandbox's quota."""
    from core.runs.budget import TimeLimit

    if not isinstance(err, TimeLimit):
        return refusal(err)
    p = err.params
    return UserError(f"err_{err.code}", job=lambda lg: tr(f"job_{p['job']}", lg),
                     stage=lambda lg: tr(f"stage_{p['stage']}", lg), name=p.get("name") or "-",
                     seconds=p["seconds"], limit=p["limit"], setting=lambda lg: name_fields(p.get("setting", ""), lg))


def _user_error(fn, *a, **kw):
    """Call core; its refusals (ExportError, GenerationError, CheckpointError, TimeLimit...) become UI messages
    by their code; anything else is a bug and reaches studio.feedback as one."""
    try:
        return fn(*a, **kw)
    except StudioError as err:
        raise job_refusal(err) from None


def _budgeted(ws, fn, cfg, *a, kind: str, **kw):
    """A generation job of core under the visitor's compute quota (sandbox.compute_job) and the run config's
    generation bounds: stopped with a worded error at its next frame or stage once a bound passes."""
    from core.runs.budget import Budget, run_watched
    with compute_job(ws) as left:
        budget = Budget.from_section(cfg.generation, kind, "generation", quota_s=left)
        try:  # watched: the visitor gets the error at the bound even when a stage hangs inside one call
            return _user_error(run_watched, budget, fn, cfg, *a, budget=budget, **kw)
        finally:
            hold_while_running(ws, budget.worker)


def merge(ws, ckpt: str, strength: float, lang: str = "en") -> str:
    """core.export.merge.export_checkpoint: LoRA merged at `strength` (or a full checkpoint copied) into
    <workspace>/exports/<run>_<step>[_strength-s]/ in the official layout."""
    from core.export import merge as export
    cfg = _run_cfg_for(ckpt)
    res = _user_error(export.export_checkpoint, ckpt, cfg=cfg, strength=float(strength),
                      overwrite=True)
    notes = "".join(f"\n- {n}" for n in res.notes)
    return tr("merge_result", lang, dir=res.out_dir, kind=res.kind, dtype=res.dtype, n=res.num_keys) + notes


def _gen_setup(ckpt, lyrics, desc, seconds, seed, prompt):
    from core.export import generate
    cfg = _run_cfg_for(ckpt)
    g = cfg.generation.model_copy(update={"max_seconds": float(seconds) if seconds else None})
    cfg = cfg.model_copy(update={"generation": g})
    settings = generate.settings_from_config(
        cfg, lyrics=lyrics or None, description=desc or None, seed=int(seed or 0), prompt_audio=prompt or None)
    return cfg, settings


def _gen_progress(progress, lang: str = "en", words: Optional[Callable[[Any, int, int], str]] = None) -> dict[str, Any]:
    """compare.run_models' `progress` (frames) and `on_stage` (reading the validation songs, loading a model,
    a validation loss, decoding) as the event's progress bar, so a long A/B or generation always says
    what it is doing; `words(name, done, total)` words a frame (default: "<name>: frame d/t"). A stage
    keeps the bar where the frames left it: Gradio shows no text at all for a progress of None."""
    if progress is None:
        return {}
    bar = {"at": 0.0}
    words = words or (lambda name, done, total: tr("gen_progress", lang, name=name, d=done, t=total))

    def frames(name: Any, done: int, total: int) -> None:
        bar["at"] = done / max(1, total)
        progress(bar["at"], desc=words(name, done, total))

    def stage(code: str, name: str) -> None:
        progress(bar["at"], desc=tr(f"gen_stage_{code}", lang, name=name))

    return {"progress": frames, "on_stage": stage}


def _files(man) -> list[tuple[Any, str]]:
    out = Path(man.out_dir)
    return [(it, str(out / it.files[0])) for it in man.items]


def _vl(it, lang: str = "en") -> str:
    return tr("na", lang) if it.val_loss is None else f"{it.val_loss:.4f}"


def val_na_reason(cfg, validation: Optional[dict], lang: str = "en") -> str:
    """Why a comparison has no validation loss, from core.export.compare's record ({dataset, songs, note}):
    no tokenized dataset, one without validation songs, or one this model cannot use."""
    v = validation or {}
    if v.get("dataset"):
        if not v.get("songs"):
            return tr("val_na_no_val", lang)
        return tr("val_na_other", lang, why=v.get("note") or "")
    from core.training.dataset import find_dataset_dir
    try:  # a dataset folder exists but did not load: it was made for another model or codec
        find_dataset_dir(cfg)
    except StudioError:  # ConfigError: no dataset folder at all
        return tr("val_na_no_dataset", lang)
    return tr("val_na_mismatch", lang, why=v.get("cause") or v.get("note") or "")


def generate(ws, ckpt, strength, lyrics, desc, seconds, seed, prompt, progress=None, lang: str = "en") -> str:
    cfg, settings = _gen_setup(ckpt, lyrics, desc, seconds, seed, prompt)
    from core.export import compare
    man = _budgeted(ws, compare.generate_single, cfg, ckpt, kind="single", strength=float(strength),
                    settings=settings, with_val_loss=False, **_gen_progress(progress, lang))
    return _files(man)[0][1]


def ab(ws, ckpt, strength, lyrics, desc, seconds, seed, prompt, progress=None, lang: str = "en") -> dict[str, Any]:
    cfg, settings = _gen_setup(ckpt, lyrics, desc, seconds, seed, prompt)
    from core.export import compare
    man = _budgeted(ws, compare.ab_compare, cfg, ckpt, kind="ab", strength=float(strength), settings=settings,
                    **_gen_progress(progress, lang))
    (a_it, a), (b_it, b) = _files(man)
    note = tr("ab_note", lang, seed=settings.seed, a=_vl(a_it, lang), b=_vl(b_it, lang))
    if a_it.val_loss is None or b_it.val_loss is None:
        note += "\n\n" + tr("val_na_note", lang, why=val_na_reason(cfg, man.validation, lang))
    return {"a": a, "b": b, "note": note + "\n\n" + tr("ab_files", lang, dir=man.out_dir)}


def sweep(ws, ckpt, scales, lyrics, desc, seconds, seed, prompt, progress=None,
          lang: str = "en") -> list[tuple[float, str, str]]:
    cfg, settings = _gen_setup(ckpt, lyrics, desc, seconds, seed, prompt)
    from core.export import compare
    man = _budgeted(ws, compare.strength_sweep, cfg, ckpt, list(scales), kind="sweep", settings=settings,
                    **_gen_progress(progress, lang))
    return [(float(it.model.get("strength", s)), path, _vl(it, lang)) for s, (it, path) in zip(scales, _files(man))]


def _finished(manifest: Path) -> bool:
    """A generation folder whose job ended with every file (core.export.compare marks a stopped one)."""
    import json
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("status", "done") == "done"
    except (OSError, ValueError):
        return False


def _latest_generation(ws, kinds=("ab", "sweep", "single")) -> Optional[Path]:
    root = ws.root / "generations"
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if p.is_dir() and _finished(p / "manifest.json")
             and any(p.name.split("_", 1)[-1].startswith(k) for k in kinds)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def push(ws, ckpt, strength, repo_id, private, adapter, merged, dataset, token: Optional[str] = None,
         lang: str = "en") -> str:
    """core.export.hub.push of the picked checkpoint (adapter), its merged export, the newest A/B or sweep
    (embedded in the card) and optionally the dataset. `token` is passed through, never stored."""
    if not (repo_id or "").strip():
        raise UserError("need_repo")
    from core.export import merge as export
    from core.export import hub
    cfg = _run_cfg_for(ckpt)
    kind = export.checkpoint_kind(ckpt)
    adapter_dir = ckpt if adapter and kind == "lora" else None
    merged_dir = None
    if merged or kind == "full":
        merged_dir = export.default_export_dir(cfg, ckpt, float(strength) if kind == "lora" else None)
        if not (Path(merged_dir) / "model.pt").is_file():
            raise UserError("merge_first", path=merged_dir, strength=f"{float(strength):g}")
    samples = _latest_generation(ws)
    res = _user_error(hub.push, cfg, repo_id=repo_id.strip(), adapter_dir=adapter_dir,
                      merged_dir=merged_dir, samples_dir=samples, push_dataset=bool(dataset), private=bool(private),
                      token=token or None)
    extra = " · " + tr("push_dataset_at", lang, url=res.dataset_url) if getattr(res, "dataset_url", None) else ""
    return tr("push_result", lang, url=res.url, vis=tr("vis_private" if res.private else "vis_public", lang),
              n=len(res.files)) + extra
