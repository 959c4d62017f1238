"""Style descriptions: official vocabulary, Chinese tags, v2 musicality / pure-music tags.

A description is lower-case, comma-separated tags (gender, genre, emotion, instrument, "the bpm is
N.") from the official vocabularies shipped in assets/description/. Unknown tags are reported and
kept (users may teach new styles). Chinese tags (女声, 流行, 钢琴 ...) are mapped to the official
English tags through assets/description/zh_tags.json, and each mapping is listed as a change.

v2 condition tags are kept, never stripped: a musicality tier ([Musicality-very-high] ...
[Musicality-very-low]) and [Pure-Music]. In the stored text they come first, in upstream's order
(tier, then [Pure-Music], then the style tags), as SongGeneration's inference builds
"[Musicality-very-high], [Pure-Music], " + description. A song's tier can also be given on its own
(metadata key `musicality`); it then replaces a different tier written in the description.
Without any tier nothing is added here: the model's text rules put the default very-high tier in
front for v2 models (core.text.rules).
"""
from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from core.text.lyrics import note

DESCRIPTION_CATEGORIES = ("gender", "genre", "emotion", "instrument")
ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "description"
ZH_TAGS_FILE = "zh_tags.json"

MUSICALITY_TIERS = ("very-high", "high", "medium", "low", "very-low")
DEFAULT_MUSICALITY = "very-high"
PURE_MUSIC = "[Pure-Music]"
MUSICALITY_TAGS: tuple[str, ...] = tuple(f"[Musicality-{t}]" for t in MUSICALITY_TIERS) + (PURE_MUSIC,)
_TIER_ALIASES = {"很高": "very-high", "非常高": "very-high", "极高": "very-high", "高": "high", "中": "medium", "中等": "medium",
                 "低": "low", "很低": "very-low", "非常低": "very-low", "极低": "very-low"}

# Full-width punctuation (Chinese input) -> half-width; "、" separates tags like ",".
_PUNCT = {"，": ",", "、": ",", "；": ",", "。": ".", "：": ":", "（": "(", "）": ")", "【": "[", "】": "]", "［": "[", "］": "]",
          "\u3000": " "}
_V2_TAG_RE = re.compile(r"\[\s*(musicality\s*-\s*(?:very\s*-\s*high|high|medium|low|very\s*-\s*low)|pure\s*-\s*music)\s*\]",
                        re.I)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# "120 bpm", "bpm: 120", "速度120", "120拍", "每分钟120拍" -> the official "the bpm is 120."
_BPM_RE = re.compile(r"^(?:(?:bpm|tempo|速度|节奏|節奏|每分钟|每分鐘)\s*(?:is|:|=|为|為)?\s*(\d{2,3})\s*(?:bpm|拍)?"
                     r"|(\d{2,3})\s*(?:bpm|拍|拍每分钟))\.?$", re.I)


