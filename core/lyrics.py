"""SongGeneration's lyric and description grammar: validate, explain, auto-fix.

Official lyric grammar (reference lelm.md §5): sections joined by " ; "; each section starts with
one of the 13 structure tags of conf/vocab.yaml. Vocal sections ([verse] [chorus] [bridge]) hold
sentences joined by "." (English sentences each end with ".", Chinese sections have no final
"."); instrumental sections ([intro-*] [inst-*] [outro-*] [silence]) carry no text. Upstream
changes nothing else than `lyric.replace("  ", " ")`, so text already in this grammar is kept
as it is (plus that one normalisation).

Descriptions: lower-case, comma-separated tags (gender, genre, emotion, instrument) from the
official vocabularies shipped in assets/description/. Unknown tags are reported and kept (users
may teach new styles). v2 musicality tags ([Musicality-very-high] ... [Pure-Music]) are
recognised and taken out of the stored description: the model's text rules add them at train
and generate time.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import yaml

STRUCTURE_TAGS: tuple[str, ...] = (
    "[verse]", "[chorus]", "[bridge]",
    "[intro-short]", "[intro-medium]", "[intro-long]",
    "[outro-short]", "[outro-medium]", "[outro-long]",
    "[inst-short]", "[inst-medium]", "[inst-long]",
    "[silence]",
)
VOCAL_TAGS = frozenset({"[verse]", "[chorus]", "[bridge]"})
MUSICALITY_TAGS: tuple[str, ...] = (
    "[Musicality-very-high]", "[Musicality-high]", "[Musicality-medium]",
    "[Musicality-low]", "[Musicality-very-low]", "[Pure-Music]",
)
DESCRIPTION_CATEGORIES = ("gender", "genre", "emotion", "instrument")
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "description"

# Rough guard for the lyric conditioner's 600-token window (Qwen2 BPE: ~1 token per CJK char or
# ~4 Latin chars); only a warning, the exact count needs the tokenizer.
LYRIC_TOKEN_BUDGET = 600

SEP = " ; "


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


def _length_variant(label: str) -> str:
    if "long" in label:
        return "long"
    if "medium" in label or "mid" in label:
        return "medium"
    return "short"


def map_section_label(label: str, tags: Iterable[str] = STRUCTURE_TAGS) -> Optional[str]:
    """A user's section header ("Verse 1", "Pre-Chorus", "Intro", "Guitar Solo") -> an official tag, or None."""
    tags = tuple(tags)
    raw = label.strip().strip("[]()").strip()
    low = raw.lower()
    if f"[{low}]" in tags:
        return f"[{low}]"
    low = re.sub(r"[^a-z\- ]+", " ", low)  # drop numbers, colons, artist names after ':' keep words
    low = re.sub(r"\s+", " ", low).strip()
    if not low:
        return None
    words = set(re.split(r"[ \-]", low))
    if "pre" in words or "prechorus" in words:
        tag = "[verse]"  # a pre-chorus is sung, verse-like material leading into the chorus
    elif words & {"chorus", "hook", "refrain", "postchorus"}:
        tag = "[chorus]"
    elif words & {"verse", "rap"}:
        tag = "[verse]"
    elif words & {"bridge", "middle"}:
        tag = "[bridge]"
    elif "intro" in words:
        tag = f"[intro-{_length_variant(low)}]"
    elif words & {"outro", "ending", "end", "coda"}:
        tag = f"[outro-{_length_variant(low)}]"
    elif words & {"instrumental", "inst", "interlude", "solo", "break", "breakdown", "drop"}:
        tag = f"[inst-{_length_variant(low)}]"
    elif "silence" in words:
        tag = "[silence]"
    else:
        return None
    return tag if tag in tags else None


# --------------------------------------------------------------------------------------------
# lyrics
# --------------------------------------------------------------------------------------------
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


