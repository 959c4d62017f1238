"""Export tab, "Teach it your taste": generate k candidates for one lyric, listen, mark the preferred
and the rejected ones (preference pairs with tokens, text and seeds, stored in the workspace),
see / import / export the pairs, and start a short DPO run with the Train tab's settings. The run
is an ordinary run: it appears in the Train tab with its loss and reward-margin curves."""
from __future__ import annotations

import inspect
from pathlib import Path

import gradio as gr

from studio import preference as pref
from studio.i18n import T

MAX_K = 4

T.update({
    "pref_title": ("Teach it your taste: preference pairs and DPO", "教它你的品味：偏好对与 DPO"),
    "pref_intro": ("Generate a few candidates of the same lyrics with different seeds (from the checkpoint picked "
                   "above, or the base model), listen, and mark which one you prefer. Each judgement is stored as a "
                   "preference pair (tokens, lyrics, description, seeds). A DPO run then teaches the model your "
                   "taste; it trains from the **Train tab's base model and settings** (to tune a finetuned model, "
                   "merge it above and pick the merged folder as the base in Train).",
                   "用不同种子为同一段歌词生成几个候选（来自上方选择的检查点，或基础模型），试听并标记你更喜欢的一个。"
                   "每次判断都会保存为一个偏好对（音频 token、歌词、描述、种子）。DPO 训练会让模型学习你的品味；"
                   "它使用**训练页的基础模型和设置**（如需在微调后的模型上继续，请先在上方合并，并在训练页选择合并后的文件夹作为基础模型）。"),
    "pref_k": ("Candidates", "候选数量"),
    "pref_generate": ("Generate candidates", "生成候选"),
    "pref_candidate": ("Candidate {i} · seed {seed}", "候选 {i} · 种子 {seed}"),
    "pref_chosen": ("Preferred", "更喜欢"),
    "pref_rejected": ("Rejected", "不喜欢"),
    "pref_mark": ("Save preference", "保存偏好"),
    "pref_pairs": ("Preference pairs", "偏好对"),
    "pref_cols": ("pair,prompt,chosen seed,rejected seed,created,lyrics", "偏好对,提示,选中种子,拒绝种子,创建时间,歌词"),
    "pref_export": ("Export pairs (jsonl)", "导出偏好对 (jsonl)"),
    "pref_import_file": ("Pairs file to import (jsonl)", "要导入的偏好对文件 (jsonl)"),
    "pref_import": ("Import", "导入"),
    "pref_beta": ("DPO beta", "DPO beta"),
    "pref_sft": ("SFT mixing weight", "SFT 混合权重"),
    "pref_smooth": ("Label smoothing", "标签平滑"),
    "pref_steps": ("Steps", "步数"),
    "pref_start": ("Start DPO run", "开始 DPO 训练"),
    "pref_started": ("DPO run `{run}` started: follow its loss and reward margins in the Train tab.",
                     "DPO 训练 `{run}` 已开始：在训练页查看损失与奖励差。"),
    "pref_no_set": ("Generate candidates first.", "请先生成候选。"),
    "pref_count": ("{n} pair(s) stored", "已保存 {n} 个偏好对"),
})


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
        gr.Markdown(f"#### {t('pref_pairs')}")
        count = gr.Markdown(elem_id="pref-count")
        table = gr.Dataframe(headers=t("pref_cols").split(","), interactive=False, elem_id="pref-pairs")
        with gr.Row():
            export_btn = gr.Button(t("pref_export"), elem_id="btn-pref-export")
            export_file = gr.File(interactive=False, elem_id="pref-export-file")
            import_file = gr.File(label=t("pref_import_file"), file_types=[".jsonl"], elem_id="pref-import-file")
            import_btn = gr.Button(t("pref_import"), elem_id="btn-pref-import")
        with gr.Row():
            beta = gr.Number(0.1, label=t("pref_beta"), minimum=1e-6, elem_id="pref-beta")
            sft = gr.Number(0.0, label=t("pref_sft"), minimum=0, elem_id="pref-sft")
            smooth = gr.Number(0.0, label=t("pref_smooth"), minimum=0, maximum=0.49, elem_id="pref-smooth")
            steps = gr.Number(10, label=t("pref_steps"), precision=0, minimum=1, elem_id="pref-steps")
            start_btn = gr.Button(t("pref_start"), variant="primary", interactive=not ctx.locked,
                                  elem_id="btn-pref-start")

    def table_out():
        rows = pref.pair_rows(ctx.ws)
        return t("pref_count", n=len(rows)), rows

    def generate(c, s, ly, de, sec, sd, kk, progress=gr.Progress()):
        rec = pref.generate(ctx.ws, c, s, ly, de, sec, sd, kk, progress=progress)
        items = rec["items"]
        choices = [(t("pref_candidate", i=it["index"] + 1, seed=it["seed"]), it["index"]) for it in items]
        outs = []
        for i in range(MAX_K):
            if i < len(items):
                outs.append(gr.update(value=items[i]["audio"], visible=True, label=choices[i][0]))
            else:
                outs.append(gr.update(value=None, visible=False))
        return [rec, gr.update(choices=choices, value=None), gr.update(choices=choices, value=[])] + outs

    box.expand(table_out, None, [count, table], api_name="pref_pairs")
    ex = export_ui
    gen_btn.click(generate, [ex["ckpt"], ex["strength"], ex["lyrics"], ex["desc"], ex["seconds"], ex["seed"], k],
                  [set_state, chosen, rejected] + players, api_name="pref_candidates")

    def mark(rec, c, rj):
        if not rec or not rec.get("dir"):
            raise gr.Error(t("pref_no_set"))
        if c is None:
            raise gr.Error(t("pref_chosen"))
        rj = list(rj or []) or [it["index"] for it in rec["items"] if it["index"] != int(c)]
        summary = pref.mark(ctx.ws, rec["dir"], int(c), rj)
        return (summary, *table_out())

    mark_btn.click(mark, [set_state, chosen, rejected], [msg, count, table], api_name="pref_mark")
    export_btn.click(lambda: pref.export_pairs(ctx.ws), None, export_file, api_name="pref_export")

    def do_import(f):
        if not f:
            raise gr.Error(t("pref_import_file"))
        path = f if isinstance(f, str) else getattr(f, "name", None)
        return (pref.import_pairs(ctx.ws, path), *table_out())

    import_btn.click(do_import, import_file, [msg, count, table], api_name="pref_import")

    # the DPO run takes the Train tab's settings (same widgets, same names as its own start button)
    names = list(inspect.signature(train_ui["preview"]).parameters)
    n_in = len(train_ui["inputs"])

    def start(*vals):
        if ctx.locked:
            raise gr.Error(t("demo_disabled"))
        values = dict(zip(names, vals[:n_in]))
        b, sw, ls, st = vals[n_in:]
        run_dir = pref.start_dpo_run(ctx.ws, values, b, sw, ls, st, values.get("run_name"))
        from studio.tabs.train import _run_choices
        return (gr.update(choices=_run_choices(ctx), value=str(run_dir)),
                t("pref_started", run=Path(run_dir).name))

    start_btn.click(start, train_ui["inputs"] + [beta, sft, smooth, steps], [train_ui["run_pick"], msg],
                    api_name="pref_start_dpo")
    return {"table": table, "count": count, "refresh": table_out}
