"""Every label, help text and message of the studio, per language, as one `gr.I18n`.

The words live in locale files, one per language: assets/locales/<lang>.json ({key: text}; a text may
have {placeholders}). Static text (labels, help, headings) is passed as ``I18N(key)``: the browser shows
it in its own language (Gradio's front end picks the locale, English otherwise). Messages that carry
values ("Added song {idx}.") are built on the server with ``tr(key, lang, **fmt)`` from the same files.
Core's errors are shown by their code (`err_<code>`, studio.feedback.refusal), never by their English.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

LANGS = ("en", "zh")
LOCALES = Path(__file__).resolve().parent.parent / "assets" / "locales"


def _load(lang: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


TABLES: dict[str, dict[str, str]] = {lang: _load(lang) for lang in LANGS}
# (english, chinese) per key: what the completeness tests walk
T: dict[str, tuple[str, ...]] = {k: tuple(TABLES[lang].get(k, "") for lang in LANGS) for k in TABLES["en"]}


def studio_i18n(lang: str = "en") -> gr.I18n:
    """The page's translations. A browser set to Chinese gets Chinese; every other browser gets the
    studio's --lang (Gradio falls back to the "en" table for locales it has no table for)."""
    return gr.I18n(en=TABLES["zh" if lang == "zh" else "en"], zh=TABLES["zh"])


def tr(key: str, lang: str = "en", **fmt) -> str:
    """The text of `key` in `lang` (English for any other language), formatted with `fmt`."""
    text = TABLES["zh" if lang == "zh" else "en"][key]
    return text.format(**fmt) if fmt else text


COOKIE = "studio_lang"
# Served first in <head> (studio.gradio_compat.EarlyHead), before Gradio starts: a language picked in the
# page (saved in this browser) wins over the browser's own, so gr.I18n shows the static texts in it. Gradio knows Chinese as zh-CN / zh-TW (a
# bare "zh" falls back to English), and finds our "zh" table from either.
HEAD = """<script>(function(){try{var l=localStorage.getItem('studio-lang');if(l){if(l==='zh'){l='zh-CN'}
Object.defineProperty(navigator,'language',{get:function(){return l}});
Object.defineProperty(navigator,'languages',{get:function(){return [l]}});}}catch(e){}})();</script>"""
# the language switch: remember it in this browser (storage for the page, a cookie for the server) and reload
SWITCH_JS = ("(v) => { if (!v) return; localStorage.setItem('studio-lang', v); "
             "document.cookie = 'studio_lang=' + v + ';path=/;max-age=31536000;SameSite=Lax'; location.reload(); }")
# the page's language, also marked on <html> so style.css can word the header of Gradio's toasts, which
# Gradio writes from the toast's type in English whatever title the server sends
CURRENT_JS = ("() => { const v = localStorage.getItem('studio-lang') || "
              "((navigator.language || 'en').startsWith('zh') ? 'zh' : 'en'); "
              "document.documentElement.dataset.studioLang = v; return v; }")


def request_lang(request, default: str = "en") -> str:
    """The language of one browser: the page's switch (cookie), else its Accept-Language, else `default`."""
    if request is None:
        return default
    try:
        cookies = getattr(request, "cookies", None) or {}
        lang = cookies.get(COOKIE)
        if lang is None:
            for part in (request.headers.get("cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    lang = v
        if lang in LANGS:
            return lang
        accept = (request.headers.get("accept-language") or "").lower()
        if accept:
            return "zh" if accept.startswith("zh") else "en"
    except Exception:  # noqa: BLE001 - a request without headers: the studio's language
        pass
    return default


def value_word(prefix: str, value: str, lang: str) -> str:
    """A value core writes (a run status, a split, why a checkpoint was saved) in `lang`: the table's
    `<prefix>_<value>` entry, or the value itself where the table has none."""
    key = f"{prefix}_{value}"
    return tr(key, lang) if key in TABLES["en"] else value


def status_word(status: str, lang: str) -> str:
    return value_word("st", status, lang)


def qc_reason(code: str, message: str, name: str, lang: str, **values) -> str:
    """An audio-QC finding in `lang`: the core's full English message, or the translated short form."""
    key = f"qc_{code}"
    if lang == "en" or key not in TABLES["en"]:
        return message
    return tr(key, lang, name=name, **values)


def finding(f: dict, name: str, lang: str) -> str:
    """One finding of a song (core.data.steps: a reason in the Data table or the prepare report) in `lang`, by
    its code: coded notes (lyrics, descriptions, timing: core.text.lyrics.Note) as `say` words them, audio QC
    (core.audio.io) as `qc_<code>`. A finding without a wording stays as the engine wrote it."""
    message = str(f.get("message", ""))
    code, values = f.get("code"), dict(f.get("values") or {})
    if lang == "en" or not code:
        return message
    if f.get("note"):
        return say({"code": code, "values": values, "text": message}, lang)
    return qc_reason(code, message, name, lang, **values)


def _coded(x) -> tuple[str, dict, str]:
    """(code, values, English) of a coded message: a core Note or StudioError, or its JSON form {code, values,
    text} (report.json, a saved check); ("", {}, text) for anything else."""
    if isinstance(x, dict):
        return str(x.get("code") or ""), dict(x.get("values") or {}), str(x.get("text") or x.get("message") or "")
    values = getattr(x, "values", None)
    if getattr(x, "code", "") and isinstance(getattr(x, "params", values), dict):
        return x.code, dict(getattr(x, "params", None) or values or {}), str(x)
    return "", {}, str(x)


def _shown(v, lang: str):
    """A value inside a message: coded ones (and lists of them) worded in `lang`, the rest as they are."""
    if isinstance(v, (list, tuple)):
        return ("；" if lang == "zh" else "; ").join(say(i, lang) for i in v)
    return say(v, lang) if isinstance(v, (dict, Said)) or getattr(v, "code", "") else v


def say(x, lang: str) -> str:
    """Any message the studio shows, in `lang`, by its code: a `Said` by its key; a core note by `ly_<code>`, a core
    refusal (StudioError, or a note made of one) by `err_<code>`; values that are themselves coded (a file's
    refusal, a list of problems) worded the same way. Without a wording (or in English): as core wrote it."""
    if isinstance(x, Said):
        return in_lang(x, lang)
    code, values, text = _coded(x)
    key = next((k for k in (f"ly_{code}", f"err_{code}") if code and k in TABLES["en"]), None)
    if lang == "en" or key is None:
        return text
    try:
        return tr(key, lang, **{k: _shown(v, lang) for k, v in values.items()})
    except (KeyError, IndexError):  # a wording that needs a value this message lacks: core's words
        return text


class Said(str):
    """A message in English (what logs and API callers read) that keeps its i18n key and values, so the
    page can show it in the reader's language (`in_lang`)."""
    key: str = ""
    values: dict = {}


def said(key: str, **values) -> Said:
    text = Said(tr(key, "en", **values))
    text.key, text.values = key, values
    return text


def in_lang(text: str, lang: str) -> str:
    if isinstance(text, Said) and text.key:
        return tr(text.key, lang, **{k: _shown(v, lang) for k, v in text.values.items()})
    return say(text, lang)