_TAG_AT_START = re.compile(r"^(\[[^\]\s][^\]]*\])\s*(.*)$", re.S)
_OFFICIAL_TEXT_BAD = re.compile(r"[\n\r\t\[\]]")
# Full-width / typographic punctuation -> the half-width forms the fixer then handles.
_PUNCT_MAP = {
    "。": ".", "．": ".", "，": ",", "、": ",", "！": "!", "？": "?", "：": ":", "；": ";",
    "（": "(", "）": ")", "【": "[", "】": "]", "［": "[", "］": "]", "「": "", "」": "", "『": "", "』": "",
    "“": "", "”": "", "\"": "", "‘": "'", "’": "'", "…": ".", "～": "~", "—": " ", "–": " ", "·": " ",
    "\u3000": " ",
}
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def _is_cjk_text(text: str) -> bool:
    return len(_CJK.findall(text)) >= len(_LATIN.findall(text)) / 4 and bool(_CJK.search(text))


def _split_sections_official(text: str) -> Optional[list[tuple[str, str]]]:
    """Parse text that claims to be official (" ; "-joined, each starting with a [tag]); None when it is not."""
    if not text.strip().startswith("["):
        return None
    out = []
    for part in text.split(";"):
        part = part.strip()
        m = _TAG_AT_START.match(part)
        if not m:
            return None
        out.append((m.group(1), m.group(2).strip()))
    return out


def check_official(text: str, tags: Iterable[str] = STRUCTURE_TAGS) -> tuple[list[str], list[str], list[str]]:
    """Validate text against the official grammar without changing it.

    Returns (errors, fixable, warnings): `errors` cannot be fixed automatically, `fixable` are
    departures the fixer can repair, `warnings` are kept as they are."""
    tags = tuple(tags)
    errors: list[str] = []
    fixable: list[str] = []
    warnings: list[str] = []
    if not text.strip():
        return ["the lyrics are empty; write the lyrics with section tags such as [verse] and [chorus]"], [], []
    sections = _split_sections_official(text)
    if sections is None:
        return [], ["the lyrics are not in the official form ([tag] text ; [tag] text ...)"], []
    if "\n" in text or "\r" in text:
        fixable.append("line breaks inside the lyrics")
    # Only " ; " separates sections; other spacing around ";" is a fixable departure.
    if re.search(r"(?<! );|;(?! )", text):
        fixable.append('sections must be joined by " ; " (space, semicolon, space)')
    for tag, body in sections:
        if tag not in tags:
            if map_section_label(tag, tags):
                fixable.append(f"{tag} is not an official tag")
            else:
                errors.append(f"unknown section tag {tag}; use one of: {', '.join(tags)}")
            continue
        if tag in VOCAL_TAGS:
            if not body.strip(". "):
                errors.append(f"the {tag} section has no lyrics; vocal sections must hold the sung text "
                              "(use an [inst-*] tag for a part without singing)")
                continue
            if _OFFICIAL_TEXT_BAD.search(body):
                fixable.append(f"stray brackets or line breaks inside {tag}")
            if re.search(r"[^\w\s.'\-]", body):
                fixable.append(f"punctuation other than '.' inside {tag}")
            if ".." in body.replace("...", "") or body.startswith("."):
                fixable.append(f"empty sentence (\"..\") inside {tag}")
        elif body.strip():
            fixable.append(f"the instrumental section {tag} carries text")
    if not errors and all(t not in VOCAL_TAGS for t, _ in sections if t in tags):
        warnings.append("the lyrics have only instrumental sections: the song is learned as instrumental music. "
                        "If it has singing, add the sung words in [verse]/[chorus] sections.")
    return errors, fixable, warnings


def _clean_sentence(s: str) -> str:
    s = re.sub(r"[()\[\]{}<>]", " ", s)          # (ooh) backing-vocal markers keep their words
    s = re.sub(r"[^\w\s'\-]", " ", s)           # stray symbols, emoji, commas, ! ? : ; ...
    s = re.sub(r"(?<!\w)['\-]|['\-](?!\w)", " ", s)  # quotes/dashes not inside a word
    s = s.replace("_", " ")
    return re.sub(r"\s+", " ", s).strip()


