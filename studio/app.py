"""Build the studio: a header with the banners that say what is in use, then four tabs.

Tabs only lay out widgets and call `core` (through `studio.backend`); run state is read from
files so that a reload, or a second browser, sees the same thing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import gradio as gr

from studio import backend, feedback, gradio_compat, serving
from core.runs import store as runs
from studio.i18n import CURRENT_JS, HEAD, SWITCH_JS, studio_i18n, tr
from studio.space import SpaceInfo, default_workspace, detect
from studio.sandbox import Limits, Sandboxes
from studio.state import Workspace

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ERROR_LOG = "studio-errors.log"


@dataclass
class Ctx:
    base_ws: Workspace
    lang: str
    space: SpaceInfo
    i18n: gr.I18n
    sandboxes: Optional[Sandboxes] = None

    @property
    def ws(self) -> Workspace:
        """The workspace of this event: the visitor's sandbox in public mode, else the one workspace."""
        return self.sandboxes.current() if self.sandboxes is not None else self.base_ws

    @property
    def public(self) -> bool:
        return self.sandboxes is not None

    def t(self, key: str):
        """Static text of a component (label, info, heading): translated in the browser (gr.I18n)."""
        return self.i18n(key)

    def msg(self, key: str, **fmt) -> str:
        """A message built on the server (with values filled in), in the studio's language."""
        return tr(key, self.lang, **fmt)

    @property
    def error_log(self) -> Path:
        """Where the tracebacks of the studio's bugs go (studio.feedback.internal)."""
        return self.base_ws.root / "logs" / ERROR_LOG

    @property
    def locked(self) -> bool:
        """Training and pushing are off (public demo Space)."""
        return self.space.demo_mode


