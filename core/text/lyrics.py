"""SongGeneration's lyric grammar: validate, explain, and fix only what is not official.

Official form (reference lelm.md §5 and upstream's own example files): sections joined by " ; " or
"; "; each section starts with one of the 13 structure tags of conf/vocab.yaml; vocal sections
([verse] [chorus] [bridge]) hold sentences joined by "." or ". " (English sentences end with ".",
Chinese sections have no final "."); instrumental sections ([intro-*] [inst-*] [outro-*]
[silence]) carry no text. Upstream reads its own lyrics as they are (only "  " -> " " at
generation time, which core.text.rules applies), so text in this form passes byte for byte.
Upstream's files also hold a ";" inside a vocal section's text; it is kept (the model reads it as
part of that section) with a warning.

Anything else (line breaks, "[Verse 1]", "verse:", "副歌", full-width punctuation, text in an
instrumental section) is fixed, section by section: official sections keep their bytes, fixed
sections are written in the style the rest of the song uses (". " or "." between sentences,
" ; " or "; " between sections). A fix never merges sections; a header it cannot map is an
error naming its line.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import yaml

from core.text.section_names import STRUCTURE_TAGS, VOCAL_TAGS, is_bare_header, map_section_label

# Rough guard for the lyric conditioner's 600-token window (Qwen2 BPE: ~1 token per CJK char or
# ~4 Latin chars); only a warning, the exact count needs the tokenizer.
LYRIC_TOKEN_BUDGET = 600
SEP = " ; "
JOIN_STYLES = (" ; ", "; ")
SENTENCE_STYLES = (".", ". ")
INSTRUMENTAL_NOTE = ("the lyrics have only instrumental sections: the song is learned as accompaniment-only music, "
                     "conditioned as SongGeneration's bgm mode ([Pure-Music] in the description, lyrics '.' for v2 "
                     "models). If it has singing, add the sung words in [verse]/[chorus] sections.")


# --------------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------------
def load_structure_tags(vocab_yaml: str | Path | None = None) -> tuple[str, ...]:
    """The 13 tags from a runtime's conf/vocab.yaml (defaults to the official list)."""
    if vocab_yaml is None:
        return STRUCTURE_TAGS
    data = yaml.safe_load(Path(vocab_yaml).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise ValueError(f"{vocab_yaml}: expected a YAML list of tags like '[verse]'")
    return tuple(data)


def valid_structure_tags(tags: Optional[Iterable[str]] = None) -> dict[str, list[str]]:
    """{"vocal": [...], "instrumental": [...]} for the studio's tag picker."""
    tags = tuple(tags or STRUCTURE_TAGS)
    return {"vocal": [t for t in tags if t in VOCAL_TAGS], "instrumental": [t for t in tags if t not in VOCAL_TAGS]}


def is_instrumental(lyrics: Optional[str]) -> bool:
    """True when official-form lyrics have section tags but no sung ([verse]/[chorus]/[bridge]) section."""
    return bool(lyrics) and "[" in lyrics and not any(t in lyrics for t in VOCAL_TAGS)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
class Note(str):
    """One finding: its English sentence (what every caller reads) plus a stable `code` and the
    `values` in it, so a UI can word it in another language. A value may itself be a Note (or a list of
    them): a message inside a message ("lyrics.lrc: <why>"), worded the same way."""
    code: str = ""
    values: dict = {}

    def to_dict(self) -> dict:
        """The JSON form (report.json, a song's saved check): {code, values, text}, nested notes kept coded."""
        return {"code": self.code, "values": plain_values(self.values), "text": str(self)}


def plain_values(values: dict) -> dict:
    """A note's values as JSON: nested notes as their `to_dict`, lists item by item."""
    def one(v):
        if isinstance(v, Note):
            return v.to_dict()
        return [one(x) for x in v] if isinstance(v, (list, tuple)) else v
    return {k: one(v) for k, v in (values or {}).items()}


def note(code: str, template: str, /, **values) -> Note:
    """A coded finding: `template` formatted with `values` (also used for style-tag findings)."""
    n = Note(template.format(**values) if values else template)
    n.code, n.values = code, values
    return n


_note = note


@dataclass
class LyricsResult:
    original: str
    text: str                      # what goes to the model (fixed when status == "fixed")
    status: str                    # "ok" | "fixed" | "warning" | "error"
    changes: list[str] = field(default_factory=list)   # what the fixer did, plain sentences
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (tag, text)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def instrumental_only(self) -> bool:
        return bool(self.sections) and not any(t in VOCAL_TAGS for t, _ in self.sections)

    def to_dict(self) -> dict:
        return {"original": self.original, "text": self.text, "status": self.status, "changes": self.changes,
                "warnings": self.warnings, "errors": self.errors, "sections": [list(s) for s in self.sections]}


# --------------------------------------------------------------------------------------------
# text helpers
# --------------------------------------------------------------------------------------------
# Full-width / typographic punctuation -> the half-width forms the fixer then handles.
_PUNCT_MAP = {
    "。": ".", "．": ".", "，": ",", "、": ",", "！": "!", "？": "?", "：": ":", "；": ";",
    "（": "(", "）": ")", "【": "[", "】": "]", "［": "[", "］": "]", "「": "", "」": "", "『": "", "』": "",
    "“": "", "”": "", "\"": "", "‘": "'", "’": "'", "…": ".", "～": "~", "—": " ", "–": " ", "·": " ",
    "\u3000": " ",
}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_BODY_OK = re.compile(r"^[\w .'\-]*$")  # words, spaces, '.', apostrophes and hyphens


def _is_cjk_text(text: str) -> bool:
    return len(_CJK.findall(text)) >= len(_LATIN.findall(text)) / 4 and bool(_CJK.search(text))


def _clean_sentence(s: str) -> str:
    s = re.sub(r"[()\[\]{}<>]", " ", s)          # (ooh) backing-vocal markers keep their words
    s = re.sub(r"[^\w\s'\-]", " ", s)           # stray symbols, emoji, commas, ! ? : ; ...
    s = re.sub(r"(?<!\w)['\-]|['\-](?!\w)", " ", s)  # quotes/dashes not inside a word
    s = s.replace("_", " ")
    return re.sub(r"\s+", " ", s).strip()


def _half_width(text: str) -> str:
    return unicodedata.normalize("NFKC", "".join(_PUNCT_MAP.get(c, c) for c in text))


def _sentences(text: str) -> list[str]:
    text = _half_width(text)
    # In CJK lines a comma separates phrases the way '.' does in the official examples.
    seps = r"[.!?,;]+" if _is_cjk_text(text) else r"[.!?;]+"
    return [s for s in (_clean_sentence(x) for x in re.split(seps, text)) if s]


def _render_body(sentences: list[str], sentence_sep: str) -> str:
    body = sentence_sep.join(sentences)
    return body if _is_cjk_text(body) else body + "."


@dataclass
class _Style:
    join: str = SEP
    sentence: str = "."


def detect_style(text: str) -> _Style:
    """The join and sentence style the song already uses (majority; defaults " ; " and ".")."""
    joins = re.findall(r"( ?);( ?)(?=\[)", text.replace("  ", " "))
    tight = sum(1 for a, b in joins if not a and b)
    spaced = sum(1 for a, b in joins if a and b)
    latin_after = re.findall(r"\.( ?)(?=[A-Za-z\u00c0-\u024f])", text)
    spaced_s = sum(1 for x in latin_after if x)
    return _Style("; " if tight > spaced else SEP, ". " if spaced_s > len(latin_after) - spaced_s else ".")


def _add_length_warning(text: str, warnings: list[str]) -> None:
    cjk = len(_CJK.findall(text))
    est = cjk + (len(text) - cjk) / 4
    if est > LYRIC_TOKEN_BUDGET * 0.95:
        warnings.append(_note("too_long", "the lyrics are long (about {est} tokens); the model reads at most "
                              "{budget}, the rest is cut off", est=int(est), budget=LYRIC_TOKEN_BUDGET))


# --------------------------------------------------------------------------------------------
# official form (one line)
# --------------------------------------------------------------------------------------------
@dataclass
class _Part:
    sep: str                      # separator before it ("" for the first)
    tag: Optional[str]            # "[verse]" as written, None for text after a ";" without a tag
    body: str                     # as written, after the tag
    problems: list[str] = field(default_factory=list)
    error: Optional[str] = None


_PART_RE = re.compile(r"^(\[[^\]\n]*\])(.*)$", re.S)


def _split_parts(text: str) -> Optional[list[_Part]]:
    """One-line text cut at ";" into tagged parts; None when it does not start with a [tag]."""
    if "\n" in text or "\r" in text or not text.startswith("["):
        return None
    pieces = re.split(r"(\s*;\s*)", text)
    parts: list[_Part] = []
    for i in range(0, len(pieces), 2):
        sep = pieces[i - 1] if i else ""
        m = _PART_RE.match(pieces[i])
        parts.append(_Part(sep, m.group(1), m.group(2)) if m else _Part(sep, None, pieces[i]))
    return parts


def _check_part(n: int, part: _Part, prev_vocal: bool, tags: tuple[str, ...]) -> None:
    """Fill part.problems (fixable departures) and part.error (cannot be fixed)."""
    where = f"section {n}"
    if part.sep and part.sep.replace("  ", " ") not in JOIN_STYLES and part.tag is not None:
        part.problems.append(f'sections must be joined by " ; " or "; " (before {part.tag})')
    if part.tag is None:  # upstream's own files: "[chorus] a.b;c.d" - the model reads c.d as chorus text
        if not prev_vocal or not _sentences(part.body):
            part.problems.append(f"{where}: text after ';' has no section tag")
        elif not _BODY_OK.match(part.body) or not part.body.strip():
            part.problems.append(f"{where}: text after ';' holds symbols other than '.'")
        return
    tag = part.tag
    if tag not in tags:
        mapped = map_section_label(tag, tags)
        if mapped is None:
            part.error = (f"{where}: unknown section tag {tag}; use one of: {', '.join(tags)} "
                          "(or a common name such as Verse, Chorus, Bridge, Intro, Outro, 主歌, 副歌)")
            return
        part.problems.append(f"{tag} is not an official tag")
        tag = mapped
    body = part.body
    if tag in VOCAL_TAGS:
        if not _sentences(body):
            part.error = (f"{where}: the {tag} section has no lyrics; vocal sections must hold the sung text "
                          "(use an [inst-*] tag for a part without singing)")
            return
        if not body.startswith(" "):  # ("  " is upstream's to normalise, like everywhere else)
            part.problems.append(f"{where}: one space goes between {tag} and its text")
        if not _BODY_OK.match(body):
            part.problems.append(f"{where}: punctuation other than '.' inside {tag}")
        elif ".." in body.replace("...", "") or body.strip().startswith("."):
            part.problems.append(f"{where}: empty sentence inside {tag}")
    elif body.strip():
        part.problems.append(f"{where}: the instrumental section {tag} carries text")


def _analyse(text: str, tags: tuple[str, ...]) -> Optional[list[_Part]]:
    parts = _split_parts(text)
    if parts is None:
        return None
    prev_vocal = False
    for n, part in enumerate(parts, 1):
        _check_part(n, part, prev_vocal, tags)
        if part.tag is not None:
            prev_vocal = (part.tag if part.tag in tags else map_section_label(part.tag, tags)) in VOCAL_TAGS
    return parts


def _sections_of(parts: list[_Part], tags: tuple[str, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in parts:
        if p.tag is None:
            if out:
                out[-1] = (out[-1][0], f"{out[-1][1]};{p.body.strip()}")
            continue
        out.append((p.tag if p.tag in tags else (map_section_label(p.tag, tags) or p.tag), p.body.strip()))
    return out


def _fix_parts(parts: list[_Part], tags: tuple[str, ...], original: str) -> LyricsResult:
    """Fix one-line lyrics section by section: official sections and separators keep their bytes."""
    style = detect_style(original)
    errors = [p.error for p in parts if p.error]
    changes: list[str] = []
    out: list[str] = []
    sections: list[tuple[str, str]] = []
    prev_vocal = False
    for n, p in enumerate(parts, 1):
        sep = p.sep if (not p.sep or p.sep.replace("  ", " ") in JOIN_STYLES) else style.join
        if p.tag is None:
            if prev_vocal and not p.problems:
                out.append(p.sep + p.body)
                sections[-1] = (sections[-1][0], f"{sections[-1][1]};{p.body.strip()}")
                continue
            sents = _sentences(p.body)
            if not sents:
                changes.append(_note("empty_part", "section {n}: an empty part between ';' was removed", n=n))
                continue
            tag, body = "[verse]", _render_body(sents, style.sentence)
            changes.append(_note("untagged_part", "section {n}: text after ';' without a section tag became a [verse] "
                                 "section", n=n))
            out.append((sep if out else "") + f"{tag} {body}")
            sections.append((tag, body))
            prev_vocal = True
            continue
        if p.error:
            continue
        tag = p.tag if p.tag in tags else map_section_label(p.tag, tags)
        if tag != p.tag:
            changes.append(_note("mapped_tag", "section {n}: {label} was mapped to the official tag {tag}", n=n,
                                 label=p.tag, tag=tag))
        body_problems = [x for x in p.problems if "joined by" not in x and "is not an official tag" not in x]
        if tag in VOCAL_TAGS:
            spacing_only = all("one space goes" in x for x in body_problems)
            body = p.body.strip() if spacing_only else _render_body(_sentences(p.body), style.sentence)
            if body_problems:
                changes.append(_note("section_fixed", "section {n} ({tag}): {what}", n=n, tag=tag,
                                     what="; ".join(x.split(": ", 1)[-1] for x in body_problems)
                                     + ("" if spacing_only else " - rewritten as official sentences")))
            piece = f"{tag} {body}" if body_problems or tag != p.tag else p.tag + p.body
        else:
            body = ""
            if p.body.strip():
                changes.append(_note("inst_text", "section {n}: text under the instrumental section {tag} was removed "
                                     "(instrumental sections carry no text): {text}", n=n, tag=tag,
                                     text=p.body.strip()[:80]))
            piece = tag if (p.body.strip() or tag != p.tag) else p.tag + p.body
        if sep != p.sep:
            changes.append(_note("join_style", "section {n}: joined with {join} like the rest of the song", n=n,
                                 join=repr(style.join)))
        out.append((sep if out else "") + piece)
        sections.append((tag, body))
        prev_vocal = tag in VOCAL_TAGS
    if not sections and not errors:
        errors.append(_note("no_lyrics", "no lyrics were found; write the sung text under tags such as [verse] and "
                            "[chorus]"))
    return _result(original, "".join(out), changes, [], errors, sections)


# --------------------------------------------------------------------------------------------
# line-based input
# --------------------------------------------------------------------------------------------
_HEADER_LINE = re.compile(r"^\[([^\]]{1,40})\]\s*(.*)$")
_PAREN_LINE = re.compile(r"^\((.{1,30})\)\s*:?$")
_COLON_LINE = re.compile(r"^([^:]{1,30}):\s*(.*)$")


def _parse_header(line: str, tags: tuple[str, ...]) -> Optional[tuple[str, Optional[str], str]]:
    """(label, official tag or None, text after the header) when `line` opens a section."""
    m = _HEADER_LINE.match(line)
    if m:
        label = m.group(1).strip()
        return label, map_section_label(label, tags), m.group(2).strip()
    m = _PAREN_LINE.match(line)
    if m and map_section_label(m.group(1), tags, loose=False):  # "(ooh yeah)" is a backing vocal, "(Chorus)" a header
        return m.group(1).strip(), map_section_label(m.group(1), tags), ""
    m = _COLON_LINE.match(line)
    if m and len(m.group(1).split()) <= 4 and map_section_label(m.group(1), tags, loose=not m.group(2)):
        return m.group(1).strip(), map_section_label(m.group(1), tags), m.group(2).strip()
    if is_bare_header(line):
        return line.strip(), map_section_label(line, tags, loose=False), ""
    return None


def fix_lyrics(text: str, tags: Iterable[str] = STRUCTURE_TAGS) -> LyricsResult:
    """Rewrite a user's lyric sheet into the official grammar, listing every change made."""
    tags = tuple(tags)
    original = text
    t = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").strip()
    parts = _analyse(t, tags)
    if parts is not None:
        return _fix_parts(parts, tags, original)
    changes: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []
    style = detect_style(t)
    nf = _half_width(t)
    if nf != t:
        changes.append(_note("half_width", "full-width punctuation and symbols were converted to plain half-width forms"))
    # Official-looking text on several lines: ";" still separates sections.
    lines = re.sub(r"\s*;\s*(?=\[)", "\n\n", nf).split("\n")

    sections: list[list] = []   # [tag, [sentences]]
    current: Optional[list] = None
    untagged: list[list[str]] = []
    block: list[str] = []
    relabels: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = _parse_header(stripped, tags)
        if header is not None:
            label, mapped, rest = header
            if block:
                untagged.append(block)
                block = []
            if mapped is None:
                errors.append(_note("unknown_tag", "line {line}: unknown section tag [{label}]; use one of: {tags} "
                                    "(or a common name such as Verse, Chorus, Bridge, Intro, Outro, 主歌, 副歌, 前奏)",
                                    line=number, label=label, tags=", ".join(tags)))
                current = ["", []]  # its text belongs to no section; the song is rejected anyway
                continue
            if f"[{label}]" != mapped:
                relabels[stripped[:40]] = mapped
            current = [mapped, []]
            sections.append(current)
            if not rest:
                continue
            stripped = rest
        if not stripped:
            if current is None and block:
                untagged.append(block)
                block = []
            continue
        if current is not None:
            current[1].extend(_sentences(stripped))
        else:
            block.extend(_sentences(stripped))
    if block:
        untagged.append(block)
    if relabels:
        changes.append(_note("relabels", "section names were mapped to official tags: {pairs}",
                             pairs=", ".join(f"{k} -> {v}" for k, v in relabels.items())))
    # Text before the first header (or lyrics with no headers at all): one [verse] per block, never merged.
    if untagged:
        sections = [["[verse]", b] for b in untagged] + sections
        if len(sections) > len(untagged):
            changes.append(_note("text_before_tag", "text before the first section tag was put in {n} [verse] section(s)",
                                 n=len(untagged)))
        else:
            changes.append(_note("no_tags_fixed", "no section tags were found; each block of lines became a [verse] "
                                 "section ({n} in all) - mark choruses with [chorus] for better results", n=len(untagged)))
            warnings.append(_note("no_tags", "no section tags were given; every block was taken as a verse"))

    out = _render_sections(sections, style.sentence, changes)
    if not out and not errors:
        errors.append(_note("no_lyrics", "no lyrics were found; write the sung text under tags such as [verse] and "
                            "[chorus]"))
    fixed = style.join.join(f"{tag} {body}" if body else tag for tag, body in out)
    if fixed != t and ("\n" in t or not changes):
        changes.append(_note("line_breaks", "line breaks were replaced: sections joined by {join}, sentences by {sent}",
                             join=repr(style.join), sent=repr(style.sentence)))
    return _result(original, fixed, changes, warnings, errors, out)


def _render_sections(sections: list[list], sentence_sep: str, changes: list[str]) -> list[tuple[str, str]]:
    """(tag, body) of each section in the official grammar: an empty vocal section repeats the previous one
    of its tag or is removed, instrumental sections lose their text; each change is noted in `changes`."""
    out: list[tuple[str, str]] = []
    for tag, sents in sections:
        if tag in VOCAL_TAGS:
            if not sents:
                earlier = [b for t_, b in out if t_ == tag and b]
                if earlier:  # "[Chorus]" alone usually means "repeat the chorus"
                    out.append((tag, earlier[-1]))
                    changes.append(_note("empty_repeat", "an empty {tag} section was taken as a repeat and given the "
                                         "previous {tag} lyrics", tag=tag))
                else:
                    changes.append(_note("empty_removed", "an empty {tag} section (no lyrics under it) was removed", tag=tag))
                continue
            out.append((tag, _render_body(sents, sentence_sep)))
        else:
            if sents:
                changes.append(_note("inst_text_lines", "text under the instrumental section {tag} was removed "
                                     "(instrumental sections carry no text): {text}", tag=tag,
                                     text=" / ".join(sents)[:80]))
            out.append((tag, ""))
    return out


def _result(original: str, text: str, changes: list[str], warnings: list[str], errors: list[str],
            sections: list[tuple[str, str]]) -> LyricsResult:
    if sections and not any(t in VOCAL_TAGS for t, _ in sections) and not errors:
        warnings.append(_note("instrumental", INSTRUMENTAL_NOTE))
    _add_length_warning(text, warnings)
    changed = text != original.strip()
    status = "error" if errors else ("fixed" if changed else ("warning" if warnings else "ok"))
    return LyricsResult(original, text, status, changes if changed else [], warnings, errors, sections)


def check_lyrics(text: Optional[str], tags: Iterable[str] = STRUCTURE_TAGS, fix: bool = True) -> LyricsResult:
    """Validate lyrics; official text comes back byte for byte (outer whitespace aside), other text is
    fixed when `fix` is set (else reported as errors)."""
    tags = tuple(tags)
    if text is None or not str(text).strip():
        return LyricsResult(text or "", "", "error", errors=[_note(
            "none_given", "no lyrics were given; write the sung text under tags such as [verse] and [chorus] "
            "(for an instrumental song: [intro-short] ; [inst-long] ; [outro-short])")])
    core = str(text).strip()
    parts = _analyse(core, tags)
    if parts is not None and not any(p.problems or p.error for p in parts):
        warnings = [_note("inner_semicolon", "section {n}: the ';' inside the text is kept as part of the section "
                          "before it (as upstream reads it); use '.' between sentences and ' ; ' only before a "
                          "section tag", n=n) for n, p in enumerate(parts, 1) if p.tag is None]
        return _result(text, core, [], warnings, [], _sections_of(parts, tags))
    if not fix:
        problems = ([x for p in parts for x in ([p.error] if p.error else []) + p.problems] if parts is not None
                    else ["the lyrics are not in the official form ([tag] text ; [tag] text ...)"])
        return LyricsResult(text, core, "error", [], [], problems, _sections_of(parts, tags) if parts else [])
    return fix_lyrics(text, tags)