_HEADER_LINE = re.compile(r"^\[([^\]]{1,40})\]\s*(.*)$")
_SECTION_NAME = (r"(?:pre[- ]?)?(?:verse|chorus|hook|refrain|bridge|intro|outro|instrumental|interlude|"
                 r"solo|break|post[- ]?chorus|rap)(?:\s*\d+)?")
_PAREN_LINE = re.compile(r"^\(\s*(" + _SECTION_NAME + r")\s*\)\s*:?$", re.I)
_BARE_HEADER = re.compile(r"^\s*(" + _SECTION_NAME + r")\s*:\s*$", re.I)


def _parse_header(line: str, tags: tuple[str, ...]) -> Optional[tuple[str, Optional[str], str]]:
    """(label, official tag or None, text after the header) when `line` opens a section."""
    m = _HEADER_LINE.match(line)
    if m:
        label = m.group(1).strip()
        return label, map_section_label(label, tags), m.group(2).strip()
    m = _PAREN_LINE.match(line) or _BARE_HEADER.match(line)
    if m:
        mapped = map_section_label(m.group(1), tags)
        if mapped is not None:  # "(ooh yeah)" is a backing vocal, "(Chorus)" a header
            return m.group(1).strip(), mapped, ""
    return None


def fix_lyrics(text: str, tags: Iterable[str] = STRUCTURE_TAGS) -> LyricsResult:
    """Rewrite common user formats into the official grammar and list every change made."""
    tags = tuple(tags)
    original = text
    changes: list[str] = []
    errors: list[str] = []
    warnings: list[str] = []

    t = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    nf = unicodedata.normalize("NFKC", "".join(_PUNCT_MAP.get(c, c) for c in t))
    if nf != t:
        changes.append("full-width punctuation and symbols were converted to plain half-width forms")
    t = nf
    # Official-looking text on several lines: ";" still separates sections.
    t = re.sub(r"\s*;\s*", "\n\n", t) if re.search(r"\[[^\]]+\]\s*[^;\n]*;", t) else t

    # Walk the lines: headers open sections; blank lines separate blocks.
    sections: list[list] = []   # [tag, [sentences], label]
    current: Optional[list] = None
    untagged_blocks: list[list[str]] = []
    block: list[str] = []
    saw_header = False
    relabels: dict[str, str] = {}
    for line in t.split("\n"):
        stripped = line.strip()
        header = _parse_header(stripped, tags)
        if header is not None:
            label, mapped, rest = header
            saw_header = True
            if block:
                untagged_blocks.append(block)
                block = []
            if mapped is None:
                errors.append(f"unknown section tag [{label}]; use one of: {', '.join(tags)} "
                              "(or a common name such as Verse, Chorus, Bridge, Intro, Outro, Instrumental)")
                current = None
                continue
            if f"[{label}]" != mapped:
                relabels[f"[{label}]"] = mapped
            current = [mapped, [], label]
            sections.append(current)
            stripped = rest
            if not stripped:
                continue
        if not stripped:
            if not saw_header and block:
                untagged_blocks.append(block)
                block = []
            continue
        # In CJK lines a comma separates phrases the way '.' does in the official examples.
        seps = r"[.!?,]+" if _is_cjk_text(stripped) else r"[.!?]+"
        sentences = [s for s in (_clean_sentence(x) for x in re.split(seps, stripped)) if s]
        if current is not None:
            current[1].extend(sentences)
        else:
            block.extend(sentences)
    if block:
        untagged_blocks.append(block)

    if relabels:
        changes.append("section names were mapped to official tags: "
                       + ", ".join(f"{k} -> {v}" for k, v in relabels.items()))
    # Text before the first header (or lyrics with no headers at all) becomes [verse] sections.
    if untagged_blocks:
        if saw_header:
            sections.insert(0, ["[verse]", [s for b in untagged_blocks for s in b], ""])
            changes.append("text before the first section tag was put in a [verse] section")
        else:
            sections = [["[verse]", b, ""] for b in untagged_blocks]
            changes.append(f"no section tags were found; each block of lines became a [verse] section "
                           f"({len(untagged_blocks)} in all) - mark choruses with [chorus] for better results")
            warnings.append("no section tags were given; every block was taken as a verse")

    out: list[tuple[str, str]] = []
    for tag, sents, _label in sections:
        if tag in VOCAL_TAGS:
            if not sents:
                earlier = [b for t_, b in out if t_ == tag and b]
                if earlier:  # "[Chorus]" alone usually means "repeat the chorus"
                    out.append((tag, earlier[-1]))
                    changes.append(f"an empty {tag} section was taken as a repeat and given the previous {tag} lyrics")
                else:
                    changes.append(f"an empty {tag} section (no lyrics under it) was removed")
                continue
            body = ".".join(sents)
            if not _is_cjk_text(body):
                body += "."
            out.append((tag, body))
        else:
            if sents:
                changes.append(f"text under the instrumental section {tag} was removed "
                               f"(instrumental sections carry no text): {' / '.join(sents)[:80]}")
            out.append((tag, ""))
    if not out and not errors:
        errors.append("no lyrics were found; write the sung text under tags such as [verse] and [chorus]")
    fixed = SEP.join(f"{tag} {body}" if body else tag for tag, body in out)
    if out and not any(tag in VOCAL_TAGS for tag, _ in out) and not errors:
        warnings.append("the lyrics have only instrumental sections: the song is learned as instrumental music. "
                        "If it has singing, add the sung words in [verse]/[chorus] sections.")
    if fixed != original and not changes:
        changes.append("line breaks and punctuation were rewritten into the official form "
                       "(sections joined by ' ; ', sentences by '.')")
    elif fixed != original and not any("' ; '" in c for c in changes):
        changes.append("sections were joined by ' ; ' and sentences by '.' (the official form)")
    _add_length_warning(fixed, warnings)
    status = "error" if errors else ("fixed" if fixed != original else ("warning" if warnings else "ok"))
    return LyricsResult(original, fixed, status, changes if fixed != original else [], warnings, errors, out)


