"""The raw fields of one song as a user wrote them: text files, lyrics, descriptions, numbers.

Every function here turns one field into the form the model was trained on, or returns a sentence
saying what is wrong with it and what to do; none raises for a bad value, so one bad song never
stops the others. Used by the studio's import and by data preparation (metadata.jsonl, folders,
upload forms), so a field is judged the same way wherever it comes from.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Optional

from core.errors import StudioError

# Lyrics are cut at the model's token budget (config `conditioners.description.QwTokenizer.max_len`,
# a few hundred tokens). A text this many characters long is over any budget whatever the tokenizer:
# refused before tokenizing, so a pasted book is never copied into reports.
MAX_LYRIC_CHARS = 20_000
MAX_DESCRIPTION_CHARS = 2_000


class TextFileError(StudioError, ValueError):
    """A lyric / description / LRC / metadata file that cannot be read as text; the message names it."""
    code = "text_file"


def read_text_file(path: Path) -> str:
    """Lyric/description/LRC files: UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is refused
    rather than guessed, since a wrong guess silently puts garbage into training."""
    text, err = decode_text(Path(path).read_bytes(), Path(path).name)
    if err:  # the reason's code and values travel with the error, so a UI words it
        raise TextFileError(err, code=getattr(err, "code", None), **getattr(err, "values", {}))
    return text


def _note(code: str, template: str, **values: Any) -> str:
    from core.text.lyrics import note  # lyrics imports this module

    return note(code, template, **values)


def decode_text(data: bytes, name: str) -> tuple[Optional[str], Optional[str]]:
    """Bytes of a lyrics/description file -> (text, None) or (None, reason naming the file).

    UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is refused rather than guessed,
    since a wrong guess silently puts garbage into training.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), None
        except UnicodeDecodeError as err:
            return None, _note("text_bad_utf16", "{name} starts with a UTF-16 byte-order mark but is not valid UTF-16 "
                               "({why} at byte {pos}; {size} bytes); open it in a text editor and save it as UTF-8",
                               name=name, why=err.reason, pos=err.start, size=len(data))
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        return None, _note("text_not_utf8", "{name} is not UTF-8 text (byte 0x{byte} at position {pos}); open it in a "
                           "text editor and save it as UTF-8", name=name, byte=f"{data[err.start]:02x}", pos=err.start)


def _type_name(value: Any) -> str:
    return {list: "a list", dict: "an object", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def lyric_field(value: Any, where: str) -> tuple[Optional[str], Optional[str]]:
    """`gt_lyric` -> (text, None) or (None, reason). Only a string is lyrics: a list or a number is refused
    (joining a list would have to guess the section separators, and str() would train on "['...']")."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, _note("lyric_not_text", "{where}: 'gt_lyric' must be a text string, got {kind} ({value}); write "
                           "the lyrics as one string, sections separated by ' ; ', e.g. \"[verse] first line. second "
                           "line ; [chorus] ...\"", where=where, kind=_type_name(value), value=repr(str(value)[:60]))
    if len(value) > MAX_LYRIC_CHARS:
        return None, _note("lyric_too_long", "{where}: lyrics are {n} characters, far over what the model reads "
                           "(limit {max} characters before tokenizing); shorten them to one song's lyrics",
                           where=where, n=f"{len(value):,}", max=f"{MAX_LYRIC_CHARS:,}")
    return value, None


def description_field(value: Any, where: str) -> tuple[Optional[str], Optional[str]]:
    """`descriptions` -> (text, None) or (None, reason). A list of strings (tags) is joined with ", "
    -- the form the model's descriptions use; any other type is refused."""
    if value is None:
        return None, None
    if isinstance(value, list):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            return None, _note("desc_list_bad", "{where}: 'descriptions' is a list holding {kind} ({value}); write it "
                               "as one string of comma-separated tags, e.g. \"female, pop, piano\"",
                               where=where, kind=_type_name(bad[0]), value=repr(bad[0]))
        value = ", ".join(v.strip() for v in value if v.strip())
    elif not isinstance(value, str):
        return None, _note("desc_not_text", "{where}: 'descriptions' must be a string of comma-separated tags, got "
                           "{kind} ({value})", where=where, kind=_type_name(value), value=repr(str(value)[:60]))
    if len(value) > MAX_DESCRIPTION_CHARS:
        return None, _note("desc_too_long", "{where}: descriptions are {n} characters (limit {max}); keep a few "
                           "comma-separated tags", where=where, n=f"{len(value):,}", max=f"{MAX_DESCRIPTION_CHARS:,}")
    return value, None


def lyric_token_problem(text: str, max_tokens: int, count: Callable[[str], int], where: str) -> Optional[str]:
    """A reason when the lyrics need more tokens than the model reads (`max_tokens`), with the count;
    the model would silently cut the rest, so the song would be trained on words it never hears."""
    if not text or max_tokens <= 0:
        return None
    from core.text.lyrics import note

    n = int(count(text))
    if n > max_tokens:  # coded: `where` may itself be a coded note (an item of a split song)
        return note("lyric_tokens", "{where}: the lyrics are {n} tokens, over the model's budget of {max} "
                    "(everything after token {max} would be cut); shorten them or split the song",
                    where=where, n=n, max=max_tokens)
    return None


def number_field(value: Any, name: str, where: str) -> tuple[Optional[float], Optional[str]]:
    """An optional finite number (e.g. prompt_start_s) -> (value, None) or (None, reason)."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        return None, _note("number_bool", "{where}: '{name}' must be a number, got true/false", where=where, name=name)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None, _note("number_bad", "{where}: '{name}' must be a number of seconds, got {value}", where=where,
                           name=name, value=repr(value))
    if not math.isfinite(out):
        return None, _note("number_not_finite", "{where}: '{name}' must be a finite number, got {value}", where=where,
                           name=name, value=repr(value))
    return out, None
