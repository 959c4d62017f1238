"""The one seam between the studio and the engine: every call into `core` goes through here.

Modules of `core` that import torch (data, model, estimate, export, generate, hub) are imported inside
the functions that use them, so `python app.py` serves its page without loading torch first; config,
runs, lyrics and description are light and imported here. Nothing here trains, encodes or generates: it builds
configs (keyed by config path, as the widgets are) and calls `core`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from core import tokens
from core.text import description
from core.text import lyrics
from core.runs import store as runs
from core.config import DEMO, ConfigError, StudioConfig, default, load_config
from core.fsutil import slugify
from core.errors import StudioError
from studio import sandbox
from studio.feedback import UserError, config_problems, message, refusal
from studio.i18n import finding, status_word, tr, value_word


def build_config(overrides: dict[str, Any]) -> StudioConfig:
    """The config for dotted-key overrides (widget values keyed by config path); bad values become a UI message."""
    try:
        return load_config(None, overrides)
    except ConfigError as err:
        raise UserError("plain", text=lambda lang, e=err: config_problems(e, lang)) from None


# the Tokenize tab's choices, saved in the workspace state under their config paths
DATA_KEYS = ("data.codec", "data.separation", "data.bgm_mode", "data.val_fraction", "paths.runtime_path")


def _data_overrides(ws) -> dict[str, Any]:
    """The Tokenize tab's choices saved in the workspace state (only those the user set; the rest are
    the config's defaults)."""
    st = ws.get_state()
    return {k: st[k] for k in DATA_KEYS if st.get(k) not in (None, "")}


def uses_demo(ws) -> bool:
    """True when the workspace's current choices involve the built-in demo model or demo codec."""
    st = ws.get_state()
    return st.get("data.codec", default("data.codec")) == DEMO or (st.get("base_model") or DEMO) == DEMO


# ---- data -----------------------------------------------------------------------------------
def musicality_choices() -> list[str]:
    """The official musicality tiers, best first."""
    return list(description.MUSICALITY_TIERS)


def tag_choices() -> list[str]:
    """Every description tag of the official vocabularies (gender, genre, emotion, instrument)."""
    vocab = description.list_tags()
    out: list[str] = []
    for tags in vocab.values():
        for tg in tags:
            if tg not in out:
                out.append(tg)
    return out


def check_context(ws, max_dur: Optional[float] = None):
    """core's context for checking the workspace's songs as prepare will (core.data.check_context);
    `max_dur`: check against that limit instead of the base model's (what-if, tests)."""
    import dataclasses

    from core import data
    ctx = data.check_context(_prepare_cfg(ws))
    if max_dur is not None:
        ctx.limits = dataclasses.replace(ctx.limits, config=dataclasses.replace(ctx.limits.config, max_dur=float(max_dur)))
    return ctx


def check_song(ws, song: dict[str, Any], max_dur: Optional[float] = None, ctx=None) -> dict[str, Any]:
    """core.data.steps.check_song of one workspace song (prepare's own steps, nothing written), as the
    plain dict the Data tab keeps: prepare's status and reasons, plus the codes the page words them by."""
    from core.data.inputs import coerce_items
    from core.data.steps import check_song as core_check

    try:
        ctx = ctx or check_context(ws, max_dur)
    except (StudioError, OSError) as err:  # no readable base model yet: the songs are shown unchecked
        return {"status": "unchecked", "reasons": [str(err)], "reason_findings": [{"message": str(err)}]}
    rep = core_check(coerce_items([song])[0], ctx)
    e = rep.entry()
    found = e["findings"]
    audio = [f for f in found if f.get("code") and f.get("kind") != "timing"]
    other = [f for f in found if not f.get("code") and f.get("kind") != "timing"]
    worst = next((lv for lv in ("error", "fix", "warning") if any(f["level"] == lv for f in other)), "ok")
    return {"status": e["status"], "reasons": e["reasons"],
            "reason_findings": [{"message": str(f["message"]), **{k: f[k] for k in ("code", "values", "note") if k in f}}
                                for f in rep.reason_findings()],
            "fixed_lyric": e.get("lyrics") or song.get("gt_lyric") or "",
            "lyric_status": {"fix": "fixed"}.get(worst, worst),
            "audio_status": next((lv for lv in ("error", "warning") if any(f["level"] == lv for f in audio)), "ok"),
            "duration": round(e["duration_s"], 1) if e.get("duration_s") is not None else None,
            "desc_unknown": list(e.get("unknown_tags") or []), "desc_text": e.get("description") or ""}


