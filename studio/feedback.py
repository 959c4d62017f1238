"""One refusal, one message: how the studio shows an error of an event.

Every refusal fails its event, for every caller: what a request says about itself (a `trigger_id`, a
session) is the client's word, so it cannot decide whether a script sees success. The page still shows
the refusal as before, through a follow-up Gradio runs in the page when an event fails:

- `soften(demo)` wraps each event of the built app. A refusal ends it with a `gr.Error` the page does
  not show (`visible=False`); the outputs the page should show (one warning toast in the browser's
  language and every output left as it was, or the action's own message box, `in_place`) are kept
  for the visitor's session, and the follow-up hands them to the page. Red "Error" badges do not stay
  on the outputs: the follow-up's update of the same outputs replaces them;
- events that cannot show a toast (unqueued) or whose follow-up runs only on success raise the worded
  gr.Error as Gradio shows it.

Three kinds of error, worded in the language of the browser that caused them:
- a `UserError`: the studio's own refusal, an i18n key and its values;
- a `core.errors.StudioError`: core's refusal, shown by its code (`err_<code>` in the locale files,
  worded with its params), never by its English text (`refusal`);
- anything else is a bug: its traceback goes to the server log and the workspace's error log, and the
  user reads "internal error", where the traceback is, and an incident id; never a hint that they erred.

Files an event returns reach Gradio through `studio.serving.publish` (never from the workspace itself).
"""
from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections import OrderedDict
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from core.config import ConfigError
from core.errors import StudioError
from studio import gradio_compat as compat, serving
from studio.i18n import TABLES, request_lang, say, status_word, tr
from studio.widgets import FIELD_LABELS, name_fields

log = logging.getLogger("studio.errors")


class UserError(gr.Error):
    """A refusal from the i18n table: `key` and its values; a value may be a callable(lang) -> str
    (e.g. a status word) so the whole message is rendered in the reader's language."""

    def __init__(self, key: str, **fmt: Any):
        self.key, self.fmt = key, fmt
        super().__init__(self.text("en"))

    def text(self, lang: str) -> str:
        return tr(self.key, lang, **{k: v(lang) if callable(v) else v for k, v in self.fmt.items()})


def error_key(err: StudioError) -> str:
    """The locale key of a core error: its own code's wording, else its class's (which frames the English
    message), else the generic one."""
    for code in (err.code, *(c.__dict__["code"] for c in type(err).__mro__ if "code" in c.__dict__)):
        if f"err_{code}" in TABLES["en"]:
            return f"err_{code}"
    return "err_error"


def _in_lang(name: str, value: Any) -> Any:
    """A param of a core error as the reader's language shows it: a run status in words, config keys
    named as the fields the user sees."""
    if name == "status" and isinstance(value, str):
        return lambda lg: status_word(value, lg)
    if getattr(value, "code", ""):  # a coded message inside the refusal (a file's reason): worded by its code too
        return lambda lg: say(value, lg)
    if isinstance(value, str):
        return lambda lg: name_fields(value, lg)
    return value


def refusal(err: StudioError) -> UserError:
    """Core's refusal as the studio shows it: the wording of its code in the reader's language (a config
    that failed validation: one line per field, named by its label)."""
    if isinstance(err, ConfigError) and err.details:
        return UserError("plain", text=lambda lg: config_problems(err, lg))
    values = {"message": err.message, **err.params}
    return UserError(error_key(err), **{k: _in_lang(k, v) for k, v in values.items()})


def message(err: Exception, lang: str) -> str:
    """The text of a refusal for a reader of `lang`."""
    if isinstance(err, StudioError):
        err = refusal(err)
    if isinstance(err, UserError):
        return err.text(lang)
    return name_fields(getattr(err, "message", None) or str(err), lang)


# the refusals an event of soften's wrapper showed in place (None: outside such an event, in_place raises)
_IN_PLACE: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("studio_in_place", default=None)


def in_place(err: gr.Error, lang: str) -> str:
    """A refusal as the text of the action's own message box (it stays where the user acted, unlike a
    toast). The event still fails for its caller (soften); outside such an event it stays an exception."""
    shown = _IN_PLACE.get()
    if shown is None:
        raise err
    text = message(err, lang)
    shown.append(text)
    return f"⚠ {text}"


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


