"""The text rules SongGeneration's inference applies before the model sees lyrics and descriptions.

The model uses text exactly as given; generation and training both call these rules, so a
finetune sees text shaped the way generation gives it.
- lyrics: double spaces become single (upstream's only lyric change).
- v1: the description is lower-cased (None stays None); v2 tags are dropped (not in v1's vocabulary).
- v2: `"[Musicality-very-high], " + description.lower()` (`"[Musicality-very-high], ."` when absent).
  A tier already in the description ([Musicality-medium] ...) replaces the default, and every v2 tag
  keeps its spelling (lower-casing would turn it into plain text).
- v2 accompaniment-only ("bgm"): lyrics `"."`, description `"<tier>, [Pure-Music], " + description.lower()`
  (upstream lower-cases it in bgm mode too: generate.py ~248, levo_inference.py ~103), or just `"."`
  when there is no description at all (upstream's form). A description holding only a tier gives
  `"<tier>, [Pure-Music], ."`.
Training (`song_text`) conditions a song whose lyrics have no sung section exactly as bgm generation
does: one function, `bgm_text`, serves both.
"""
from __future__ import annotations

import re
from typing import Optional

from core.sampling import GEN_TYPES
from core.text.description import DEFAULT_MUSICALITY, MUSICALITY_TAGS, musicality_tag
from core.text.description import PURE_MUSIC as PURE_MUSIC_TAG
from core.text.lyrics import is_instrumental as is_instrumental_lyrics

DEFAULT_TIER_TAG = musicality_tag(DEFAULT_MUSICALITY)
MUSICALITY_PREFIX = DEFAULT_TIER_TAG + ", "
PURE_MUSIC = PURE_MUSIC_TAG + ", "
_TAG_RE = re.compile("|".join(re.escape(t) for t in MUSICALITY_TAGS), re.IGNORECASE)
_CANONICAL = {t.lower(): t for t in MUSICALITY_TAGS}
# A tier written in the model's spelling. Looser than core.text.description's tag parser on purpose (that one,
# for stored song text, also reads spaced and full-width forms but only the five tiers): here an unknown
# "[musicality-x]" still counts as written, and `_first_tier` then falls back to the default.
_TIER_RE = re.compile(r"\[musicality-[a-z-]+\]", re.IGNORECASE)


def has_musicality_tag(description: Optional[str]) -> bool:
    return bool(description) and bool(_TIER_RE.search(description))


def _without_tags(desc: Optional[str]) -> Optional[str]:
    """The description with every v2 tag and the separators they leave behind removed (None if nothing is left)."""
    if not desc:
        return None
    if not _TAG_RE.search(desc):
        return desc  # untouched: upstream feeds descriptions as written
    rest = re.sub(r"^[\s,]+|[\s,]+$", "", re.sub(r"(?:\s*,\s*)+", ", ", _TAG_RE.sub(",", desc)))
    return rest or None


def _first_tier(desc: Optional[str]) -> str:
    m = _TIER_RE.search(desc or "")
    return _CANONICAL.get(m.group(0).lower(), DEFAULT_TIER_TAG) if m else DEFAULT_TIER_TAG


def bgm_text(description: Optional[str], version: str, lyrics: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """Accompaniment-only conditioning (upstream's bgm mode); v1 models have none and get `model_text`'s v1 form."""
    if version == "v1":
        return model_text(lyrics, description, "v1")
    desc = description.strip() if description and description.strip() else None
    if desc is None:
        return ".", "."
    rest = _without_tags(desc)
    return ".", f"{_first_tier(desc)}, {PURE_MUSIC}{rest.lower() if rest is not None else '.'}"


def model_text(lyrics: Optional[str], description: Optional[str], version: str,
               mode: str = "mixed") -> tuple[Optional[str], Optional[str]]:
    """(lyrics, description) as the model expects them for `version` and generation `mode`."""
    if mode not in GEN_TYPES:
        raise ValueError(f"mode must be one of {', '.join(GEN_TYPES)}, got {mode!r}")
    if lyrics is not None:
        lyrics = lyrics.replace("  ", " ")
    desc = description.strip() if description and description.strip() else None
    if version == "v1":
        rest = _without_tags(desc)
        return lyrics, rest.lower() if rest else None
    if mode == "bgm":
        return bgm_text(desc, version, lyrics)
    if desc is None:
        return lyrics, MUSICALITY_PREFIX + "."
    # Tier first, then [Pure-Music] if written, then the lower-cased style tags (upstream's order).
    head = _first_tier(desc) + (", " + PURE_MUSIC_TAG if PURE_MUSIC_TAG.lower() in desc.lower() else "")
    rest = _without_tags(desc)
    return lyrics, f"{head}, {rest.lower() if rest is not None else '.'}"


def song_text(lyrics: Optional[str], description: Optional[str], version: str) -> tuple[Optional[str], Optional[str]]:
    """Training text of one song: a song without a sung section is conditioned as bgm generation is."""
    if is_instrumental_lyrics(lyrics):
        return bgm_text(description, version, lyrics)
    return model_text(lyrics, description, version)
