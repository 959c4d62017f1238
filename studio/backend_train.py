"""The Train form's view of core's decisions: presets fitted to the prepared data, the trainer's data check
before launch (core.training.preflight), and the settings last used in this workspace.

Nothing is decided here: core.training.presets says what a preset sets, core.training.preflight says
whether the trainer would take the data with these settings and which crop would work.
"""
from __future__ import annotations

from typing import Any, Optional

import gradio as gr

from core.config import DEMO
from core.errors import StudioError
from studio.feedback import UserError
from studio.i18n import tr
from studio.widgets import name_fields

# where the Train form's last settings live in the workspace state (studio.json), keyed by config path
SETTINGS_KEY = "train_settings"


def _check(cfg):
    """core's preflight of `cfg`; None while there is nothing to check (no prepared data, no model yet)."""
    from core.training.preflight import check_training

    if not cfg.training.dataset_dir:
        return None
    try:
        return check_training(cfg)
    except (StudioError, OSError):  # ConfigError / CheckpointError: no dataset or model yet, said by the other checks
        return None


def data_fit(ws, base_kind: str, base_path: str = ""):
    """core's CropFit of the workspace's prepared data for this base model; None before a tokenize."""
    from studio.backend import build_config
    from studio.sandbox import check_visitor_choice

    st = ws.get_state()
    base = DEMO if base_kind == DEMO else (base_path or "").strip()
    if not st.get("dataset_dir") or not base:
        return None
    try:
        check_visitor_choice(ws, base_kind, base_path)  # a public Space reads no model it would refuse to train
        cfg = build_config({"workspace": str(ws.root), "paths.base_model_path": base,
                            "training.dataset_dir": st["dataset_dir"]})
    except gr.Error:  # UserError and the sandbox's refusals: the preset keeps its own crop
        return None
    chk = _check(cfg)
    return chk.fit if chk is not None else None


def preset_values(ws, name: str, base_kind: str, base_path: str = "", lang: str = "en") -> tuple[dict[str, Any], str]:
    """(the preset's settings for this base model and the prepared data, a note in `lang` when the
    data raised its crop); core.training.presets decides both."""
    from core.training.presets import preset_crop_note, preset_values as core_values

    fit = data_fit(ws, base_kind, base_path)
    return core_values(name, base_kind, fit), preset_note(preset_crop_note(name, base_kind, fit), fit, lang)


def preset_note(raised: Optional[tuple[int, int]], fit, lang: str) -> str:
    if not raised:
        return ""
    return tr("preset_crop_raised", lang, own=raised[0], got=raised[1], secs=f"{raised[1] / fit.frame_rate:.1f}")


def check_text(cfg, lang: str = "en") -> str:
    """The trainer's verdict on the form's data and settings, one line for the page ("" before a tokenize)."""
    chk = _check(cfg)
    if chk is None:
        return ""
    rate = chk.frame_rate
    if chk.ok:
        return tr("tc_ok", lang, train=chk.train_items, val=chk.validation_items, frames=chk.max_frames,
                  secs=f"{chk.max_frames / rate:.1f}")
    return "⚠ " + refusal(chk, lang)


def refusal(chk, lang: str) -> str:
    """A failed check in `lang`: for a crop that is too short, the values that would work."""
    if chk.crop_too_short:
        f, rate = chk.fit, chk.frame_rate
        return tr("tc_crop", lang, now=chk.max_frames, needed=f.needed, needed_s=f"{f.needed / rate:.1f}",
                  all=f.all_sections, all_s=f"{f.all_sections / rate:.1f}")
    from studio.feedback import message

    return tr("tc_refused", lang, err=message(chk.cause, lang) if chk.cause is not None else name_fields(chk.error, lang))


def refuse_unless_trainable(cfg) -> None:
    """Raise the trainer's refusal (naming the value that would work) before anything is created."""
    chk = _check(cfg)
    if chk is not None and not chk.ok:
        raise UserError("tc_refused_start", why=lambda lang, c=chk: refusal(c, lang))


def save_settings(ws, v: dict[str, Any], preset: Optional[str] = None) -> None:
    """Keep the form's settings (config paths, base model choice) with the workspace, for the next page load."""
    keep = {k: val for k, val in v.items() if "." in k}
    extra = {"preset": preset} if preset else {}
    ws.set_state(**{SETTINGS_KEY: keep}, **extra)


def saved_settings(ws) -> dict[str, Any]:
    """The settings the form last started a run (or saved a config) with in this workspace; {} if none."""
    got = ws.get_state().get(SETTINGS_KEY)
    return dict(got) if isinstance(got, dict) else {}


def form_values(ws, lang: str = "en", fit: bool = True) -> tuple[dict[str, Any], str, str]:
    """What the Train form shows on a page load: (values by config path plus base_kind / base_path, the
    preset's name, a note): the settings last used in this workspace, else the chosen preset (its crop
    fitted to the prepared data when `fit`)."""
    from core.training.presets import DEFAULT_PRESET, PRESETS, preset_values as core_values

    st = ws.get_state()
    name = st.get("preset") if st.get("preset") in PRESETS else DEFAULT_PRESET
    kind, path = st.get("base_kind", DEMO), st.get("base_path", "")
    vals, note = saved_settings(ws), ""
    if not vals:
        vals, note = preset_values(ws, name, kind, path, lang) if fit else (core_values(name, kind), "")
    return {**vals, "base_kind": kind, "base_path": path}, name, note
