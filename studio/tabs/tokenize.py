"""Tab 2 -- Tokenize: codec and separation choices, what the cache will reuse, progress, the
prepare report, and the token budget (tokens per song against the model's context)."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core.config import DEMO, choices, default, field_spec
from studio import backend, sandbox
from studio.feedback import UserError
from studio.i18n import request_lang, tr

# the report rows' keys (backend.last_prepare) and the i18n keys of their headers; tables start with
# these headers, never Gradio's "1 2 3" placeholder columns
REPORT_COLS = ["idx", "status", "split", "seconds", "from cache", "reasons"]
REPORT_HEAD = ["col_idx", "col_status", "rep_split", "rep_seconds", "rep_cache", "col_reasons"]
BUDGET_HEAD = ["bud_song", "bud_tokens", "bud_context", "bud_share", "bud_rule"]
HIST_COLS = ["range", "songs"]  # plotted columns; the axis titles are translated


def report_frame(rows, lang: str) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=REPORT_COLS)
    df.columns = [tr(k, lang) for k in REPORT_HEAD]
    return df


def budget_frame(rows, lang: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[tr(k, lang) for k in BUDGET_HEAD])


def hist_plot(rows, lang: str):
    """The duration histogram: one bar per 30-s range, ranges in order (nominal x, sorted as given). The
    y axis starts at 0: fitted to the data, the smallest bar had zero height (one bar: none at all).
    No rows: None, never an empty frame: the plot builds its Vega spec (the column types) from the first
    value it shows, and a spec built from an empty frame drew no bars after the first tokenize."""
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=HIST_COLS)
    top = int(df["songs"].max()) if len(df) else 1
    return gr.update(value=df, x_title=tr("hist_x", lang), y_title=tr("hist_y", lang),
                     sort=list(df["range"]) or None, y_lim=[0, top + (1 if top < 5 else top // 5)])


def build(ctx) -> dict:
    t = ctx.t
    st = ctx.ws.get_state()
    gr.Markdown(t("tok_intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            # widgets keyed by the config path they set; saved under those paths (backend.DATA_KEYS)
            w = {"data.codec": gr.Radio([(f"{c} (DEMO)" if c == DEMO else c, c) for c in choices("data.codec")],
                                        value=st.get("data.codec", default("data.codec")),
                                        label=t("codec"), info=t("codec_help"), elem_id="codec"),
                 "data.separation": gr.Radio(choices("data.separation"),
                                             value=st.get("data.separation", default("data.separation")),
                                             label=t("separation"), info=t("sep_help"), elem_id="separation"),
                 "data.bgm_mode": gr.Radio(choices("data.bgm_mode"), value=st.get("data.bgm_mode", default("data.bgm_mode")),
                                           label=t("bgm_mode"), info=t("bgm_help"), elem_id="bgm-mode"),
                 "paths.runtime_path": gr.Textbox(value=st.get("paths.runtime_path", ""), label=t("runtime_path"),
                                                  elem_id="runtime-path", interactive=not ctx.public)}
            vf = field_spec("data.val_fraction")  # the slider allows what the config allows
            w["data.val_fraction"] = gr.Slider(vf.minimum or 0.0, vf.maximum, step=0.05, label=t("val_fraction"),
                                               value=st.get("data.val_fraction", vf.default), elem_id="val-fraction")
            with gr.Row():
                plan_btn = gr.Button(t("plan_btn"), elem_id="btn-plan")
                tok_btn = gr.Button(t("tokenize_btn"), variant="primary", elem_id="btn-tokenize")
            summary = gr.Markdown(elem_id="tok-summary")
        with gr.Column(scale=2):
            report = gr.Dataframe(value=report_frame([], ctx.lang), label=t("report"), interactive=False,
                                  wrap=True, elem_id="tok-report")
            gr.Markdown(t("budget_help"))
            budget = gr.Dataframe(value=budget_frame([], ctx.lang), label=t("budget"), interactive=False,
                                  wrap=True, elem_id="tok-budget")
            hist = gr.BarPlot(value=None, x="range", y="songs", label=t("dur_hist"),
                              height=300, elem_id="tok-hist", y_title=ctx.msg("hist_y"), x_title=ctx.msg("hist_x"),
                              x_label_angle=0, y_lim=[0, 1], y_axis_format="d")

    keys = list(w)
    opts = [w[k] for k in keys]

    def _save(*vals):
        v = dict(zip(keys, vals))
        sandbox.check_visitor_choice(ctx.ws, runtime_path=v["paths.runtime_path"])
        ctx.ws.set_state(**{k: ("" if k == "paths.runtime_path" and not val else val) for k, val in v.items()})

    # API parameters named after the config paths they set (data_codec, ..., data_val_fraction)
    def plan(data_codec, data_separation, data_bgm_mode, paths_runtime_path, data_val_fraction,
             request: gr.Request = None):
        _save(data_codec, data_separation, data_bgm_mode, paths_runtime_path, data_val_fraction)
        if not ctx.ws.songs():
            raise UserError("no_songs")
        return backend.plan_prepare(ctx.ws, request_lang(request, ctx.lang))

    def tokenize(data_codec, data_separation, data_bgm_mode, paths_runtime_path, data_val_fraction,
                 request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request, ctx.lang)
        _save(data_codec, data_separation, data_bgm_mode, paths_runtime_path, data_val_fraction)
        if not ctx.ws.songs():
            raise UserError("no_songs")
        progress(0, desc=tr("tokenize_btn", lang))
        result = backend.prepare(ctx.ws, progress=lambda frac, msg="": progress(frac, desc=msg or None), lang=lang)
        if result is None:
            raise UserError("nothing_prepared")
        return show(result, lang)

    def show(result=None, lang=None):
        lang = lang or ctx.lang
        result = result if result is not None else backend.last_prepare(ctx.ws, lang)
        if not result:
            return "", report_frame([], lang), budget_frame([], lang), hist_plot([], lang)
        return (result["summary_md"], report_frame(result["report_rows"], lang),
                budget_frame(result["budget_rows"], lang), hist_plot(result["hist_rows"], lang))

    gr.Markdown(t("next_tokenize"), elem_classes=["next-hint"], elem_id="next-tokenize")
    changed = w["data.codec"].change(_save, opts, None, api_name=False)
    plan_btn.click(plan, opts, summary, api_name="plan_cache")
    tok_ev = tok_btn.click(tokenize, opts, [summary, report, budget, hist], api_name="tokenize")
    return {"changed": changed, "show": show, "outs": [summary, report, budget, hist], "tok_ev": tok_ev}


def wire_load(ctx, demo, ui) -> None:
    def load(request: gr.Request = None):
        return ui["show"](None, request_lang(request, ctx.lang))

    demo.load(load, None, ui["outs"], api_name=False)
