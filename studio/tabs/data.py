"""Tab 1 -- Data: add songs (one by one or in bulk), see audio QC and lyric-grammar findings,
compare the auto-fixed lyrics with the original, accept or edit them, listen."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from studio import backend, serving
from studio.feedback import UserError
from studio.i18n import finding, in_lang, request_lang, status_word, tr

COLS = ["col_idx", "col_file", "col_dur", "col_audio", "col_lyrics", "col_desc", "col_status", "col_reasons"]


def _files(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, (str, bytes)):
        return [str(value)]
    out = []
    for v in value:
        out.append(v if isinstance(v, str) else getattr(v, "name", None) or v.get("path"))
    return [o for o in out if o]


REASON_CHARS = 90  # longer reasons are cut in the table; the song's detail below shows them whole


def reasons(s: dict, lang: str) -> list[str]:
    """A song's findings in `lang`: audio QC and lyric findings by their codes (studio.i18n.finding)."""
    chk = s.get("check") or {}
    coded = chk.get("reason_findings")
    if coded is None:  # a check saved before findings carried their codes
        coded = [{"message": r} for r in chk.get("reasons", [])]
    return [finding(f, s.get("source_name") or s["idx"], lang) for f in coded]


def _tier_choices(lang: str) -> list[tuple[str, str]]:
    """(label, value) pairs: the default (empty: the model's very-high) and the official tiers."""
    return [(tr("musicality_default", lang), "")] + [(x, x) for x in backend.musicality_choices()]


SONG_COL_WIDTHS = ["12%", "12%", "9%", "8%", "8%", "15%", "9%", "27%"]  # one per COLS


def songs_table(ctx, lang=None) -> pd.DataFrame:
    lang = lang or ctx.lang
    rows = []
    for s in ctx.ws.songs():
        chk = s.get("check") or {}
        why = " · ".join(reasons(s, lang))
        rows.append([s["idx"], s.get("source_name", ""), chk.get("duration"),
                     status_word(chk.get("audio_status", "?"), lang), status_word(chk.get("lyric_status", "?"), lang),
                     s.get("descriptions", ""), status_word(chk.get("status", "unchecked"), lang),
                     why if len(why) <= REASON_CHARS else why[:REASON_CHARS - 1] + "…"])
    return pd.DataFrame(rows, columns=[tr(c, lang) for c in COLS])


def check_all(ctx) -> None:
    for idx, chk in backend.check_songs(ctx.ws, ctx.ws.songs()).items():
        ctx.ws.update_song(idx, check=chk)


def _detail(ctx, idx, lang=None):
    lang = lang or ctx.lang
    s = ctx.ws.song(idx) if idx else None
    if s is None:
        return None, "", "", ""
    if not s.get("check"):
        s = {**s, "check": backend.check_song(ctx.ws, s)}
    chk = s["check"]
    findings = "\n".join(f"- {r}" for r in reasons(s, lang)) or f"- {status_word('ok', lang)}"
    if chk.get("tag_suggestions"):
        findings += "\n\n" + ", ".join(chk["tag_suggestions"])
    return s["path"], s.get("original_lyric", ""), chk.get("fixed_lyric", s.get("gt_lyric", "")), \
        f"**{status_word(chk.get('status', '?'), lang)}**\n\n{findings}"