def _add_length_warning(text: str, warnings: list[str]) -> None:
    cjk = len(_CJK.findall(text))
    est = cjk + (len(text) - cjk) / 4
    if est > LYRIC_TOKEN_BUDGET * 0.95:
        warnings.append(f"the lyrics are long (about {int(est)} tokens); the model reads at most "
                        f"{LYRIC_TOKEN_BUDGET}, the rest is cut off")


def check_lyrics(text: Optional[str], tags: Iterable[str] = STRUCTURE_TAGS, fix: bool = True) -> LyricsResult:
    """Validate lyrics; when they depart from the official grammar and `fix` is set, auto-fix them.

    Text already in the official grammar comes back unchanged apart from upstream's own
    double-space normalisation (status "ok" or "warning")."""
    tags = tuple(tags)
    if text is None or not str(text).strip():
        return LyricsResult(text or "", "", "error", errors=[
            "no lyrics were given; write the sung text under tags such as [verse] and [chorus] "
            "(for an instrumental song: [intro-short] ; [inst-long] ; [outro-short])"])
    norm = text.replace("  ", " ").strip()  # upstream: lyric.replace("  ", " ")
    errors, fixable, warnings = check_official(norm, tags)
    if not errors and not fixable:
        _add_length_warning(norm, warnings)
        sections = _split_sections_official(norm) or []
        return LyricsResult(text, norm, "warning" if warnings else "ok", [], warnings, [], sections)
    if not fix:
        return LyricsResult(text, norm, "error", [], warnings, errors + fixable,
                            _split_sections_official(norm) or [])
    return fix_lyrics(text, tags)


# --------------------------------------------------------------------------------------------
# descriptions
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def load_vocabularies(directory: Optional[str] = None) -> dict[str, tuple[str, ...]]:
    """{category: tags} from assets/description/*.txt (or another folder with the same files)."""
    base = Path(directory) if directory else ASSETS_DIR
    out: dict[str, tuple[str, ...]] = {}
    for cat in DESCRIPTION_CATEGORIES:
        p = base / f"{cat}.txt"
        if not p.is_file():
            raise FileNotFoundError(f"description vocabulary {p} is missing; copy it from the official sample/description/")
        seen: dict[str, None] = {}
        for line in p.read_text(encoding="utf-8").splitlines():
            tag = line.strip().lower()
            if tag:
                seen.setdefault(tag, None)
        out[cat] = tuple(seen)
    return out


