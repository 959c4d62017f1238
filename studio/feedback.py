"""One refusal, one message: how the studio shows an error of an event.

Raised inside an event, a `gr.Error` marks every output component of that event with a red "Error"
badge (ten of them for one missing file in the Data tab). `soften(demo)` wraps each queued event of the
built app so that, in the page, a refusal becomes one warning toast in the browser's language and the
outputs stay as they were (`gr.skip()`); called through the HTTP API (no triggering component:
`gr.EventData.target` is None) it stays an exception, so scripts and tests see the call fail.

Messages are worded in the language of the browser that caused them: a `UserError` carries its i18n
key and values; any other message (an engine error in English) gets its config keys named as the
fields the user sees (`studio.widgets.name_fields`).
"""
from __future__ import annotations

import functools
import inspect
import typing
from typing import Any, Callable

import gradio as gr

from core.config import ConfigError
from studio.i18n import TABLES, request_lang, tr
from studio.widgets import FIELD_LABELS, name_fields


class UserError(gr.Error):
    """A refusal from the i18n table: `key` and its values; a value may be a callable(lang) -> str
    (e.g. a status word) so the whole message is rendered in the reader's language."""

    def __init__(self, key: str, **fmt: Any):
        self.key, self.fmt = key, fmt
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        return tr(self.key, lang, **{k: v(lang) if callable(v) else v for k, v in self.fmt.items()})


def message(err: Exception, lang: str) -> str:
    """The text of an error for a reader of `lang`."""
    if isinstance(err, UserError):
        return err.text(lang)
    return name_fields(getattr(err, "message", None) or str(err), lang)


def config_problems(err: ConfigError, lang: str = "en") -> str:
    """A config validation error worded for the UI: one line per field, named by its label in `lang`."""
    if not err.details:
        return name_fields(str(err), lang)
    lines = [tr("bad_settings", lang)]
    for e in err.details:
        key = ".".join(str(p) for p in e.get("loc", ()))
        field = f"“{tr(FIELD_LABELS[key], lang)}”" if key in FIELD_LABELS else key
        ctx = dict(e.get("ctx") or {})
        kind = e.get("type", "")
        code = {"int_parsing": "ve_number", "float_parsing": "ve_number", "int_from_float": "ve_number",
                "int_type": "ve_number", "float_type": "ve_number", "bool_parsing": "ve_bool", "bool_type": "ve_bool",
                "finite_number": "ve_finite"}.get(kind, f"ve_{kind}")
        fmt = {"field": field, "input": repr(e.get("input")), "msg": e.get("msg", ""), **ctx}
        try:
            line = tr(code, lang, **fmt) if code in TABLES["en"] else tr("ve_other", lang, **fmt)
        except (KeyError, IndexError):  # a context value the wording does not have
            line = tr("ve_other", lang, **fmt)
        lines.append(f"- {line}")
    return "\n".join(lines)


_REQ, _EVT = "_studio_request", "_studio_event"


def _wrap(fn: Callable, n_inputs: int, n_outputs: int, default_lang: str) -> Callable:
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable hints: Gradio would not see them either
        hints = {}
    params, n_regular = [], 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:  # *vals: one named parameter per remaining input
            params += [inspect.Parameter(f"_in{i}", p.POSITIONAL_OR_KEYWORD) for i in range(n_inputs - n_regular)]
            break
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        params.append(p.replace(kind=p.POSITIONAL_OR_KEYWORD))
        special = isinstance(p.default, gr.Progress) or hints.get(p.name) in (gr.Request, typing.Optional[gr.Request])
        n_regular += 0 if special else 1
    if any(p.name in (_REQ, _EVT) for p in params):
        return fn
    params += [inspect.Parameter(_REQ, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
               inspect.Parameter(_EVT, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]

    @functools.wraps(fn)
    def soft(*args):
        *args, request, event = args
        try:
            return fn(*args)
        except gr.Error as err:
            lang = request_lang(request, default_lang)
            text = message(err, lang)
            if event is None or getattr(event, "target", None) is None:  # the HTTP API: an exception
                raise gr.Error(text, duration=err.duration, title=err.title) from None
            gr.Warning(text, title=tr("st_warning", lang).capitalize())
            return None if n_outputs == 0 else (gr.skip() if n_outputs == 1 else tuple(gr.skip() for _ in range(n_outputs)))

    soft.__signature__ = inspect.Signature(params)
    soft.__annotations__ = {**{k: v for k, v in hints.items() if k != "return"}, _REQ: gr.Request, _EVT: gr.EventData}
    del soft.__wrapped__  # Gradio reads the signature above, not the wrapped function's
    return soft


def soften(demo: gr.Blocks, default_lang: str = "en") -> None:
    """Wrap every queued event of `demo` (see the module doc). Events Gradio runs unqueued cannot show
    a toast, and an event whose follow-up runs only on success must still fail: both keep gr.Error."""
    fns = demo.fns.values()
    needs_failure = {a for f in fns if f.trigger_only_on_success for a in (f.trigger_after,) if a is not None}
    for f in fns:
        if f.fn is None or not f.queue or f._id in needs_failure or f.types_generator \
                or inspect.iscoroutinefunction(f.fn):
            continue
        f.fn = _wrap(f.fn, len(f.inputs), len(f.outputs), default_lang)
        f.collects_event_data = True