def build(ctx) -> dict:
    t = ctx.t
    gr.Markdown(t("data_intro"))
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tab(t("add_one"), elem_id="data-add-one"):
                audio = gr.File(label=t("audio_file"), file_types=["audio"], elem_id="song-audio")
                lyrics = gr.Textbox(label=t("lyrics"), info=t("lyrics_help"), lines=6, elem_id="song-lyrics")
                desc = gr.Textbox(label=t("descriptions"), info=t("desc_help"), elem_id="song-desc")
                tags = gr.Dropdown(choices=backend.tag_choices(), multiselect=True, label=t("suggest_tags"),
                                   elem_id="song-tags", allow_custom_value=False)
                tier = gr.Dropdown(choices=_tier_choices(ctx.lang), value="", label=t("musicality"),
                                   info=t("musicality_help"), elem_id="song-musicality")
                add_btn = gr.Button(t("add_song"), variant="primary", elem_id="btn-add-song")
            with gr.Tab(t("bulk_import"), elem_id="data-bulk"):
                bulk = gr.File(label=t("bulk_files"), file_count="multiple", elem_id="bulk-files")
                import_btn = gr.Button(t("import_btn"), elem_id="btn-import")
            msg = gr.Markdown(elem_id="data-msg")
        with gr.Column(scale=2):
            # widths as shares of the box (at 1280 px the content's own widths ran 1,686 px in a 798 px box,
            # status and reasons off screen); long cells wrap, reasons are cut short
            table = gr.Dataframe(value=songs_table(ctx), label=t("songs"), interactive=False, wrap=True,
                                 elem_id="songs-table", column_widths=SONG_COL_WIDTHS)
            check_btn = gr.Button(t("check_btn"), elem_id="btn-check")
            pick = gr.Dropdown(choices=[s["idx"] for s in ctx.ws.songs()], label=t("song_pick"), elem_id="song-pick")
            player = gr.Audio(label=t("player"), type="filepath", interactive=False, elem_id="song-player")
            with gr.Row():
                original = gr.Textbox(label=t("original"), lines=6, interactive=False, elem_id="lyric-original")
                fixed = gr.Textbox(label=t("fixed"), lines=6, interactive=True, elem_id="lyric-fixed")
            findings = gr.Markdown(elem_id="song-findings")
            picked_tier = gr.Dropdown(choices=_tier_choices(ctx.lang), value="", label=t("musicality"),
                                      elem_id="picked-musicality")
            with gr.Row():
                accept_btn = gr.Button(t("accept_fix"), variant="primary", elem_id="btn-accept-fix")
                save_btn = gr.Button(t("save_edit"), elem_id="btn-save-edit")
                remove_btn = gr.Button(t("remove_song"), variant="stop", elem_id="btn-remove-song")

    def merge_tags(selected, current):
        have = [x.strip() for x in (current or "").split(",") if x.strip()]
        for tag in selected or []:
            if tag not in have:
                have.append(tag)
        return ", ".join(have)

    tags.change(merge_tags, [tags, desc], desc, api_name=False, queue=False)

    def _refresh(idx=None, text="", lang=None):
        ids = [s["idx"] for s in ctx.ws.songs()]
        idx = idx if idx in ids else (ids[-1] if ids else None)
        return (songs_table(ctx, lang), gr.update(choices=ids, value=idx), text) + tuple(_detail(ctx, idx, lang))

    outs = [table, pick, msg, player, original, fixed, findings]

    def add(audio_file, lyric, description, musicality, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        paths = _files(audio_file)
        if not paths:
            raise UserError("need_audio")
        idx = ctx.ws.add_song(paths[0], lyric or "", description or "")
        serving.discard_uploads(paths[0])  # copied into the workspace: Gradio's temporary copy goes now
        s = ctx.ws.update_song(idx, musicality=musicality or "")
        ctx.ws.update_song(idx, check=backend.check_song(ctx.ws, s))
        # the form is emptied so the next song starts clean (no accidental duplicates)
        return _refresh(idx, tr("added", lang, idx=idx), lang) + (None, "", "", [], "")

    def set_tier(idx, musicality, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if not idx or ctx.ws.song(idx) is None:
            raise UserError("no_song")
        s = ctx.ws.update_song(idx, musicality=musicality or "")
        ctx.ws.update_song(idx, check=backend.check_song(ctx.ws, s))
        return _refresh(idx, tr("musicality_saved", lang, idx=idx,
                                tier=musicality or tr("musicality_default", lang)), lang)

    def do_import(files, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        added, problems = ctx.ws.import_files(_files(files))
        serving.discard_uploads(_files(files))  # each one copied, or refused with its reason
        for idx, chk in backend.check_songs(ctx.ws, [ctx.ws.song(i) for i in added]).items():
            ctx.ws.update_song(idx, check=chk)
        text = tr("imported", lang, n=len(added)) + "".join(f"\n- {in_lang(p, lang)}" for p in problems)
        return _refresh(added[-1] if added else None, text, lang)

    def do_check(idx, request: gr.Request = None):
        check_all(ctx)
        return _refresh(idx, "", request_lang(request, ctx.lang))

    def set_lyric(idx, text, which, lang=None):
        lang = lang or ctx.lang
        if not idx or ctx.ws.song(idx) is None:
            raise UserError("no_song")
        fields = {"gt_lyric": text or ""}
        desc = (ctx.ws.song(idx).get("check") or {}).get("desc_text")
        if which == "fix" and desc:  # accepting the fix takes prepare's fixed description too (core's check)
            fields["descriptions"] = desc
        s = ctx.ws.update_song(idx, **fields)
        ctx.ws.update_song(idx, check=backend.check_song(ctx.ws, s))
        return _refresh(idx, tr("saved", lang, idx=idx), lang)

    def remove(idx, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        if not idx:
            raise UserError("no_song")
        ctx.ws.remove_song(idx)
        return _refresh(None, tr("removed", lang, idx=idx), lang)

    add_btn.click(add, [audio, lyrics, desc, tier], outs + [audio, lyrics, desc, tags, tier], api_name="add_song")
    picked_tier.input(set_tier, [pick, picked_tier], outs, api_name="set_musicality")
    pick.change(lambda i: (ctx.ws.song(i) or {}).get("musicality", "") if i else "", [pick], [picked_tier],
                api_name=False, queue=False)
    import_btn.click(do_import, [bulk], outs, api_name="import_files")
    check_btn.click(do_check, [pick], outs, api_name="check_songs")
    def detail(i, request: gr.Request = None):
        return _detail(ctx, i, request_lang(request, ctx.lang))

    def accept_fix(i, f, request: gr.Request = None):
        return set_lyric(i, f, "fix", request_lang(request, ctx.lang))

    def save_lyric(i, f, request: gr.Request = None):
        return set_lyric(i, f, "edit", request_lang(request, ctx.lang))

    pick.change(detail, [pick], [player, original, fixed, findings], api_name="song_detail")
    accept_btn.click(accept_fix, [pick, fixed], outs, api_name="accept_fix")
    save_btn.click(save_lyric, [pick, fixed], outs, api_name="save_lyric")
    remove_btn.click(remove, [pick], outs, api_name="remove_song")
    gr.Markdown(t("next_data"), elem_classes=["next-hint"], elem_id="next-data")
    return {"table": table, "pick": pick, "outs": outs, "refresh": _refresh, "tiers": [tier, picked_tier]}


def wire_load(ctx, demo, ui) -> None:
    def load(request: gr.Request = None):
        return ui["refresh"](None, "", request_lang(request, ctx.lang))

    demo.load(load, None, ui["outs"], api_name=False)

    def tiers(request: gr.Request = None):  # the "default" entry in this browser's language
        return tuple(gr.update(choices=_tier_choices(request_lang(request, ctx.lang))) for _ in ui["tiers"])

    demo.load(tiers, None, ui["tiers"], api_name=False, queue=False)