def list_tags(category: Optional[str] = None) -> list[str] | dict[str, list[str]]:
    """All description tags by category, or one category's list."""
    voc = load_vocabularies()
    if category is not None:
        if category not in voc:
            raise KeyError(f"unknown description category {category!r}; one of {', '.join(voc)}")
        return list(voc[category])
    return {k: list(v) for k, v in voc.items()}


def _all_tags() -> dict[str, str]:
    out: dict[str, str] = {}
    for cat, tags in load_vocabularies().items():
        for t in tags:
            out.setdefault(t, cat)
    return out


def suggest_tags(text: str, category: Optional[str] = None, limit: int = 8) -> list[str]:
    """Tags that start with or look like `text` (for autocomplete and "did you mean")."""
    q = text.strip().lower()
    pool = list(list_tags(category)) if category else list(_all_tags())
    if not q:
        return pool[:limit]
    starts = [t for t in pool if t.startswith(q)]
    contains = [t for t in pool if q in t and t not in starts]
    close = [t for t in difflib.get_close_matches(q, pool, n=limit, cutoff=0.75) if t not in starts and t not in contains]
    return (starts + contains + close)[:limit]


@dataclass
class DescriptionResult:
    original: Optional[str]
    text: Optional[str]                 # lower-cased, comma-joined, musicality tags removed (None if empty)
    tags: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)   # tag -> category for known tags
    unknown: list[str] = field(default_factory=list)
    musicality: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "warning" if self.warnings else "ok"

    def to_dict(self) -> dict:
        return {"original": self.original, "text": self.text, "tags": self.tags, "unknown": self.unknown,
                "musicality": self.musicality, "warnings": self.warnings, "changes": self.changes}


_MUSICALITY_RE = re.compile(r"\[\s*(musicality-(?:very-high|high|medium|low|very-low)|pure-music)\s*\]", re.I)


def _split_tags(text: str) -> list[str]:
    # Commas inside parentheses belong to one tag, e.g. "strings (violin, cello)".
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [re.sub(r"\s+", " ", p).strip() for p in parts if p.strip()]


def check_description(text: Optional[str]) -> DescriptionResult:
    """Normalise a style description and check each tag against the official vocabularies."""
    if text is None or not str(text).strip():
        return DescriptionResult(text, None)
    original = str(text)
    t = "".join(_PUNCT_MAP.get(c, c) for c in unicodedata.normalize("NFKC", original))
    musicality = []
    for m in _MUSICALITY_RE.finditer(t):
        canon = next(x for x in MUSICALITY_TAGS if x.lower() == f"[{m.group(1).lower()}]")
        musicality.append(canon)
    t = _MUSICALITY_RE.sub("", t)
    tags = _split_tags(t.lower())
    known = _all_tags()
    res = DescriptionResult(original, ", ".join(tags) or None, tags=tags, musicality=musicality)
    if musicality:
        res.changes.append(f"{', '.join(musicality)} taken out of the description: the model adds its musicality "
                           "tag itself when training and generating")
    for tag in tags:
        key = tag.rstrip(".").strip()
        if key in known:
            res.categories[tag] = known[key]
            continue
        res.unknown.append(tag)
        hint = suggest_tags(key, limit=3)
        res.warnings.append(f"description tag '{tag}' is not in the official vocabularies; it is kept"
                            + (f" (did you mean: {', '.join(hint)}?)" if hint else ""))
    if res.text is not None and res.text != original.strip() and not musicality:
        res.changes.append("description normalised to lower-case comma-separated tags")
    return res


def format_description(tags: Iterable[str]) -> str:
    """Tags picked in the studio -> the description string stored for a song."""
    return ", ".join(t.strip().lower() for t in tags if t and t.strip())
