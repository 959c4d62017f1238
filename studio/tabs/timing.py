"""Tab -- Timing: when each section of a song is sung.

Waveform with the vocal-activity envelope, one start-time field per section (plain number inputs in
Tab order), playback from any section, an LRC upload, and proposals from four methods (forced
alignment of the lyrics, vocal activity, transcription with a local Whisper model, SongPrep output),
shown side by side with the saved starts and their per-section confidence. A proposal is applied only
when the user accepts it (all of it, or one section into its field); a method that cannot propose
says why. Saved starts become the song's timing; prepare then cuts long songs and crops at these
boundaries.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import serving, timing_edit as te
from studio.feedback import UserError
from studio.i18n import request_lang, said, say, tr, value_word

MAX_SECTIONS = 32
PER_ROW = 4


def _files(value) -> str | None:
    if not value:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0]
    return value if isinstance(value, str) else getattr(value, "name", None) or value.get("path")


def build(ctx) -> dict:
    t = ctx.t
    gr.Markdown(t("timing_intro"))
    with gr.Row():
        song = gr.Dropdown(choices=[s["idx"] for s in ctx.ws.songs()], label=t("song_pick"), elem_id="timing-song")
        lrc = gr.File(label=t("timing_lrc"), file_types=[".lrc"], elem_id="timing-lrc")
        lrc_btn = gr.Button(t("timing_use_lrc"), elem_id="btn-timing-lrc")
    gr.Markdown(t("timing_plot"), elem_id="timing-legend")
    plot = gr.Image(show_label=False, type="filepath", interactive=False, elem_id="timing-plot")
    status = gr.Markdown(elem_id="timing-status")
    fields: list[gr.Number] = []
    rows: list[gr.Row] = []
    with gr.Column(elem_id="timing-starts"):
        for r in range(0, MAX_SECTIONS, PER_ROW):
            with gr.Row(visible=False) as row:
                rows.append(row)
                for k in range(r, r + PER_ROW):
                    fields.append(gr.Number(label=f"{k + 1}", visible=False, minimum=0, step=0.1, precision=2,
                                            elem_id=f"timing-start-{k + 1}"))
    with gr.Row():
        save_btn = gr.Button(t("timing_save"), variant="primary", elem_id="btn-timing-save")
        redraw_btn = gr.Button(t("timing_redraw"), elem_id="btn-timing-redraw")
    with gr.Row():
        play_pick = gr.Dropdown(choices=[], label=t("timing_play_from"), elem_id="timing-play-pick")
        clip = gr.Audio(label=t("timing_clip"), type="filepath", interactive=False, elem_id="timing-clip")
    with gr.Row():
        method = gr.Dropdown(choices=[(t(f"timing_m_{m}"), m) for m in te.METHODS], value="align",
                             label=t("timing_method"), elem_id="timing-method")
        model_dir = gr.Textbox(label=t("timing_model_dir"), elem_id="timing-model-dir")
        songprep = gr.Textbox(label=t("timing_songprep"), lines=2, elem_id="timing-songprep")
        propose_btn = gr.Button(t("timing_propose"), elem_id="btn-timing-propose")
    proposal_md = gr.Markdown(elem_id="timing-proposal")
    with gr.Row():
        accept_pick = gr.Dropdown(choices=[], label=t("timing_accept_pick"), elem_id="timing-accept-pick")
        accept_btn = gr.Button(t("timing_accept"), variant="primary", elem_id="btn-timing-accept")
        section_pick = gr.Dropdown(choices=[], label=t("timing_section_pick"), elem_id="timing-section-pick")
        accept_one_btn = gr.Button(t("timing_accept_one"), elem_id="btn-timing-accept-one")
        prop_play = gr.Dropdown(choices=[], label=t("timing_play_proposal"), elem_id="timing-play-proposal")
    proposal = gr.State({})

    # messages built on the server are worded in the language of the browser that asked (studio.i18n.request_lang);
    # core's notes and refusals by their codes (studio.i18n.say)
    def _lang(request) -> str:
        return request_lang(request, ctx.lang)

    def _status(v: te.TimingView, lang: str, msg: str = "") -> str:
        lines = [msg] if msg else []
        lines.append(tr("timing_source", lang, source=value_word("tsrc", v.source, lang), n=len(v.sections),
                        dur=f"{v.duration_s:.1f}"))
        lines += [f"- {say(x, lang)}" for x in v.notes]
        if v.at_prepare:
            lines.append(tr("timing_at_prepare", lang))
            lines += [f"- {say(x, lang)}" for x in v.at_prepare]
        lines += [f"- ⚠ {say(x, lang)}" for x in v.errors]
        return "\n\n".join(lines)

    def _show(idx, lang: str, msg="", prop=None):
        """Everything the tab shows for one song."""
        if not idx or ctx.ws.song(idx) is None:
            return [None, tr("timing_pick", lang), gr.update(choices=[], value=None)] + \
                [gr.update(visible=False, value=None) for _ in fields] + [gr.update(visible=False) for _ in rows]
        v = te.view(ctx.ws, idx)
        ups = []
        for k, f in enumerate(fields):
            if k < len(v.sections):
                tag, start = v.sections[k]
                ups.append(gr.update(visible=True, label=f"{k + 1} {tag}", value=start))
            else:
                ups.append(gr.update(visible=False, value=None))
        picks = [(f"{k + 1} {tag}", k) for k, (tag, _) in enumerate(v.sections)]
        img = te.picture(ctx.ws, idx, proposal=(prop or {}).get("starts"))
        row_ups = [gr.update(visible=r * PER_ROW < len(v.sections)) for r in range(len(rows))]
        return [img, _status(v, lang, msg), gr.update(choices=picks, value=None)] + ups + row_ups

    outs = [plot, status, play_pick] + fields + rows

    def on_song(idx, request: gr.Request = None):
        # a new song starts clean: no proposals, and the previous song's LRC upload is cleared
        return _show(idx, _lang(request)) + [{}, "", gr.update(value=None)]

    def use_lrc(idx, f, request: gr.Request = None):
        path = _files(f)
        if not path:
            raise UserError("timing_need_lrc")
        try:
            v = te.use_lrc(ctx.ws, idx, path)
        except (te.TimingEditError, ValueError) as err:
            raise _err(err) from None
        serving.discard_uploads(path)  # kept with the song: Gradio's temporary copy goes now
        lang = _lang(request)
        return _show(idx, lang, tr("timing_lrc_used", lang, idx=idx, name=Path(path).name)
                     + "".join(f"\n- {say(n, lang)}" for n in v.done))

    def save(request: gr.Request, idx, props, *starts):  # the request first: Gradio fills it only before *args
        try:
            te.save_starts(ctx.ws, idx, starts, "edited")
        except te.TimingEditError as err:
            raise _err(err) from None
        lang = _lang(request)
        # the proposals' "saved" column follows the starts just saved
        return _show(idx, lang, tr("timing_saved", lang, idx=idx)) + [_proposals_md(idx, props or {}, lang)]

    def redraw(idx, *starts):
        if not idx:
            raise UserError("timing_pick")
        return te.picture(ctx.ws, idx, starts)

    def play(idx, k, *starts):
        if not idx or k is None:
            return None
        s = starts[int(k)]
        if s is None:
            raise UserError("timing_no_start")
        return te.clip_from(ctx.ws, idx, float(s))

    def _err(err):
        """A refusal of the editor (its messages coded) as one message in the reader's language."""
        msgs = getattr(err, "msgs", None) or (err,)
        return UserError("plain", text=lambda lg: "; ".join(say(x, lg) for x in msgs))

    def _proposals_md(idx, props: dict, lang: str) -> str:
        """The proposals side by side with the saved starts, then each method's notes or refusal."""
        v = te.view(ctx.ws, idx)
        methods, rows = te.comparison(v, props)
        name = {m: tr(f"timing_m_{m}", lang) for m in te.METHODS}
        head = [tr("timing_col_section", lang), tr("timing_col_saved", lang)] + [name[m] for m in methods]
        out = []
        if methods:
            out.append("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
                       + "\n".join("| " + " | ".join(r) + " |" for r in rows))
            out.append(tr("timing_conf_note", lang))
        for m, p in props.items():
            if p.get("refused"):
                out.append(tr("timing_refused", lang, method=name[m], why=say(p["refused"], lang)))
                continue
            head = tr("timing_prop_head", lang, method=name[m], conf=f"{p['confidence']:.2f}",
                      stem=say(p["stem"], lang) if p.get("stem") else "-")
            out.append(head + "".join(f"\n- {say(n, lang)}" for n in p["notes"]))
            if p.get("lyrics"):
                out.append(tr("timing_sheet", lang) + "\n\n```\n" + p["lyrics"].replace(" ; ", "\n") + "\n```")
        return "\n\n".join(out)

    def _pickers(props: dict, lang: str):
        usable = [m for m, p in props.items() if not p.get("refused")]
        ms = [(tr(f"timing_m_{m}", lang), m) for m in usable]
        plays = [(f"{tr(f'timing_m_{m}', lang)} · {k + 1} {tag} · {s:.2f}", f"{m}:{k}")
                 for m in usable for k, (tag, s) in enumerate(zip(props[m]["tags"], props[m]["starts"]))]
        return [gr.update(choices=ms, value=ms[-1][1] if ms else None), gr.update(choices=plays, value=None)]

    def do_propose(idx, m, folder, sp, props, request: gr.Request = None):
        if not idx:
            raise UserError("timing_pick")
        try:
            p = te.propose_with(ctx.ws, idx, m, folder, sp)
        except te.TimingEditError as err:
            raise _err(err) from None
        lang = _lang(request)
        props = {**(props or {}), m: p}
        img = te.picture(ctx.ws, idx, proposal=None if p.get("refused") else p["starts"])
        return [img, props, _proposals_md(idx, props, lang)] + _pickers(props, lang)

    def accept(idx, m, props, request: gr.Request = None):
        p = (props or {}).get(m)
        if not p:
            raise UserError("timing_no_proposal")
        try:
            te.accept(ctx.ws, idx, p)
        except te.TimingEditError as err:
            raise _err(err) from None
        lang = _lang(request)
        msg = tr("timing_accepted", lang, idx=idx, source=value_word("tsrc", p["source"], lang))
        return _show(idx, lang, msg) + [props, _proposals_md(idx, props, lang)]

    def accept_one(request: gr.Request, idx, m, k, props, *starts):
        p = (props or {}).get(m)
        if not p or k is None:
            raise UserError("timing_no_proposal")
        k = int(k)
        v = te.view(ctx.ws, idx)
        if list(p["tags"]) != [tag for tag, _ in v.sections] or k >= len(p["starts"]):
            raise _err(te.TimingEditError(said("te_prop_other_sections")))
        new = list(starts)
        new[k] = p["starts"][k]
        lang = _lang(request)
        msg = tr("timing_one_set", lang, k=k + 1, s=f"{p['starts'][k]:.2f}", method=tr(f"timing_m_{m}", lang))
        return [gr.update(value=x) for x in new] + [msg]

    def play_proposed(idx, pick, props):
        if not idx or not pick:
            return None
        m, k = pick.split(":")
        return te.clip_from(ctx.ws, idx, float(props[m]["starts"][int(k)]))

    def on_song_sections(idx):
        v = te.view(ctx.ws, idx) if idx and ctx.ws.song(idx) is not None else None
        picks = [(f"{k + 1} {tag}", k) for k, (tag, _) in enumerate(v.sections)] if v else []
        return gr.update(choices=picks, value=None)

    song.change(on_song, [song], outs + [proposal, proposal_md, lrc], api_name="timing_song").then(
        on_song_sections, [song], section_pick, api_name=False).then(
        lambda: [gr.update(choices=[], value=None)] * 2, None, [accept_pick, prop_play], api_name=False)
    lrc_btn.click(use_lrc, [song, lrc], outs, api_name="timing_use_lrc")
    save_btn.click(save, [song, proposal] + fields, outs + [proposal_md], api_name="timing_save")
    redraw_btn.click(redraw, [song] + fields, plot, api_name="timing_redraw")
    play_pick.change(play, [song, play_pick] + fields, clip, api_name="timing_play")
    propose_btn.click(do_propose, [song, method, model_dir, songprep, proposal],
                      [plot, proposal, proposal_md, accept_pick, prop_play], api_name="timing_propose")
    accept_btn.click(accept, [song, accept_pick, proposal], outs + [proposal, proposal_md], api_name="timing_accept")
    accept_one_btn.click(accept_one, [song, accept_pick, section_pick, proposal] + fields, fields + [status],
                         api_name="timing_accept_one")
    prop_play.change(play_proposed, [song, prop_play, proposal], clip, api_name="timing_play_proposal")
    return {"song": song, "refresh_choices": lambda: gr.update(choices=[s["idx"] for s in ctx.ws.songs()])}


def wire_load(ctx, demo, ui) -> None:
    demo.load(ui["refresh_choices"], None, ui["song"], api_name=False)
