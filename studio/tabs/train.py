"""Tab 3 -- Train: base model, full / LoRA options and presets, the exact command and config,
start / stop / save-now / sample-now / resume, and a live view of the run read from its files
(loss plot, progress with ETA, log tail, samples). A reload re-attaches to the running job."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.runs import store as runs
from core.errors import StudioError
from core.training.presets import DEFAULT_PRESET, DEMO_ONLY, GPU_PRESETS, PRESETS, QLORA_PRESETS, preset_name, preset_values  # noqa: F401
from studio import backend, feedback, gradio_compat, monitor, sandbox
from studio.feedback import UserError
from studio.i18n import request_lang, status_word, tr
from studio.widgets import api_name, config_value, config_widget

# a preset's value is its English name (stable for the API); its label is worded per browser
_PRESET_KEYS = {DEFAULT_PRESET: "preset_quick", "Voice / style LoRA · 24 GB": "preset_voice24",
                "Style LoRA, bigger rank · 48 GB": "preset_style48", "Full finetune · 80 GB × N": "preset_full80"}


def preset_label(name: str, lang: str) -> str:
    if name in _PRESET_KEYS:
        return tr(_PRESET_KEYS[name], lang)
    for table, key in ((GPU_PRESETS, "preset_gpu"), (QLORA_PRESETS, "preset_qlora")):
        for gb, p in table.items():
            if name == preset_name(gb, table):
                return tr("preset_gpu", lang, gb=gb, model=p["model"], label=tr(f"{key}_{gb}", lang))
    return name


def preset_choices(lang: str) -> list[tuple[str, str]]:
    return [(preset_label(n, lang), n) for n in PRESETS]


def base_choices(lang: str) -> list[tuple[str, str]]:
    return [(tr("base_demo", lang), "demo"), (tr("base_folder", lang), "folder"), (tr("base_hub", lang), "hub")]


def _shown(value: Any) -> Any:
    """A config value as its widget shows it (None: not set, shown as 0)."""
    return 0 if value is None else value


# fixed colours per series: light raw loss under its dark smoothed line, held-out curves in warm colours
_PALETTE = ["#9ecae9", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def _series_labels(lang: str) -> dict[str, str]:
    """Legend names of the monitor's series in `lang` (monitor.RunView.rows' `labels`)."""
    out = {"loss (raw)": tr("train_raw", lang), "loss (smoothed)": tr("train_smooth", lang),
           "val_loss": tr("val_curve", lang)}
    for name in monitor.STREAMS:
        if name in ("loss", "val_loss"):
            continue
        shown = tr(f"s_{name}", lang)
        out[name if name.startswith("val_") else f"{name} (smoothed)"] = (
            shown if name.startswith("val_") else tr("smoothed_fmt", lang, name=shown))
    return out


def _plot_value(rows: list, lang: str = "en", total: int = 0, dpo: bool = False, final: bool = False) -> Any:
    """The loss plot's update for these rows. No rows: None (the empty placeholder), never an empty
    frame: Gradio's plot builds its Vega spec (the colour domain, the axis types) from the first
    value it draws and afterwards only swaps data, so a spec built from an empty frame draws no line
    for the whole run. The colour map names exactly the series present, so a new series (the
    validation curve, a translated legend) changes it and makes the plot rebuild its spec."""
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=["step", "loss", "series"])
    names = list(dict.fromkeys(df["series"]))
    # the x axis spans the run's planned steps (at least 20): Vega's ticks then fall on whole steps, where
    # a 3-step axis was labelled 1.0, 1.2, ... and the first points seemed to sit at fractional steps
    top = gradio_compat.final_rebuild(max(int(total or 0), int(df["step"].max()), 20), final)
    return gr.update(value=df, color_map={n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)},
                     x_lim=[0, top], x_title=tr("plot_step", lang),
                     y_title=tr("plot_y_dpo" if dpo else "loss_short", lang), color_title=tr("plot_series", lang))


ACTIVE = runs.ACTIVE
CK_COLS = ["ck_step", "ck_reason", "ck_loss", "ck_val", "ck_time", "ck_best"]


def _run_choices(ctx, lang=None, runs=None):
    if runs is None:
        try:
            runs = backend.list_runs(ctx.ws)
        except gr.Error:
            return []
    lang = lang or ctx.lang
    return [(f"{r['run_id']} · {status_word(r.get('status', '?'), lang)}", r["run_dir"]) for r in runs]


def _ck_table(rows, lang):
    return pd.DataFrame(rows, columns=[tr(c, lang) for c in CK_COLS])


def build(ctx) -> dict:
    t = ctx.t
    # the settings last used in this workspace, else the preset (fitted to the data again on page load)
    p, preset0, _ = backend.form_values(ctx.ws, ctx.lang, fit=False)
    w: dict[str, gr.components.Component] = {}
    with gr.Row():
        with gr.Column(scale=1, min_width=340):
            with gr.Group():
                gr.Markdown(f"### {t('base_model')}")
                w["base_kind"] = gr.Radio(base_choices(ctx.lang),
                                          value=ctx.ws.get_state().get("base_kind", "demo"), label=t("base_kind"),
                                          elem_id="base-kind")
                w["base_path"] = gr.Textbox(label=t("base_path"), value=ctx.ws.get_state().get("base_path", ""),
                                            elem_id="base-path")
                inspect_btn = gr.Button(t("inspect_btn"), size="sm", elem_id="btn-inspect")
                model_info = gr.Markdown(elem_id="model-info")
            w["preset"] = gr.Dropdown(preset_choices(ctx.lang), value=preset0, label=t("preset"),
                                      info=t("preset_help"), elem_id="preset")
            preset_msg = gr.Markdown(elem_id="preset-note")

            def cw(key, label, **kw):
                w[key] = config_widget(key, label, p.get(key), **kw)

            cw("training.type", t("mode"), info=t("mode_help"), elem_id="mode")
            with gr.Accordion(t("lora_opts"), open=True) as lora_box:
                with gr.Row():
                    cw("lora.r", t("lora_r"))
                    cw("lora.alpha", t("lora_alpha"))
                    cw("lora.dropout", t("lora_dropout"))
                cw("lora.stacks", t("lora_stacks"))
                with gr.Row():
                    cw("lora.train_fusion", t("lora_fusion"))
                    cw("lora.train_heads", t("lora_heads"))
            with gr.Accordion(t("optim"), open=False, elem_id="optim-acc"):
                with gr.Row():
                    cw("training.learning_rate", t("lr"))
                    cw("training.max_steps", t("steps"), elem_id="steps")
                    cw("training.epochs", t("epochs"))
                with gr.Row():
                    cw("training.batch_size", t("batch"))
                    cw("training.gradient_accumulation_steps", t("accum"))
                    cw("training.warmup_steps", t("warmup"))
                with gr.Row():
                    cw("training.max_frames", t("max_frames"), elem_id="max-frames")
                    cw("training.mixed_precision", t("precision"), dropdown=True)
                    cw("training.optimizer", t("optimizer"), dropdown=True)
                    cw("training.base_dtype", t("base_dtype"), dropdown=True)
                    cw("training.base_quant", t("base_quant"), dropdown=True)
                with gr.Row():  # a checkbox beside three dropdowns had its label cut off
                    cw("training.gradient_checkpointing", t("grad_ckpt"), elem_id="grad-ckpt")
                    cw("training.compile", t("compile"), elem_id="compile-step")
                with gr.Row():
                    cw("training.save_every", t("save_every"))
                    cw("training.sample_every", t("sample_every"))
                    cw("training.log_every", t("log_every"))
                    cw("training.seed", t("seed"))
                with gr.Row():
                    cw("training.num_samples", t("num_samples"))
                    cw("training.sample_seconds", t("sample_seconds"))
                with gr.Row():
                    cw("training.keep_last", t("keep_last"), elem_id="keep-last")
                    cw("training.eval_every", t("eval_every"), elem_id="eval-every")
                    cw("training.early_stopping_patience", t("patience"), elem_id="patience")
            with gr.Accordion(t("machines"), open=False, elem_id="machines-acc"):
                cw("training.distributed", t("distributed"), info=t("distributed_help"), dropdown=True,
                   elem_id="distributed")
                with gr.Row():
                    cw("training.num_processes", t("num_processes"), elem_id="num-processes")
                    cw("training.num_machines", t("num_machines"))
                with gr.Row():
                    cw("training.main_process_ip", t("main_ip"))
                    cw("training.main_process_port", t("main_port"))
            w["run_name"] = gr.Textbox("", label=t("run_name"), elem_id="run-name")
            estimate = gr.Markdown(elem_id="estimate")
            with gr.Accordion(t("next_run"), open=False, elem_id="next-run-acc"):
                next_cmd = gr.Code(label=t("command"), language="shell", lines=2, interactive=False,
                                   elem_id="next-command", buttons=["copy"])
                next_cfg = gr.Code(label=t("config_yaml"), language="yaml", lines=14, interactive=False,
                                   elem_id="next-config", buttons=["copy", "download"])
                save_cfg_btn = gr.Button(t("save_cfg"), size="sm", elem_id="btn-save-config")
                cfg_file = gr.File(interactive=False, elem_id="config-file")
        with gr.Column(scale=2):
            with gr.Row():
                run_pick = gr.Dropdown(choices=_run_choices(ctx), label=t("runs"), scale=4, elem_id="run-pick")
                refresh_btn = gr.Button(t("refresh"), size="sm", scale=1, elem_id="btn-refresh-runs")
            with gr.Row():
                start_btn = gr.Button(t("start"), variant="primary", interactive=not ctx.locked, elem_id="btn-start")
                stop_btn = gr.Button(t("stop"), variant="stop", elem_id="btn-stop")
                save_btn = gr.Button(t("save_now"), elem_id="btn-save-now")
                sample_btn = gr.Button(t("sample_now"), elem_id="btn-sample-now")
                resume_btn = gr.Button(t("resume"), interactive=not ctx.locked, elem_id="btn-resume")
            if ctx.locked:
                gr.Markdown(ctx.msg("demo_disabled"), elem_id="train-locked", elem_classes=["locked-note"])
            action_msg = gr.Markdown(elem_id="train-msg")
            status = gr.Markdown(t("no_run"), elem_id="run-status")
            progress = gr.HTML(elem_id="run-progress")
            plot = gr.LinePlot(value=None, x="step", y="loss",
                               color="series", label=t("loss_plot"), height=440, elem_id="loss-plot")
            with gr.Row():
                sample_pick = gr.Dropdown(label=t("samples"), choices=[], elem_id="sample-pick", scale=2)
                sample_audio = gr.Audio(type="filepath", interactive=False, elem_id="sample-audio", scale=3,
                                        label=t("samples"))
            ck_table = gr.Dataframe(value=_ck_table([], ctx.lang), label=t("ckpt_table"), interactive=False,
                                    wrap=True, elem_id="ckpt-table")
            # a Textbox, not Code: it scrolls to the newest line as the log grows
            log = gr.Textbox(label=t("log_tail"), lines=10, max_lines=14, interactive=False, autoscroll=True,
                             elem_id="log-tail")
            command = gr.Code(label=t("command"), language="shell", lines=2, interactive=False, elem_id="run-command",
                              buttons=["copy"])
            with gr.Accordion(t("config_yaml"), open=False):
                config = gr.Code(language="yaml", lines=16, interactive=False, elem_id="run-config",
                                 buttons=["copy", "download"])
            with gr.Accordion(t("manage_run"), open=False, elem_id="manage-run"):
                with gr.Row():
                    new_name = gr.Textbox(label=t("new_name"), scale=3, elem_id="run-new-name")
                    rename_btn = gr.Button(t("rename_btn"), size="sm", scale=1, elem_id="btn-rename-run")
                    delete_btn = gr.Button(t("delete_btn"), size="sm", variant="stop", scale=1, elem_id="btn-delete-run")
            gr.Markdown(t("next_train"), elem_classes=["next-hint"], elem_id="next-train")
    view_state = gr.State({"run": None, "version": -1})
    timer = gr.Timer(1.5)

    keys = [k for k in w if k != "preset"]  # config paths, plus the UI-only base_kind / base_path / run_name
    inputs = [w[k] for k in keys]

    def values(*vals):
        """Widget values keyed by config path, as the config takes them."""
        return {k: config_value(k, v) if "." in k else v for k, v in zip(keys, vals)}

    def named(fn, with_request: bool = False):
        """Readable API parameters for a *vals handler: /start_run(training_max_steps=..., lora_r=...)."""
        return gradio_compat.named(fn, [api_name(k) for k in keys], with_request)

    # ---- presets, preview, estimate ----------------------------------------------------------
    preset_keys = sorted({k for pr in PRESETS.values() for k in pr})

    def apply_preset(name, kind, path, request: gr.Request = None):
        """The preset (core.training.presets) for this base model, its crop fitted to the prepared data."""
        ctx.ws.set_state(preset=name)
        pr, note = backend.preset_values(ctx.ws, name, kind, path, request_lang(request, ctx.lang))
        return [gr.update(value=_shown(pr[k])) if k in pr else gr.skip() for k in preset_keys] + [note]

    # .input, not .change: a value set by the page load (the last settings) must not re-apply the preset
    w["preset"].input(apply_preset, [w["preset"], w["base_kind"], w["base_path"]],
                      [w[k] for k in preset_keys] + [preset_msg], api_name=False)
    demo_only = sorted({k for keys in DEMO_ONLY.values() for k in keys})

    def base_changed(name, kind, path, request: gr.Request = None):  # re-applies the preset's demo-only values
        pr, note = backend.preset_values(ctx.ws, name, kind, path, request_lang(request, ctx.lang))
        return [gr.update(value=_shown(pr[k])) if k in pr and k in DEMO_ONLY.get(name, ()) else gr.skip()
                for k in demo_only] + [note]

    w["base_kind"].input(base_changed, [w["preset"], w["base_kind"], w["base_path"]],
                         [w[k] for k in demo_only] + [preset_msg], api_name=False)

    def refit(name, kind, path, current, request: gr.Request = None):
        """New data (a tokenize): the crop follows them where the preset chose it or the trainer would refuse it."""
        from core.training.presets import refit_crop

        lang = request_lang(request, ctx.lang)
        fit = backend.data_fit(ctx.ws, kind, path)
        new = refit_crop(config_value("training.max_frames", current), name, kind, fit)
        if new is None:
            return gr.skip(), gr.skip()
        return new, backend.preset_note((current, new), fit, lang)

    def restore(request: gr.Request = None):
        """Page load: the settings last used in this workspace, else the chosen preset fitted to the data."""
        vals, name, note = backend.form_values(ctx.ws, request_lang(request, ctx.lang))
        return ([gr.update(value=_shown(vals[k])) if k in vals else gr.skip() for k in keys]
                + [gr.update(value=name), note])

    w["training.type"].change(lambda m: gr.update(visible=m == "lora"), w["training.type"], lora_box, api_name=False, queue=False)

    def preview(*vals):
        *vals, request = vals
        lang = request_lang(request, ctx.lang)
        v = values(*vals)
        try:
            cfg = backend.train_config(ctx.ws, v)
            yaml_text, cmd = backend.preview(ctx.ws, cfg)
            est = backend.estimate(cfg, lang)
            verdict = backend.check_text(cfg, lang)  # the trainer's data check, before launch
        except (StudioError, gr.Error) as err:  # invalid values: one message in the estimate's place
            return gr.skip(), gr.skip(), f"⚠ {feedback.message(err, lang)}"
        except Exception as err:  # noqa: BLE001 - a bug: said as one, the page keeps working
            bug = feedback.internal(err, ctx.error_log, not ctx.public)
            return gr.skip(), gr.skip(), f"⚠ {feedback.message(bug, lang)}"
        return yaml_text, cmd, (f"{verdict}\n\n{est}" if verdict else est)

    preview = named(preview, with_request=True)

    gr.on([c.change for c in inputs], preview, inputs, [next_cfg, next_cmd, estimate], api_name="preview_config",
          trigger_mode="always_last")

    def inspect(kind, path):
        sandbox.check_visitor_choice(ctx.ws, kind, path)  # before anything is saved or read
        ctx.ws.set_state(base_kind=kind, base_path=path or "", base_model="demo" if kind == "demo" else (path or ""))
        return backend.inspect_model(ctx.ws, kind, path)

    inspect_btn.click(inspect, [w["base_kind"], w["base_path"]], model_info, api_name="inspect_model")

    @named
    def save_cfg(*vals):
        cfg = backend.train_config(ctx.ws, values(*vals))
        return backend.save_config(ctx.ws, cfg, values(*vals).get("run_name"))

    save_cfg_btn.click(save_cfg, inputs, cfg_file, api_name="save_config")

    # ---- run control ---------------------------------------------------------------------------
    def start(*vals):
        *vals, request = vals
        lang = request_lang(request, ctx.lang)
        if ctx.locked:
            raise UserError("demo_disabled")
        v = values(*vals)
        sandbox.check_visitor_choice(ctx.ws, v["base_kind"], v["base_path"])
        run_dir = backend.start_new_run(ctx.ws, v, lang)  # refused while a run is active / bad base / no data
        ctx.ws.set_state(base_kind=v["base_kind"], base_path=v["base_path"] or "",
                         base_model="demo" if v["base_kind"] == "demo" else (v["base_path"] or ""))
        return (gr.update(choices=_run_choices(ctx, lang), value=str(run_dir)), tr("started", lang, run=Path(run_dir).name),
                gr.update(interactive=False))

    start = named(start, with_request=True)

    def _need(run):
        if not run:
            raise UserError("no_run_picked")
        return backend.check_run_dir(ctx.ws, run)

    def _flag(send, what):
        def handler(run, request: gr.Request = None):
            lang = request_lang(request, ctx.lang)
            try:  # e.g. Save now on a finished run: refused, and the refusal stays under the buttons
                send(_need(run))
            except (gr.Error, StudioError) as err:
                return feedback.in_place(err, lang)
            return tr("flag_sent", lang, what=tr(what, lang), run=Path(run).name)
        return handler

    stop, save_now, sample_now = (_flag(backend.stop_run, "stop"), _flag(backend.request_save, "save_now"),
                                  _flag(backend.request_sample, "sample_now"))

    def resume(run, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if ctx.locked:
            raise UserError("demo_disabled")
        backend.resume_run(_need(run))
        return gr.update(choices=_run_choices(ctx, lang), value=run), tr("resumed", lang, run=Path(run).name)

    # the button greys out with the answer (and on every tick while a run is active); the server refuses a
    # second start anyway (backend.start_new_run -> runs.start_run(exclusive=True))
    start_ev = start_btn.click(start, inputs, [run_pick, action_msg, start_btn], api_name="start_run")
    stop_btn.click(stop, run_pick, action_msg, api_name="stop_run")
    save_btn.click(save_now, run_pick, action_msg, api_name="save_now")
    sample_btn.click(sample_now, run_pick, action_msg, api_name="sample_now")
    resume_btn.click(resume, run_pick, [run_pick, action_msg], api_name="resume_run")

    def refresh_runs(run, request: gr.Request = None):
        ch = _run_choices(ctx, request_lang(request, ctx.lang))
        vals = [c[1] for c in ch]
        return gr.update(choices=ch, value=run if run in vals else (vals[0] if vals else None))

    refresh_btn.click(refresh_runs, run_pick, run_pick, api_name="list_runs")

    def rename(run, name, request: gr.Request):
        lang = request_lang(request, ctx.lang)
        new = backend.rename_run(ctx.ws, _need(run), name)
        return gr.update(choices=_run_choices(ctx, lang), value=new), tr("renamed", lang, run=Path(new).name), ""

    def delete(run, request: gr.Request):
        lang = request_lang(request, ctx.lang)
        backend.delete_run(ctx.ws, _need(run))
        ch = _run_choices(ctx, lang)
        return gr.update(choices=ch, value=ch[0][1] if ch else None), tr("deleted", lang, run=Path(run).name)

    rename_btn.click(rename, [run_pick, new_name], [run_pick, action_msg, new_name], api_name="rename_run")
    delete_btn.click(delete, run_pick, [run_pick, action_msg], api_name="delete_run")

    # ---- live view -------------------------------------------------------------------------------
    def poll(run, st, request: gr.Request = None):
        """One timer tick: incremental read of the run's files; plot only re-sent when it changed.
        Start is off while any run of the workspace is active; the run list follows status changes."""
        st = dict(st or {})
        lang = request_lang(request, ctx.lang)
        ws = ctx.ws  # once per tick (on a Space each access resolves the visitor's sandbox)
        try:
            all_runs = backend.list_runs(ws)
        except gr.Error:
            all_runs = []
        busy = any(r.get("status") in ACTIVE for r in all_runs)
        sig = [(r["run_dir"], r.get("status")) for r in all_runs]
        buttons = (gr.update(interactive=not busy and not ctx.locked), gr.update(interactive=not busy and not ctx.locked))
        pick = gr.skip()
        if st.get("runs") != sig or st.get("lang") != lang:  # a status changed: relabel the run list
            pick = gr.update(choices=_run_choices(ctx, lang, all_runs))
        st.update(runs=sig)
        if run:
            try:
                run = backend.check_run_dir(ws, run)
            except gr.Error:
                run = None  # not a run of this workspace (or sandbox): show nothing of it
        if not run:
            return (tr("no_run", lang), "", gr.skip(), gr.skip(), gr.skip(), st) + buttons + (pick,)
        # its status was just read with the list (a run made since then is read on its own)
        info = next((r for r in all_runs if r["run_dir"] == str(run)), None) or backend.run_status(run)
        v = monitor.refresh(run)
        last = v.last
        state = info.get("status", "?")
        step, total = last.get("step", info.get("step", 0)) or 0, last.get("total", info.get("total")) or 0
        loss = last.get("loss")
        status_md = (f"**{status_word(state, lang)}** · `{Path(run).name}`"
                     + (f" · {info['error']}" if info.get("error") else ""))
        frac = (step / total) if total else 0.0
        eta = last.get("eta_s") if state in ACTIVE else None  # a finished or stopped run has no ETA
        line = tr("progress_fmt", lang, step=step, total=total or "?", epoch=last.get("epoch", "—"),
                  loss=f"{loss:.4f}" if isinstance(loss, (int, float)) else "—", eta=monitor.fmt_eta(eta))
        bar = (f"<div class='run-progress'><div class='bar' style='width:{100 * min(1.0, frac):.1f}%'></div></div>"
               f"<div class='run-progress-text'>{line}</div>")
        version, rows = v.snapshot(labels=_series_labels(lang))  # the rows of exactly this version
        final = state not in ACTIVE
        changed = (st.get("run") != run or st.get("version") != version or st.get("lang") != lang
                   or st.get("final") != final)
        plot_out = ck_out = gr.skip()
        if changed:  # the sample list has its own tick (samples_tick): a metrics line must not reset the pick
            dpo = any("reward" in k for k in v.series)  # a DPO run: its y axis holds rewards, not only a loss
            plot_out = _plot_value(rows, lang, total, dpo, final)
            ck_out = _ck_table(backend.checkpoint_rows(run, lang), lang)
        st.update(run=run, version=version, lang=lang, final=final)
        return (status_md, bar, plot_out, backend.tail_log(run), ck_out, st) + buttons + (pick,)

    poll_outs = [status, progress, plot, log, ck_table, view_state, start_btn, resume_btn, run_pick]
    timer.tick(poll, [run_pick, view_state], poll_outs, api_name="poll", show_progress="hidden", queue=False)
    # the log tail follows its end (in the page only: no server call)
    timer.tick(None, None, None, js="() => { const t = document.querySelector('#log-tail textarea'); "
                                    "if (t) t.scrollTop = t.scrollHeight; }", api_name=False)

    def select_run(run):
        if not run:
            return gr.skip(), gr.skip()
        return backend.run_config_text(run), backend.run_command(run)

    run_pick.change(select_run, run_pick, [config, command], api_name=False).then(
        poll, [run_pick, view_state], poll_outs, api_name=False, show_progress="hidden")
    sample_pick.change(lambda s: s, sample_pick, sample_audio, api_name=False)

    # the sample list follows the run's samples folder: the final sample is written after the last metrics
    # line, so a list refreshed only with the metrics missed it until a reload
    samples_seen = gr.State(None)

    def samples_tick(run, seen):
        try:
            run = backend.check_run_dir(ctx.ws, run) if run else None
        except gr.Error:
            run = None
        sm = backend.samples(run) if run else []
        if [run, sm] == seen:
            return gr.skip(), seen
        return gr.update(choices=[(Path(x).name, x) for x in sm], value=sm[-1] if sm else None), [run, sm]

    timer.tick(samples_tick, [run_pick, samples_seen], [sample_pick, samples_seen], api_name=False,
               show_progress="hidden", queue=False)

    return {"select_run": select_run, "run_config": config, "run_command": command, "run_pick": run_pick, "view_state": view_state, "poll": poll, "poll_outs": poll_outs,
            "changed": start_ev, "preview": preview, "inputs": inputs, "values": values, "config": next_cfg, "command": next_cmd,
            "estimate": estimate, "sample_audio": sample_audio, "start_btn": start_btn, "resume_btn": resume_btn,
            "preset": w["preset"], "base_kind": w["base_kind"], "ck_table": ck_table, "sample_pick": sample_pick, "samples_tick": samples_tick,
            "restore": restore, "restore_outs": inputs + [w["preset"], preset_msg], "refit": refit,
            "refit_ins": [w["preset"], w["base_kind"], w["base_path"], w["training.max_frames"]],
            "refit_outs": [w["training.max_frames"], preset_msg]}


def wire_load(ctx, demo, ui, new_data=()) -> None:
    """Page load: re-attach to the runs and restore the form; `new_data`: events after which the prepared
    data changed (a tokenize), which re-fit the crop to them."""
    for ev in new_data:
        ev.then(ui["refit"], ui["refit_ins"], ui["refit_outs"], api_name=False)

    def attach(request: gr.Request = None):
        """Re-attach on page load: the running run if any, else the newest (state from files); the run
        list and the presets worded in this browser's language."""
        lang = request_lang(request, ctx.lang)
        try:
            runs = backend.list_runs(ctx.ws)
        except gr.Error:
            runs = []
        active = [r for r in runs if r.get("status") in ACTIVE]
        pick = (active or runs or [None])[0]
        return (gr.update(choices=_run_choices(ctx, lang, runs), value=pick["run_dir"] if pick else None),
                {"run": None, "version": -1}, gr.update(choices=preset_choices(lang)),
                gr.update(choices=base_choices(lang)), _ck_table([], lang))  # the table's heads in this language


    demo.load(attach, None, [ui["run_pick"], ui["view_state"], ui["preset"], ui["base_kind"], ui["ck_table"]],
              api_name=False).then(
        ui["restore"], None, ui["restore_outs"], api_name=False).then(
        ui["select_run"], ui["run_pick"], [ui["run_config"], ui["run_command"]], api_name=False).then(
        ui["poll"], [ui["run_pick"], ui["view_state"]], ui["poll_outs"], api_name=False, show_progress="hidden").then(
        ui["preview"], ui["inputs"], [ui["config"], ui["command"], ui["estimate"]], api_name=False)
