"""Tab 4 -- Export & publish: pick a checkpoint, merge it into the base (official layout),
generate test songs, A/B against the base with the same seed, sweep the LoRA strength, and push
to the Hub. The Hub token goes straight from the field (or the Space login) to core.export.hub; the
studio never writes it anywhere."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import gradio as gr

from core.errors import StudioError
from studio import backend
from studio.feedback import UserError, in_place
from studio.i18n import request_lang, tr

EXAMPLE_LYRICS = ("[intro-short] ; [verse] the city lights are calling me home. i walk the empty streets alone ; "
                  "[chorus] sing it loud and sing it clear. the night is young and you are here ; [outro-short]")
MAX_SWEEP = 4


def _ckpt_choices(ctx, lang=None):
    try:
        return [(label, path) for label, path in backend.all_checkpoints(ctx.ws, lang or ctx.lang)]
    except gr.Error:
        return []


def build(ctx, train_ui) -> dict:
    t = ctx.t
    # the page's whole width: a label (step, reason, losses, run, time) is not cut in a 1280 px window
    with gr.Row():
        ckpt = gr.Dropdown(choices=_ckpt_choices(ctx), label=t("ckpt"), elem_id="ckpt-pick", scale=6)
        refresh_btn = gr.Button(t("refresh"), size="sm", elem_id="btn-refresh-ckpt", scale=1, min_width=100)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label=t("strength"), elem_id="strength")
            merge_btn = gr.Button(t("merge_btn"), variant="primary", elem_id="btn-merge")
            merge_msg = gr.Markdown(elem_id="merge-msg")
            gr.Markdown(f"### {t('gen_title')}")
            lyrics = gr.Textbox(EXAMPLE_LYRICS, label=t("gen_lyrics"), lines=4, elem_id="gen-lyrics")
            desc = gr.Textbox("female, pop, energetic, piano", label=t("gen_desc"), elem_id="gen-desc")
            with gr.Row():
                seconds = gr.Number(4, label=t("gen_seconds"), minimum=1, maximum=300, elem_id="gen-seconds")
                seed = gr.Number(0, label=t("seed"), precision=0, elem_id="gen-seed")
            prompt = gr.File(label=t("gen_prompt"), file_types=["audio"], elem_id="gen-prompt")
        with gr.Column(scale=2):
            with gr.Row():
                gen_btn = gr.Button(t("generate_btn"), elem_id="btn-generate")
                ab_btn = gr.Button(t("ab_btn"), variant="primary", elem_id="btn-ab")
            out_audio = gr.Audio(label=t("out_audio"), type="filepath", interactive=False, elem_id="gen-audio")
            gen_msg = gr.Markdown(elem_id="gen-msg")
            with gr.Row():
                a_audio = gr.Audio(label=t("a_audio"), type="filepath", interactive=False, elem_id="ab-a")
                b_audio = gr.Audio(label=t("b_audio"), type="filepath", interactive=False, elem_id="ab-b")
            ab_msg = gr.Markdown(elem_id="ab-msg")
            with gr.Row():
                scales = gr.Textbox("0, 0.5, 1.0", label=t("sweep_scales"), elem_id="sweep-scales")
                sweep_btn = gr.Button(t("sweep_btn"), elem_id="btn-sweep")
            with gr.Row(elem_id="sweep-row"):  # two players a row at most: each label (strength, val loss) shows
                sweep_audio = [gr.Audio(type="filepath", interactive=False, visible=False, elem_id=f"sweep-{i}",
                                        min_width=300) for i in range(MAX_SWEEP)]
            gr.Markdown(f"### {t('push_title')}")
            if ctx.locked:
                gr.Markdown(ctx.msg("demo_disabled"), elem_id="push-locked", elem_classes=["locked-note"])
            use_oauth = ctx.space.oauth and not ctx.locked  # on a Space with hf_oauth: the login gives the token
            if use_oauth:
                gr.LoginButton()
            with gr.Row():
                repo = gr.Textbox("", label=t("repo_id"), elem_id="push-repo")
                private = gr.Checkbox(True, label=t("private"), elem_id="push-private")
            with gr.Row():
                p_adapter = gr.Checkbox(True, label=t("push_adapter"))
                p_merged = gr.Checkbox(False, label=t("push_merged"))
                p_dataset = gr.Checkbox(False, label=t("push_dataset"))
            token = gr.Textbox("", label=t("token"), info=t("token_help"), type="password", elem_id="push-token",
                               visible=not use_oauth)
            push_btn = gr.Button(t("push_btn"), variant="primary", interactive=not ctx.locked, elem_id="btn-push")
            push_msg = gr.Markdown(elem_id="push-msg")

    def _need(c):
        if not c:
            raise UserError("no_ckpt")
        return backend.check_checkpoint(ctx.ws, c)

    def merge(c, s, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        try:
            return tr("merged_at", lang, path=backend.merge(ctx.ws, _need(c), s, lang))
        except (gr.Error, StudioError) as err:  # the refusal stays under the button
            return in_place(err, lang)

    def prompt_path(p) -> Optional[str]:
        if not p:
            return None
        return p if isinstance(p, str) else getattr(p, "name", None)

    # a failed generation or A/B clears the previous result: old audio must not pass for the new answer
    def generate(c, s, ly, de, sec, sd, pr, request: gr.Request, progress=gr.Progress()):
        lang = request_lang(request, ctx.lang)
        try:
            return backend.generate(ctx.ws, _need(c), s, ly, de, float(sec), int(sd), prompt_path(pr),
                                    progress=progress, lang=lang), ""
        except (gr.Error, StudioError) as err:
            return None, in_place(err, lang)

    def ab(c, s, ly, de, sec, sd, pr, request: gr.Request, progress=gr.Progress()):
        lang = request_lang(request, ctx.lang)
        try:
            res = backend.ab(ctx.ws, _need(c), s, ly, de, float(sec), int(sd), prompt_path(pr), progress=progress,
                             lang=lang)
        except (gr.Error, StudioError) as err:
            return None, None, in_place(err, lang)
        return res["a"], res["b"], res.get("note", "")

    def sweep(c, sc, ly, de, sec, sd, pr, request: gr.Request, progress=gr.Progress()):
        lang = request_lang(request, ctx.lang)
        try:
            vals = [float(x) for x in str(sc).replace(";", ",").split(",") if x.strip()][:MAX_SWEEP]
        except ValueError:
            raise UserError("bad_strengths") from None
        files = backend.sweep(ctx.ws, _need(c), vals, ly, de, float(sec), int(sd), prompt_path(pr), progress=progress,
                              lang=lang)
        out = []
        for i in range(MAX_SWEEP):
            if i < len(files):
                s_, path, vl = files[i]
                out.append(gr.update(value=path, visible=True, label=tr("sweep_label", lang, strength=tr("strength", lang),
                                                                        s=f"{s_:g}", val=tr("val_loss", lang), v=vl)))
            else:
                out.append(gr.update(value=None, visible=False))
        return out

    gen_in = [ckpt, strength, lyrics, desc, seconds, seed, prompt]
    def refresh(c, request: gr.Request = None):
        ch = _ckpt_choices(ctx, request_lang(request, ctx.lang))  # newest run first, newest checkpoint first
        vals = [v for _, v in ch]
        return gr.update(choices=ch, value=c if c in vals else (vals[0] if vals else None))

    refresh_btn.click(refresh, ckpt, ckpt, api_name="list_checkpoints")
    merge_btn.click(merge, [ckpt, strength], merge_msg, api_name="merge")
    gen_btn.click(generate, gen_in, [out_audio, gen_msg], api_name="generate")
    ab_btn.click(ab, gen_in, [a_audio, b_audio, ab_msg], api_name="ab")
    sweep_btn.click(sweep, [ckpt, scales, lyrics, desc, seconds, seed, prompt], sweep_audio, api_name="sweep")

    def _push(c, st, rp, pv, pa, pm, pd_, tok, request: gr.Request = None):
        lang = request_lang(request, ctx.lang)
        try:
            if ctx.locked:
                raise UserError("demo_disabled")
            url = backend.push(ctx.ws, _need(c), float(st), rp, bool(pv), bool(pa), bool(pm), bool(pd_),
                               token=tok or None, lang=lang)
        except (gr.Error, StudioError) as err:  # e.g. "merge first": stays under the button, not a toast
            return in_place(err, lang)
        return tr("pushed", lang, url=url)

    push_in = [ckpt, strength, repo, private, p_adapter, p_merged, p_dataset]
    if use_oauth:
        def push_oauth(c, st, rp, pv, pa, pm, pd_, oauth_token: gr.OAuthToken | None = None,
                       request: gr.Request = None):
            return _push(c, st, rp, pv, pa, pm, pd_, oauth_token.token if oauth_token else None, request)
        push_btn.click(push_oauth, push_in, push_msg, api_name="push")
    else:
        push_btn.click(_push, push_in + [token], push_msg, api_name="push")

    gr.Markdown(t("next_export"), elem_classes=["next-hint"], elem_id="next-export")

    # the picker follows the run on screen in the Train tab: its newest checkpoint, unless one of its
    # checkpoints is already picked (also when the tab is opened: the run may have saved since it was picked)
    def follow(run, c, request: gr.Request = None):
        ch = _ckpt_choices(ctx, request_lang(request, ctx.lang))
        vals = [v for _, v in ch]
        mine = [v for v in vals if run and Path(v).parent.parent == Path(run)]  # <run>/checkpoints/step-N
        if c in vals and (not mine or c in mine):
            return gr.update(choices=ch)
        return gr.update(choices=ch, value=mine[0] if mine else (c if c in vals else (vals[0] if vals else None)))

    train_ui["run_pick"].change(follow, [train_ui["run_pick"], ckpt], ckpt, api_name=False)
    from studio.tabs import preference
    preference.build(ctx, {"ckpt": ckpt, "strength": strength, "lyrics": lyrics, "desc": desc, "seconds": seconds,
                           "seed": seed}, train_ui)
    return {"ckpt": ckpt, "refresh": refresh, "follow": follow}


def wire_load(ctx, demo, ui) -> None:
    demo.load(ui["refresh"], ui["ckpt"], ui["ckpt"], api_name=False)  # labels in this browser's language