# --------------------------------------------------------------------------------------------
# musicality
# --------------------------------------------------------------------------------------------
def parse_musicality(value) -> Optional[str]:
    """A tier as users write it ("medium", "Very High", "[Musicality-low]", "中") -> canonical tier, or None when empty.

    Raises ValueError naming the allowed tiers for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    raw = str(value).strip()
    if raw in _TIER_ALIASES:
        return _TIER_ALIASES[raw]
    key = re.sub(r"[\s_]+", "-", raw.strip("[]").strip().lower())
    key = key[len("musicality-"):] if key.startswith("musicality-") else key
    if key in MUSICALITY_TIERS:
        return key
    raise ValueError(f"musicality {value!r} is not one of the official tiers: {', '.join(MUSICALITY_TIERS)}")


def musicality_tag(tier: str) -> str:
    return f"[Musicality-{parse_musicality(tier)}]"


def _canonical_v2_tag(raw: str) -> str:
    key = re.sub(r"\s+", "", raw.lower())
    return PURE_MUSIC if key == "pure-music" else musicality_tag(key[len("musicality-"):])


# --------------------------------------------------------------------------------------------
# vocabularies
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


@lru_cache(maxsize=1)
def chinese_tags() -> dict[str, str]:
    """{Chinese tag: official tag} from assets/description/zh_tags.json (grouped by category there)."""
    groups = json.loads((ASSETS_DIR / ZH_TAGS_FILE).read_text(encoding="utf-8"))
    return {zh: en for cat in DESCRIPTION_CATEGORIES for zh, en in groups.get(cat, {}).items()}


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
    """Tags that start with or look like `text` (for autocomplete and "did you mean"); Chinese input is mapped first."""
    q = text.strip().lower()
    pool = list(list_tags(category)) if category else list(_all_tags())
    if not q:
        return pool[:limit]
    zh = chinese_tags()
    mapped = [zh[k] for k in zh if q and k.startswith(q) and zh[k] in pool]
    starts = [t for t in pool if t.startswith(q)]
    contains = [t for t in pool if q in t and t not in starts]
    close = [t for t in difflib.get_close_matches(q, pool, n=limit, cutoff=0.75) if t not in starts and t not in contains]
    return list(dict.fromkeys(mapped + starts + contains + close))[:limit]


# --------------------------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------------------------
@dataclass
class DescriptionResult:
    original: Optional[str]
    text: Optional[str]                 # stored form: [tier], [Pure-Music], lower-case tags (None if empty)
    tags: list[str] = field(default_factory=list)                # style tags only
    categories: dict[str, str] = field(default_factory=dict)     # tag -> category for known tags
    unknown: list[str] = field(default_factory=list)
    musicality: list[str] = field(default_factory=list)          # v2 tags in the text, as written there (canonical)
    tier: Optional[str] = None          # the song's musicality tier ("medium"), None = the model's default
    pure_music: bool = False
    warnings: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "warning" if self.warnings else "ok"

    def to_dict(self) -> dict:
        return {"original": self.original, "text": self.text, "tags": self.tags, "unknown": self.unknown,
                "musicality": self.musicality, "tier": self.tier, "pure_music": self.pure_music,
                "warnings": self.warnings, "changes": self.changes}


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


def _map_tag(tag: str, zh: dict[str, str]) -> Optional[str]:
    """A Chinese or BPM tag in official form, or None when it is neither."""
    m = _BPM_RE.match(tag)
    if m:
        return f"the bpm is {m.group(1) or m.group(2)}."
    key = tag.rstrip(".").strip()
    if key in zh:
        return zh[key]
    bare = re.sub(r"(的|风格|風格|曲风|曲風|音乐|音樂|感)$", "", key)  # "流行音乐", "摇滚风格", "伤感的"
    return zh.get(bare) if bare and bare != key else None


def check_description(text: Optional[str], musicality=None, instrumental: Optional[bool] = None) -> DescriptionResult:
    """Normalise a style description, map Chinese tags, keep v2 tags, check tags against the vocabularies.

    `musicality`: the song's own tier (metadata key), validated; it wins over a tier in the text.
    `instrumental`: whether the lyrics have no sung section (None: unknown), to warn about a
    [Pure-Music] tag on a song with singing."""
    tier_override = parse_musicality(musicality)
    original = None if text is None else str(text)
    if original is None or not original.strip():
        if tier_override is None:
            return DescriptionResult(original, None)
        tag = musicality_tag(tier_override)
        return DescriptionResult(original, tag, musicality=[], tier=tier_override)
    t = unicodedata.normalize("NFKC", "".join(_PUNCT.get(c, c) for c in original))
    found = [_canonical_v2_tag(m.group(1)) for m in _V2_TAG_RE.finditer(t)]
    rest = _V2_TAG_RE.sub(",", t)
    res = DescriptionResult(original, None, musicality=found)
    tiers = list(dict.fromkeys(x[len("[Musicality-"):-1] for x in found if x != PURE_MUSIC))
    res.pure_music = PURE_MUSIC in found
    if len(tiers) > 1 and tier_override is None:
        res.warnings.append(note("desc_tiers", "the description has several musicality tiers ({tiers}); the first, "
                                 "{first}, is used", tiers=", ".join(tiers), first=tiers[0]))
    res.tier = tier_override or (tiers[0] if tiers else None)
    if tier_override and tiers and tiers != [tier_override]:
        res.warnings.append(note("desc_tier_override", "the song's musicality setting '{tier}' replaces the tier "
                                 "{written} written in its description", tier=tier_override, written=", ".join(tiers)))
    if res.pure_music and instrumental is False:
        res.warnings.append(note("desc_pure_music", "[Pure-Music] marks accompaniment-only music, but the lyrics have "
                                 "sung sections; the tag is kept - remove it if the song has singing"))

    zh = chinese_tags()
    known = _all_tags()
    mapped: list[str] = []
    for raw in _split_tags(rest.lower()):
        tag = raw
        if tag.rstrip(".").strip() not in known and (_CJK.search(tag) or _BPM_RE.match(tag)):
            official = _map_tag(tag, zh)
            if official is not None:
                mapped.append(f"{raw} -> {official}")
                tag = official
        if tag not in res.tags:
            res.tags.append(tag)
    for tag in res.tags:
        key = tag.rstrip(".").strip()
        if key in known:
            res.categories[tag] = known[key]
        elif not tag.startswith("the bpm is "):
            res.unknown.append(tag)
            hint = suggest_tags(key, limit=3)
            if hint:
                res.warnings.append(note("desc_unknown_hint", "description tag '{tag}' is not in the official "
                                         "vocabularies; it is kept (did you mean: {hint}?)", tag=tag, hint=", ".join(hint)))
            else:
                res.warnings.append(note("desc_unknown", "description tag '{tag}' is not in the official "
                                         "vocabularies; it is kept", tag=tag))
    written_tier = tiers[0] if tiers else None
    plain = _join(written_tier, res.pure_music, res.tags)      # what the user's own text normalises to
    res.text = _join(res.tier, res.pure_music, res.tags)        # + the song's musicality setting
    if mapped:
        res.changes.append(note("desc_mapped", "style tags were mapped to the official vocabulary: {mapped}",
                                mapped=", ".join(mapped)))
    if plain != original.strip():
        head = _join(written_tier, res.pure_music, [])
        moved = bool(found) and not t.strip().startswith(head or "")
        if moved:
            res.changes.append(note("desc_moved", "the musicality / [Pure-Music] tags were put first, in SongGeneration's order"))
        if not mapped and not moved:
            res.changes.append(note("desc_normalised", "description normalised to lower-case comma-separated tags"))
    return res


def _join(tier: Optional[str], pure: bool, tags: list[str]) -> Optional[str]:
    head = ([musicality_tag(tier)] if tier else []) + ([PURE_MUSIC] if pure else [])
    return ", ".join(head + tags) or None


def format_description(tags: Iterable[str], musicality=None) -> str:
    """Tags picked in the studio (+ an optional tier) -> the description string stored for a song."""
    tier = parse_musicality(musicality)
    parts = ([musicality_tag(tier)] if tier else []) + [t.strip().lower() for t in tags if t and t.strip()]
    return ", ".join(parts)
