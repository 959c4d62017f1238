"""The text rules SongGeneration's inference script applies before the model sees lyrics and descriptions.

The model itself uses text exactly as given; callers (generation, training) apply these rules so
that finetuning sees text shaped the way generation will give it.
- lyrics: double spaces become single (upstream's only lyric change).
- v1: the description is lower-cased (None stays None).
- v2: `"[Musicality-very-high], " + description.lower()` (`"[Musicality-very-high], ."` when absent);
  accompaniment-only ("bgm") mode: `"[Musicality-very-high], [Pure-Music], " + description` (`"."` when
  absent) with the lyrics replaced by `"."`.
Tags already in a description ([Musicality-*], [Pure-Music]) are kept as written (lower-casing them would
turn them into plain text) and a given musicality tag is not doubled.
"""
from __future__ import annotations

import re
from typing import Optional

from .text import V2_DESCRIPTION_TAGS

MUSICALITY_PREFIX = "[Musicality-very-high], "
PURE_MUSIC = "[Pure-Music], "
_TAG_RE = re.compile("|".join(re.escape(t) for t in V2_DESCRIPTION_TAGS), re.IGNORECASE)
_CANONICAL = {t.lower(): t for t in V2_DESCRIPTION_TAGS}


def _lower_keep_tags(text: str) -> str:
    out, last = [], 0
    for m in _TAG_RE.finditer(text):
        out.append(text[last:m.start()].lower())
        out.append(_CANONICAL[m.group(0).lower()])
        last = m.end()
    out.append(text[last:].lower())
    return "".join(out)


def has_musicality_tag(description: Optional[str]) -> bool:
    return bool(description) and bool(re.search(r"\[musicality-[a-z-]+\]", description, re.IGNORECASE))


def model_text(lyrics: Optional[str], description: Optional[str], version: str,
               mode: str = "mixed") -> tuple[Optional[str], Optional[str]]:
    """(lyrics, description) as the model expects them for `version` and generation `mode`."""
    if mode not in ("mixed", "vocal", "bgm", "separate"):
        raise ValueError(f"mode must be mixed, vocal, bgm or separate, got {mode!r}")
    if lyrics is not None:
        lyrics = lyrics.replace("  ", " ")
    desc = description.strip() if description and description.strip() else None
    if version == "v1":
        return lyrics, desc.lower() if desc else None
    if mode == "bgm":
        if desc is None:
            return ".", "."
        body = desc if has_musicality_tag(desc) else MUSICALITY_PREFIX + desc
        if "[pure-music]" not in body.lower():
            body = body.replace(MUSICALITY_PREFIX, MUSICALITY_PREFIX + PURE_MUSIC, 1)
        return ".", body
    if desc is None:
        return lyrics, MUSICALITY_PREFIX + "."
    desc = _lower_keep_tags(desc)
    return lyrics, desc if has_musicality_tag(desc) else MUSICALITY_PREFIX + desc
