"""Export tab, "Teach it your taste": generate k candidates for one lyric, listen, mark the preferred
and the rejected ones (preference pairs with tokens, text and seeds, stored in the workspace), see /
import / export the pairs, and start a short DPO run with the Train tab's settings. The run is an
ordinary run: it shows in the Train tab with its loss and reward-margin curves."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from studio import preference as pref, serving
from studio.feedback import UserError
from studio.i18n import request_lang, tr
from studio.widgets import config_widget

MAX_K = 4


def build(ctx, export_ui: dict, train_ui: dict) -> dict:
    t = ctx.t
    with gr.Accordion(t("pref_title"), open=False, elem_id="pref-box") as box:
        gr.Markdown(t("pref_intro"))
        set_state = gr.State({})
        with gr.Row():
            k = gr.Slider(2, MAX_K, value=2, step=1, label=t("pref_k"), elem_id="pref-k")
            gen_btn = gr.Button(t("pref_generate"), variant="primary", elem_id="btn-pref-generate")
        with gr.Row():
            players = [gr.Audio(type="filepath", interactive=False, visible=False, elem_id=f"pref-cand-{i}")
                       for i in range(MAX_K)]
        with gr.Row():
            chosen = gr.Radio([], label=t("pref_chosen"), elem_id="pref-chosen")
            rejected = gr.CheckboxGroup([], label=t("pref_rejected"), elem_id="pref-rejected")
            mark_btn = gr.Button(t("pref_mark"), elem_id="btn-pref-mark")
        msg = gr.Markdown(elem_id="pref-msg")
        gr.Markdown(t("pref_pairs"))
        count = gr.Markdown(elem_id="pref-count")
        table = gr.Dataframe(headers=ctx.msg("pref_cols").split(","), interactive=False, elem_id="pref-pairs")
        with gr.Row():
            export_btn = gr.Button(t("pref_export"), elem_id="btn-pref-export")
            export_file = gr.File(interactive=False, elem_id="pref-export-file")
            import_file = gr.File(label=t("pref_import_file"), file_types=[".jsonl"], elem_id="pref-import-file")
            import_btn = gr.Button(t("pref_import"), elem_id="btn-pref-import")
        dpo_keys = ["dpo.beta", "dpo.sft_weight", "dpo.label_smoothing", "training.max_steps"]
        with gr.Row():
            dpo_w = [config_widget("dpo.beta", t("pref_beta"), elem_id="pref-beta"),
                     config_widget("dpo.sft_weight", t("pref_sft"), elem_id="pref-sft"),
                     config_widget("dpo.label_smoothing", t("pref_smooth"), elem_id="pref-smooth"),
                     config_widget("training.max_steps", t("pref_steps"), value=10, elem_id="pref-steps")]
            start_btn = gr.Button(t("pref_start"), variant="primary", interactive=not ctx.locked,
                                  elem_id="btn-pref-start")

    def table_out(lang=None):
        lang = lang or ctx.lang
        rows = pref.pair_rows(ctx.ws)
        cols = tr("pref_cols", lang).split(",")
        return tr("pref_count", lang, n=len(rows)), pd.DataFrame(rows, columns=cols)  # headers even when empty

    def pairs(request: gr.Request = None):
        return table_out(request_lang(request, ctx.lang))

    box.expand(pairs, None, [count, table], api_name="pref_pairs")

    def generate(c, s, ly, de, sec, sd, kk, request: gr.Request = None, progress=gr.Progress()):
        lang = request_lang(request, ctx.lang)
        rec = pref.generate(ctx.ws, c, s, ly, de, sec, sd, kk, progress=progress, lang=lang)
        items = rec["items"]
        choices = [(tr("pref_candidate", lang, i=it["index"] + 1, seed=it["seed"]), it["index"]) for it in items]
        outs = [gr.update(value=items[i]["audio"], visible=True, label=choices[i][0]) if i < len(items)
                else gr.update(value=None, visible=False) for i in range(MAX_K)]
        return [rec, gr.update(choices=choices, value=None), gr.update(choices=choices, value=[])] + outs

    ex = export_ui
    gen_btn.click(generate, [ex["ckpt"], ex["strength"], ex["lyrics"], ex["desc"], ex["seconds"], ex["seed"], k],
                  [set_state, chosen, rejected] + players, api_name="pref_candidates")

    def mark(rec, c, rj, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if not rec or not rec.get("dir"):
            raise UserError("pref_no_set")
        if c is None:
            raise UserError("pref_no_choice")
        rj = list(rj or []) or [it["index"] for it in rec["items"] if it["index"] != int(c)]
        return (pref.mark(ctx.ws, rec["dir"], int(c), rj, lang), *table_out(lang))

    mark_btn.click(mark, [set_state, chosen, rejected], [msg, count, table], api_name="pref_mark")
    export_btn.click(lambda: pref.export_pairs(ctx.ws), None, export_file, api_name="pref_export")

    def do_import(f, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if not f:
            raise UserError("pref_no_file")
        path = f if isinstance(f, str) else getattr(f, "name", None)
        said = pref.import_pairs(ctx.ws, path, lang)
        serving.discard_uploads(path)  # stored in the pair store: Gradio's temporary copy goes now
        return (said, *table_out(lang))

    import_btn.click(do_import, import_file, [msg, count, table], api_name="pref_import")

    # the DPO run takes the Train tab's settings: its widgets and its own value mapping
    n_in = len(train_ui["inputs"])

    def start(*vals, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if ctx.locked:
            raise UserError("demo_disabled")
        from studio.widgets import config_value
        dpo = {key: config_value(key, v) for key, v in zip(dpo_keys, vals[n_in:])}
        run_dir = pref.start_dpo_run(ctx.ws, train_ui["values"](*vals[:n_in]), dpo, tr("pref_no_pairs", lang))
        from studio.tabs.train import _run_choices
        return gr.update(choices=_run_choices(ctx, lang), value=str(run_dir)), tr("pref_started", lang, run=Path(run_dir).name)

    start_btn.click(start, train_ui["inputs"] + dpo_w, [train_ui["run_pick"], msg], api_name="pref_start_dpo")
    return {"table": table, "count": count}
