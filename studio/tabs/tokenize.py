"""Tab 2 -- Tokenize: codec and separation choices, what the cache will reuse, progress, the
prepare report, and the token budget (tokens per song against the model's context)."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from core.config import DEMO, choices, default
from studio import backend, sandbox


# headers of the empty tables (no "1 2 3" placeholder columns before the first tokenize)
REPORT_COLS = ["idx", "status", "split", "seconds", "from cache", "reasons"]
BUDGET_COLS = ["song", "tokens per stream", "model context", "share of context", "rule"]


def build(ctx) -> dict:
    t = ctx.t
    st = ctx.ws.get_state()
    gr.Markdown(t("tok_intro"))
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            codec = gr.Radio([(f"{c} (DEMO)" if c == DEMO else c, c) for c in choices("data.codec")],
                             value=st.get("codec", default("data.codec")),
                             label=t("codec"), info=t("codec_help"), elem_id="codec")
            sep = gr.Radio(choices("data.separation"), value=st.get("separation", default("data.separation")),
                           label=t("separation"), info=t("sep_help"), elem_id="separation")
            bgm = gr.Radio(choices("data.bgm_mode"), value=st.get("bgm_mode", default("data.bgm_mode")),
                           label=t("bgm_mode"), info=t("bgm_help"), elem_id="bgm-mode")
            runtime = gr.Textbox(value=st.get("runtime_path", ""), label=t("runtime_path"), elem_id="runtime-path",
                                 interactive=not ctx.public)
            val = gr.Slider(0.0, 0.5, value=st.get("val_fraction", default("data.val_fraction")), step=0.05, label=t("val_fraction"),
                            elem_id="val-fraction")
            with gr.Row():
                plan_btn = gr.Button(t("plan_btn"), elem_id="btn-plan")
                tok_btn = gr.Button(t("tokenize_btn"), variant="primary", elem_id="btn-tokenize")
            summary = gr.Markdown(elem_id="tok-summary")
        with gr.Column(scale=2):
            report = gr.Dataframe(value=pd.DataFrame(columns=REPORT_COLS), label=t("report"), interactive=False,
                                  wrap=True, elem_id="tok-report")
            gr.Markdown(t("budget_help"))
            budget = gr.Dataframe(value=pd.DataFrame(columns=BUDGET_COLS), label=t("budget"), interactive=False,
                                  elem_id="tok-budget")
            hist = gr.BarPlot(x="duration (s)", y="songs", label=t("dur_hist"), height=300, elem_id="tok-hist",
                              y_title="songs", x_title="duration (s)")

    opts = [codec, sep, bgm, runtime, val]

    def _save(c, s, b, r, v):
        sandbox.check_visitor_choice(ctx.ws, runtime_path=r, lang=ctx.lang)
        ctx.ws.set_state(codec=c, separation=s, bgm_mode=b, runtime_path=r or "", val_fraction=v)

    def plan(c, s, b, r, v):
        _save(c, s, b, r, v)
        if not ctx.ws.songs():
            raise gr.Error(ctx.msg("no_songs"))
        return backend.plan_prepare(ctx.ws)

    def tokenize(c, s, b, r, v, progress=gr.Progress()):
        _save(c, s, b, r, v)
        if not ctx.ws.songs():
            raise gr.Error(ctx.msg("no_songs"))
        progress(0, desc=ctx.msg("tokenize_btn"))
        result = backend.prepare(ctx.ws, progress=lambda frac, msg="": progress(frac, desc=msg or None))
        if result is None:
            raise gr.Error(ctx.msg("nothing_prepared"))
        return show(result)

    def show(result=None):
        result = result if result is not None else backend.last_prepare(ctx.ws)
        if not result:
            return "", pd.DataFrame(columns=REPORT_COLS), pd.DataFrame(columns=BUDGET_COLS), pd.DataFrame()
        return (result["summary_md"], pd.DataFrame(result["report_rows"], columns=REPORT_COLS),
                pd.DataFrame(result["budget_rows"], columns=BUDGET_COLS),
                pd.DataFrame(result["hist_rows"], columns=["duration (s)", "songs"]))

    gr.Markdown(t("next_tokenize"), elem_classes=["next-hint"], elem_id="next-tokenize")
    changed = codec.change(lambda *a: _save(*a), opts, None, api_name=False)
    plan_btn.click(plan, opts, summary, api_name="plan_cache")
    tok_ev = tok_btn.click(tokenize, opts, [summary, report, budget, hist], api_name="tokenize")
    return {"changed": changed, "show": show, "outs": [summary, report, budget, hist], "tok_ev": tok_ev}


def wire_load(ctx, demo, ui) -> None:
    demo.load(lambda: ui["show"](), None, ui["outs"], api_name=False)