def build_app(workspace: Optional[str | os.PathLike] = None, lang: str = "en",
              space: Optional[SpaceInfo] = None, import_roots: tuple[str, ...] = ()) -> gr.Blocks:
    from studio.tabs import data as data_tab, export as export_tab, timing as timing_tab, tokenize as tok_tab, \
        train as train_tab

    space = space or detect()
    # a Space reads only what visitors upload; a local studio also the folders its user named
    ws = Workspace(default_workspace(space, str(workspace) if workspace else None),
                   import_roots=() if space.on_space or space.public else import_roots)
    # runs whose trainer died while the studio was down (reboot, kill) show as crashed, not running
    runs.mark_crashed_runs(ws.root)
    boxes = Sandboxes(ws.root, Limits.from_env()) if space.public else None
    lang = lang if lang in ("en", "zh") else "en"
    ctx = Ctx(base_ws=ws, lang=lang, space=space, i18n=studio_i18n(lang), sandboxes=boxes)

    with gr.Blocks(title=ctx.msg("title"), analytics_enabled=False) as demo:
        with gr.Row(elem_id="studio-header"):
            with gr.Column(elem_id="studio-title"):
                gr.Markdown(f"# {ctx.t('title')}")
                gr.Markdown(ctx.t("subtitle"))
            with gr.Column(elem_id="studio-side", scale=0, min_width=260):
                # per browser: remembered in this browser, read by the server from a cookie (studio.i18n)
                lang_pick = gr.Radio([("English", "en"), ("中文", "zh")], value=None, label=ctx.t("language"),
                                     elem_id="lang-switch")
                if boxes is None:  # a public Space does not show its server paths
                    gr.Markdown(f"{ctx.t('workspace')}: `{ws.root}`", elem_id="studio-workspace")
        if space.demo_mode:
            gr.Markdown(ctx.msg("banner_space_demo", dup=space.duplicate_url or
                              "https://huggingface.co/docs/hub/spaces-overview#duplicating-a-space"),
                        elem_id="banner-space-demo", elem_classes=["banner", "banner-warn"])
        if boxes is not None:
            lim = boxes.limits
            gr.Markdown(ctx.msg("banner_sandbox", mb=f"{lim.upload_bytes / 2**20:.0f}", songs=lim.songs,
                              secs=f"{lim.compute_seconds:.0f}"), elem_id="banner-sandbox", elem_classes=["banner"])
        demo_banner = gr.Markdown(ctx.t("banner_demo_model"), elem_id="banner-demo-model",
                                  elem_classes=["banner", "banner-demo"], visible=backend.uses_demo(ctx.ws))
        with gr.Tabs(elem_id="studio-tabs"):
            with gr.Tab(ctx.t("tab_data"), id="data", elem_id="tab-data"):
                data_ui = data_tab.build(ctx)
            with gr.Tab(ctx.t("tab_timing"), id="timing", elem_id="tab-timing") as timing_tab_ui:
                timing_ui = timing_tab.build(ctx)
            with gr.Tab(ctx.t("tab_tokenize"), id="tokenize", elem_id="tab-tokenize"):
                tok_ui = tok_tab.build(ctx)
            with gr.Tab(ctx.t("tab_train"), id="train", elem_id="tab-train"):
                train_ui = train_tab.build(ctx)
            with gr.Tab(ctx.t("tab_export"), id="export", elem_id="tab-export") as export_tab_ui:
                export_ui = export_tab.build(ctx, train_ui)

        lang_pick.input(None, lang_pick, None, js=SWITCH_JS)
        demo.load(None, None, lang_pick, js=CURRENT_JS)

        def _banner():
            return gr.update(visible=backend.uses_demo(ctx.ws))

        # the banner follows the choices saved in the workspace (codec, base model)
        demo.load(_banner, None, demo_banner, api_name=False, queue=False)
        for trig in (tok_ui.get("changed"), train_ui.get("changed")):
            if trig is not None:
                trig.then(_banner, None, demo_banner, api_name=False, queue=False)
        data_tab.wire_load(ctx, demo, data_ui)
        timing_tab.wire_load(ctx, demo, timing_ui)
        timing_tab_ui.select(timing_ui["refresh_choices"], None, timing_ui["song"], api_name=False, queue=False)
        tok_tab.wire_load(ctx, demo, tok_ui)
        train_tab.wire_load(ctx, demo, train_ui, new_data=[tok_ui["tok_ev"]])  # a tokenize re-fits the crop
        export_tab.wire_load(ctx, demo, export_ui)
        export_tab_ui.select(export_ui["follow"], [train_ui["run_pick"], export_ui["ckpt"]], export_ui["ckpt"],
                             api_name=False)
    # a refusal fails the event for every caller and shows in the page as one toast or in place, no red badge
    # on every output; a bug: its traceback in the error log (named to the user except on a public Space,
    # whose paths stay private); files an event returns are handed to Gradio from a staging folder
    feedback.soften(demo, lang, log_file=ctx.error_log, show_where=not ctx.public)
    demo.i18n_instance = ctx.i18n  # served with the page config (launch passes it again)
    demo.studio_ctx = ctx  # for tests and bench
    demo.studio_ui = {"data": data_ui, "timing": timing_ui, "tokenize": tok_ui, "train": train_ui}
    return demo


def launch_kwargs() -> dict:
    css = ASSETS / "style.css"
    return {"app_kwargs": gradio_compat.early_head_kwargs(HEAD),
            "css_paths": [css] if css.is_file() else None, "theme": gr.themes.Soft(), "footer_links": ["api", "settings"]}


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kw):
    ctx = demo.studio_ctx
    boxes = ctx.sandboxes  # the workspace is never served nor an allowed path; uploads capped in a public studio
    guard = serving.launch_limits([ctx.base_ws.root, *([boxes.key_dir] if boxes else [])],
                                  boxes.limits.upload_bytes if boxes else None)
    opts = launch_kwargs()
    opts["app_kwargs"]["middleware"].append(guard.pop("middleware"))
    if boxes is not None:  # abandoned uploads and old cache copies go soon
        demo.delete_cache = (serving.UPLOAD_CACHE_S, serving.UPLOAD_CACHE_S)
    return demo.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, show_error=True, i18n=ctx.i18n, **guard, **opts, **kw)