def report_internal(err: BaseException, log_file: Optional[Path]) -> str:
    """Log a bug's traceback (server log, and `log_file` when given) under a new incident id; return the id."""
    incident = uuid.uuid4().hex[:8]
    log.error("internal error, incident %s", incident, exc_info=err)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a", encoding="utf-8") as fh:
                fh.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} internal error, incident "
                         f"{incident}\n{''.join(traceback.format_exception(err))}\n")
        except OSError:  # a full or read-only disk: the server log above still has it
            pass
    return incident


def internal(err: BaseException, log_file: Optional[Path], show_where: bool = True) -> UserError:
    """A bug as the user reads it: internal error, where its traceback is, the incident id."""
    incident = report_internal(err, log_file)
    shown = str(log_file) if show_where and log_file is not None else None
    where = lambda lg: shown or tr("err_where_server", lg)  # noqa: E731 - worded in the reader's language
    return UserError("err_internal", kind=type(err).__name__, where=where, incident=incident)


class _Toast:
    """A refusal the page shows as one warning toast, every output left as it was."""

    def __init__(self, text: str, title: str):
        self.text, self.title = text, title


class _Kept:
    """What the page shows for a refused event, per (session, event), until the page's follow-up takes it.
    Bounded in count and age: a script runs no follow-up, so its refusals are never taken."""

    def __init__(self, size: int = 512, ttl_s: float = 120.0):
        self.size, self.ttl_s = size, ttl_s
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple, value: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (now, value)
            while self._items and (len(self._items) > self.size
                                   or next(iter(self._items.values()))[0] < now - self.ttl_s):
                self._items.popitem(last=False)

    def take(self, key: tuple) -> Any:
        with self._lock:
            at, value = self._items.pop(key, (0.0, None))
        return value if at >= time.monotonic() - self.ttl_s else None


def _skips(n: int):
    return None if n == 0 else (gr.skip() if n == 1 else tuple(gr.skip() for _ in range(n)))


def soften(demo: gr.Blocks, default_lang: str = "en", log_file: Optional[Path] = None,
           show_where: bool = True) -> None:
    """Wrap every event of `demo` (see the module doc). Events Gradio runs unqueued cannot show a toast,
    and an event whose follow-up runs only on success must fail as Gradio shows it: both raise the worded
    gr.Error. `log_file`: where bugs' tracebacks go; `show_where`: name that file to the user (not on a
    public Space)."""
    kept = _Kept()

    def key(request, f) -> tuple:
        return getattr(request, "session_hash", None), f._id

    def handle(fn, args, request, event, *, f, quiet: bool):
        shown: list = []  # in_place's refusals
        token = _IN_PLACE.set(shown if quiet else None)
        err: Optional[gr.Error] = None
        try:
            serving.check_uploads(args)
            out = serving.publish_outputs(fn(*args), f.outputs)
        except gr.Error as e:
            err = e
        except StudioError as e:
            err = refusal(e)
        except Exception as e:  # noqa: BLE001 - a bug: logged with its traceback, shown as ours
            err = internal(e, log_file, show_where)
        finally:
            _IN_PLACE.reset(token)
        if err is None and not shown:
            return out
        if err is None:  # shown in the action's message box: the page gets these outputs, the caller an error
            text, page = shown[0], out
        else:
            lang = request_lang(request, default_lang)
            text = message(err, lang)
            if not quiet:
                raise gr.Error(text, duration=err.duration, title=err.title) from None
            page = _Toast(text, tr("st_warning", lang).capitalize())
        kept.put(key(request, f), page)
        raise gr.Error(text, visible=False, print_exception=False) from None

    def follow_up(f):
        def show(request: gr.Request):
            page = kept.take(key(request, f))
            if isinstance(page, _Toast):
                gr.Warning(page.text, title=page.title)
            return _skips(len(f.outputs)) if page is None or isinstance(page, _Toast) else page
        return show

    follow_ups = []
    for f, quiet in list(compat.plain_events(demo)):
        compat.with_context(f, functools.partial(handle, f=f, quiet=quiet))
        if quiet:
            follow_ups.append((f, follow_up(f)))
    compat.on_failures(demo, follow_ups)
