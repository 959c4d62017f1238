"""Tab -- Timing: when each section of a song is sung.

Waveform with the vocal-activity envelope, one start-time field per section (plain number inputs in
Tab order), playback from any section, an LRC upload, and a proposal from the vocal stem with its
confidence that is applied only when the user presses Accept. Saved starts become the song's timing
(source "edited" or "proposed"); prepare then cuts long songs and crops at these boundaries.
"""
from __future__ import annotations

import gradio as gr

from studio import timing_edit as te
from studio.feedback import UserError
from studio.i18n import in_lang

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
        propose_btn = gr.Button(t("timing_propose"), elem_id="btn-timing-propose")
        accept_btn = gr.Button(t("timing_accept"), visible=False, elem_id="btn-timing-accept")
    proposal_md = gr.Markdown(elem_id="timing-proposal")
    proposal = gr.State(None)

    msg_ = ctx.msg  # messages with values are built on the server, in the studio's language

    def _status(v: te.TimingView, msg: str = "") -> str:
        lines = [msg] if msg else []
        lines.append(msg_("timing_source", source=v.source, n=len(v.sections), dur=f"{v.duration_s:.1f}"))
        lines += [f"- {x}" for x in v.notes]
        if v.at_prepare:
            lines.append(msg_("timing_at_prepare"))
            lines += [f"- {x}" for x in v.at_prepare]
        lines += [f"- ⚠ {x}" for x in v.errors]
        return "\n\n".join(lines)

    def _show(idx, msg="", prop=None):
        """Everything the tab shows for one song."""
        if not idx or ctx.ws.song(idx) is None:
            return [None, msg_("timing_pick"), gr.update(choices=[], value=None)] + \
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
        return [img, _status(v, msg), gr.update(choices=picks, value=None)] + ups + row_ups

    outs = [plot, status, play_pick] + fields + rows

    def on_song(idx):
        return _show(idx) + [None, "", gr.update(visible=False)]

    def use_lrc(idx, f):
        path = _files(f)
        if not path:
            raise UserError("timing_need_lrc")
        try:
            v = te.use_lrc(ctx.ws, idx, path)
        except (te.TimingEditError, ValueError) as err:
            raise UserError("plain", text=lambda lg, e=err: in_lang(e.args[0], lg)) from None
        return _show(idx, msg_("timing_lrc_used", idx=idx) + "".join(f"\n- {n}" for n in v.notes[:2]))

    def save(idx, *starts):
        try:
            te.save_starts(ctx.ws, idx, starts, "edited")
        except te.TimingEditError as err:
            raise UserError("plain", text=lambda lg, e=err: in_lang(e.args[0], lg)) from None
        return _show(idx, msg_("timing_saved", idx=idx))

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

    def do_propose(idx):
        try:
            p = te.propose(ctx.ws, idx)
        except te.TimingEditError as err:
            raise UserError("plain", text=lambda lg, e=err: in_lang(e.args[0], lg)) from None
        rows = "\n".join(f"| {k + 1} {tag} | {s:.2f} | {c:.2f} |"
                         for k, (tag, s, c) in enumerate(zip(p["tags"], p["starts"], p["section_confidence"])))
        md = (msg_("timing_proposal_head", conf=f"{p['confidence']:.2f}", stem=p["stem"]) + "\n\n"
              + msg_("te_cols") + "\n|---|---|---|\n" + rows + "".join(f"\n\n- {n}" for n in p["notes"]))
        return [te.picture(ctx.ws, idx, proposal=p["starts"]), p, md, gr.update(visible=True)]

    def accept(idx, p):
        if not p:
            raise UserError("timing_no_proposal")
        try:
            te.save_starts(ctx.ws, idx, p["starts"], "proposed")
        except te.TimingEditError as err:
            raise UserError("plain", text=lambda lg, e=err: in_lang(e.args[0], lg)) from None
        return _show(idx, msg_("timing_accepted", idx=idx)) + [None, "", gr.update(visible=False)]

    song.change(on_song, [song], outs + [proposal, proposal_md, accept_btn], api_name="timing_song")
    lrc_btn.click(use_lrc, [song, lrc], outs, api_name="timing_use_lrc")
    save_btn.click(save, [song] + fields, outs, api_name="timing_save")
    redraw_btn.click(redraw, [song] + fields, plot, api_name="timing_redraw")
    play_pick.change(play, [song, play_pick] + fields, clip, api_name="timing_play")
    propose_btn.click(do_propose, [song], [plot, proposal, proposal_md, accept_btn], api_name="timing_propose")
    accept_btn.click(accept, [song, proposal], outs + [proposal, proposal_md, accept_btn], api_name="timing_accept")
    return {"song": song, "refresh_choices": lambda: gr.update(choices=[s["idx"] for s in ctx.ws.songs()])}


def wire_load(ctx, demo, ui) -> None:
    demo.load(ui["refresh_choices"], None, ui["song"], api_name=False)