def check_songs(ws, songs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """check_song of several songs with one context (the model's limits read once): {idx: check}."""
    try:
        ctx = check_context(ws)
    except (StudioError, OSError):  # no readable base model yet: each song says so
        ctx = None
    return {s["idx"]: check_song(ws, s, ctx=ctx) for s in songs}


def _prepare_cfg(ws):
    ov = {"workspace": str(ws.root), "paths.metadata_path": str(ws.write_metadata()), **_data_overrides(ws)}
    if ws.get_state().get("base_model"):
        ov["paths.base_model_path"] = ws.get_state()["base_model"]
    return build_config(ov)


def plan_prepare(ws, lang: str = "en") -> str:
    """core.data.plan: what a prepare would reuse from the cache and what it would encode (no encoding)."""
    from core import data
    d = _user_error(data.plan, _prepare_cfg(ws))

    def names(key):
        v = d.get(key) or []
        return f"**{len(v)}**" + (f" ({', '.join(map(str, v[:8]))}{' …' if len(v) > 8 else ''})" if v else "")

    return "\n".join([f"- {tr('plan_cached', lang, n=names('cached'))}", f"- {tr('plan_encode', lang, n=names('to_encode'))}",
                      f"- {tr('plan_rejected', lang, n=names('rejected'))}",
                      f"- {tr('plan_sep', lang, sep=separation_text(d, lang))}"])


def separation_text(summary: dict[str, Any], lang: str = "en") -> str:
    """How vocals were split from accompaniment (core's `separation_info`), in `lang`; core's English
    label for anything it does not describe as fields."""
    info = summary.get("separation_info") or {}
    kind = info.get("kind")
    if kind == "demo":
        return tr("sep_demo_fallback" if info.get("fallback") else "sep_demo", lang)
    if kind == "demucs":
        bgm = tr("sep_bgm_stems" if info.get("bgm_mode") == "stems" else "sep_bgm_minus", lang)
        return tr("sep_demucs", lang, ckpt=info.get("checkpoint") or "?", bgm=bgm)
    if kind == "none":
        return tr("sep_none", lang)
    return str(summary.get("separation", "?"))


def prepare(ws, progress: Callable[[float, str], None] | None = None, lang: str = "en") -> dict[str, Any]:
    """core.data.prepare of the workspace's songs, one job per visitor; in a sandbox it spends the visitor's
    compute quota and is stopped at its next song once the quota is spent (core.runs.budget)."""
    with sandbox.compute_job(ws) as left:
        return _prepare(ws, progress, lang, quota_s=left)


def _prepare(ws, progress: Callable[[float, str], None] | None = None, lang: str = "en",
             quota_s: Optional[float] = None) -> dict[str, Any]:
    from core import data
    from core.runs.budget import data_budget, run_watched, song_steps
    cfg = _prepare_cfg(ws)

    def cb(*args, **kw):
        # accept (done, total[, message]) or (fraction[, message])
        if progress is None:
            return
        try:
            if len(args) >= 2 and isinstance(args[1], (int, float)) and args[1]:
                progress(float(args[0]) / float(args[1]), str(args[2]) if len(args) > 2 else "")
            elif args:
                progress(float(args[0]), str(args[1]) if len(args) > 1 else "")
        except Exception:
            pass

    budget = data_budget(cfg, quota_s)
    try:  # the budget is checked before `cb`, whose failures never stop a prepare; watched, so a song that
        # hangs inside one call still ends the event at the stall bound
        result = run_watched(budget, data.prepare, cfg, progress=song_steps(budget, cb))
    except StudioError as err:  # DataError / ConfigError / TimeLimit...: worded by its code
        raise job_refusal(err) from None
    finally:
        sandbox.hold_while_running(ws, budget.worker)
    ds = getattr(result, "dataset_dir", None)
    ws.set_state(dataset_dir=str(ds) if ds else None, report_path=str(getattr(result, "report_path", "") or ""))
    return last_prepare(ws, lang)


def _short(text: str, limit: int = 90) -> str:
    """A table cell's reasons cut to one readable line; the song's detail (tab 1) has them whole."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _song_seconds(entry: dict[str, Any], frame_rate: int) -> Optional[float]:
    for k in ("duration", "duration_s", "seconds"):
        if isinstance(entry.get(k), (int, float)):
            return float(entry[k])
    if isinstance(entry.get("frames"), (int, float)):
        return float(entry["frames"]) / frame_rate
    return None


def budget_rows(report: list[dict], rate: int, context: int, lang: str = "en") -> list[tuple]:
    """core.data.token_budget's rows (what prepare made of each song, item by item) worded for the table."""
    from core.data import token_budget

    out = []
    for b in token_budget(report, rate, context):
        rule = tr("bud_fits", lang) if b["items"] == 1 else tr(
            "bud_item", lang, k=b["item"], n=b["items"], a=f"{b['start_s']:.0f}", b=f"{b['end_s']:.0f}")
        out.append((str(b["idx"]), b["frames"], b["context"], f"{100 * b['frames'] / max(1, b['context']):.0f} %",
                    rule if b["fits"] else tr("bud_over", lang, n=b["context"])))
    return out


def last_prepare(ws, lang: str = "en") -> Optional[dict[str, Any]]:
    """The last prepared dataset's report, summary and token budget, read from its files, worded in `lang`."""
    import json
    st = ws.get_state()
    rp = st.get("report_path") or (str(Path(st["dataset_dir"]) / "report.json") if st.get("dataset_dir") else None)
    if not rp or not Path(rp).is_file():
        return None
    try:
        report = json.loads(Path(rp).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ds = st.get("dataset_dir")
    summ = report.get("summary") if isinstance(report, dict) else None
    model = (summ or {}).get("model") or {}  # the model's timing prepare used (core.data.ModelLimits)
    rate = int(model.get("frame_rate") or tokens.FRAME_RATE)
    songs = {x["idx"]: x for x in ws.songs()}

    from core.data.steps import reason_findings

    def _reasons(e, lg):  # the entry's reasons in the reader's language, worded by their codes
        song = songs.get(e.get("idx")) or {}
        found = reason_findings(e["findings"], e.get("status", "")) if "findings" in e else \
            [{"message": r} for r in e.get("reasons", []) or []]  # a report written before findings were kept
        return [finding(f, song.get("source_name") or e.get("idx"), lg) for f in found]

    entries = report.get("songs", report.get("items", [])) if isinstance(report, dict) else report
    rows = []
    for e in entries:
        split = e.get("split", "")
        rows.append({"idx": e.get("idx"), "status": e.get("status"),
                     "split": value_word("split", split, lang),
                     "seconds": _song_seconds(e, rate),
                     "from cache": {True: tr("rep_yes", lang), False: tr("rep_encoded", lang)}.get(e.get("cached"), ""),
                     "reasons": _short(" · ".join(_reasons(e, lang)))})
    ctx_frames = int(model.get("max_frames") or 0)
    budget = budget_rows(entries, rate, ctx_frames, lang) if ctx_frames else []  # a report without the model: none
    durs = [r["seconds"] for r in rows if r["seconds"] is not None and r["status"] != "rejected"]
    hist: dict[int, int] = {}
    for d in durs:
        b = int(d // 30) * 30
        hist[b] = hist.get(b, 0) + 1
    hist_rows = [(f"{b}-{b + 30}", n) for b, n in sorted(hist.items())]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    md = [tr("prepared_at", lang, path=sandbox.hide_paths(ws, ds)) if ds else tr("sum_none", lang), "",
          " · ".join(f"**{status_word(k, lang)}** {v}" for k, v in counts.items())]
    if isinstance(summ, dict):
        md.append("\n" + tr("sum_line", lang, enc=summ.get("encoded", 0), cached=summ.get("cached", 0),
                            train=summ.get("train", 0), val=summ.get("validation", 0), codec=summ.get("codec"),
                            demo=" (DEMO)" if summ.get("codec_is_demo") else "", sep=separation_text(summ, lang),
                            secs=summ.get("elapsed_s", 0)))
        if summ.get("validation_note"):  # core's two cases: one song, or a validation share of 0
            one = sum(1 for r in rows if r["status"] != "rejected") == 1
            md.append("\n⚠ " + tr("val_note_one" if one else "val_note_zero", lang))
    if ctx_frames:
        md.append("\n" + tr("sum_context", lang, tokens=ctx_frames, secs=f"{ctx_frames / rate:.0f}", rate=rate))
    for r in rows:  # words for the table (the counts above used the status codes)
        r["status"] = status_word(r["status"] or "?", lang)
    return {"summary_md": "\n".join(md), "report_rows": rows, "budget_rows": budget, "hist_rows": hist_rows,
            "dataset_dir": ds}


# ---- model ------------------------------------------------------------------------------------
def model_description(ws):
    """core.model.describe_checkpoint of the base model saved in the workspace state (downloads a Hub repo)."""
    from core import model
    from core.training.base_model import resolve_base_model
    st = ws.get_state()
    ov = {"workspace": str(ws.root), **{k: v for k, v in _data_overrides(ws).items() if k == "paths.runtime_path"}}
    if st.get("base_model"):
        ov["paths.base_model_path"] = st["base_model"]
    cfg = build_config(ov)
    try:
        return model.describe_checkpoint(resolve_base_model(cfg), cfg.paths.runtime_path)
    except StudioError as err:  # CheckpointError: folder / repo problems, worded by its code
        raise refusal(err) from None


def inspect_model(ws, kind: str, path: str) -> str:
    if kind != "demo" and not (path or "").strip():
        raise UserError("need_base")
    info = model_description(ws)
    return "```\n" + sandbox.hide_paths(ws, info.summary()) + "\n```"


# ---- training ------------------------------------------------------------------------------------
def train_config(ws, v: dict[str, Any]) -> StudioConfig:
    """The next run's config from the Train tab: `v` holds widget values keyed by config path
    (e.g. "training.learning_rate") plus the UI-only base_kind / base_path / run_name."""
    from studio.sandbox import check_visitor_choice

    check_visitor_choice(ws, v.get("base_kind") or DEMO, v.get("base_path"))
    st = ws.get_state()
    base = DEMO if v.get("base_kind") == DEMO else (v.get("base_path") or "").strip()
    if not base:
        raise UserError("need_base")
    ov: dict[str, Any] = {"workspace": str(ws.root), "paths.base_model_path": base, **_data_overrides(ws)}
    ov.update({k: val for k, val in v.items() if "." in k})
    if st.get("dataset_dir"):
        ov["training.dataset_dir"] = st["dataset_dir"]
    return build_config(ov)


def preview(ws, cfg) -> tuple[str, str]:
    """The config the next run gets, and the command that trains it from a shell. The config is written
    to <workspace>/configs/next/ here, so the command shown never names a file that does not exist."""
    from core.runs import launch

    try:  # one command per machine (the machine rank differs)
        path = cfg.save(ws.root / "configs" / "next" / runs.CONFIG_NAME)
        cmd = "\n".join(launch.machine_commands(path, cfg))
    except (ConfigError, OSError) as err:
        cmd = f"# {err}"
    return cfg.to_yaml(), cmd


def save_config(ws, cfg, name: Optional[str] = None) -> str:
    folder = ws.root / "configs" / (slugify(name, fallback="next") if name else "next")
    return str(cfg.save(folder / "config.yaml"))


def estimate(cfg, lang: str = "en") -> str:
    """core.training.estimate.estimate_memory / estimate_time, worded for the UI in `lang`."""
    from core import data
    from core.training import estimate as est
    try:
        e = est.estimate_memory(cfg)
        rate = data.model_limits(cfg).frame_rate
    except StudioError as err:  # e.g. a folder that is not a checkpoint yet
        return tr("est_mem_na", lang, err=message(err, lang))
    share = 100.0 * e["trainable"] / max(1, e["parameters"])
    text = (tr("est_mem", lang, total=f"{e['total_gb']:.2f}", w=e["weights_gb"], g=e["grads_optimizer_gb"],
               a=e["activations_gb"], l=e["logits_gb"], tr=f"{e['trainable']:,}", n=f"{e['parameters']:,}",
               share=f"{share:.2f}", frames=e["frames"], secs=f"{e['frames'] / rate:.0f}")
            + f"\n\n<small>`{tr('est_formula_mem', lang)}`</small>")  # core's formula, worded in `lang`
    tc = cfg.training
    if (tc.num_processes or 1) > 1:
        text += "\n\n" + tr("est_per_gpu", lang, dist=tc.distributed, n=tc.num_processes,
                             gb=f"{est.sharded_memory(e, tc.distributed, tc.num_processes):.2f}")
    try:
        t = est.estimate_time(cfg)
    except StudioError as err:  # the memory figure still stands
        return text + "\n\n" + tr("est_time_na", lang, err=message(err, lang))
    per_step = tr("est_per_step", lang, s=f"{t['step_s']:.1f}", device=t["device"], dtype=t["dtype"])
    if t["total_s"] is None:
        when = tr("est_time_nodata", lang, per_step=per_step)
    else:
        when = tr("est_time", lang, total=_duration(t["total_s"], lang), steps=t["steps"], per_step=per_step)
    if t.get("source") == "measured":  # this machine's own step time: no formula, no bound
        m = t["measured"]
        return text + f"\n\n{when} <small>{tr('est_measured', lang, run=m['run'], n=m['steps'])}</small>"
    return text + f"\n\n{when} <small>{tr('est_bound', lang)}; `{tr('est_formula_time', lang)}`</small>"


def _duration(seconds: float, lang: str = "en") -> str:
    if seconds < 90:
        return tr("dur_s", lang, n=f"{seconds:.0f}")
    if seconds < 5400:
        return tr("dur_min", lang, n=f"{seconds / 60:.0f}")
    return tr("dur_h", lang, n=f"{seconds / 3600:.1f}")


def start_new_run(ws, v: dict[str, Any], lang: str = "en") -> Path:
    """Create and launch a run; refused (gr.Error, nothing created) while another run of the workspace
    is active, without prepared data, or with a base folder that is not a checkpoint."""
    refuse_if_busy(ws, lang)
    st = ws.get_state()
    if not st.get("dataset_dir") or not Path(st["dataset_dir"]).is_dir():
        raise UserError("need_data")
    cfg = train_config(ws, v)
    check_base(cfg, lang)
    refuse_unless_trainable(cfg)  # the trainer's own data check: refused here, not seconds after launch
    save_settings(ws, v)
    return launch_run(ws, cfg, (v.get("run_name") or "").strip() or None)


def launch_run(ws, cfg: StudioConfig, name: Optional[str]) -> Path:
    """Create and start a run (SFT or DPO): one job per visitor and one machine in a sandbox; a start
    that loses a race leaves no empty run behind."""
    try:
        sandbox.check_processes(ws, cfg)
    except ConfigError as err:
        raise refusal(err) from None
    with sandbox.one_job(ws):
        run_dir = runs.create_run(cfg, name=name)
        try:
            runs.start_run(run_dir, exclusive=True)
        except StudioError as err:  # another start won the race: leave no empty run behind
            runs.delete_run(run_dir)
            raise refusal(err) from None
    return run_dir


# ---- runs (studio/backend_runs.py) ---------------------------------------------------------------
from studio.backend_runs import (  # noqa: E402,F401 - one seam for the tabs
    check_base, check_checkpoint, check_run_dir, checkpoint_rows, delete_run, list_runs, refuse_if_busy,
    rename_run, request_sample, request_save, resume_run, run_command, run_config_text, run_status, samples,
    stop_run, tail_log)


# ---- the Train form's checks and presets (studio/backend_train.py) ------------------------------------
from studio.backend_train import (  # noqa: E402,F401 - one seam for the tabs
    check_text, data_fit, form_values, preset_note, preset_values, refuse_unless_trainable, save_settings,
    saved_settings)


# ---- export (studio/backend_export.py) -------------------------------------------------------------
from studio.backend_export import (  # noqa: E402,F401 - one seam for the tabs
    _run_cfg_for, _user_error, ab, all_checkpoints, generate, job_refusal, merge, push, sweep)
