"""SongPrep's output -> the song's lyrics in the official form plus its section timing.

SongPrep (Tencent's preprocessing model for this song format) writes one string per song:

    [intro][0.00:5.80] ; [verse][5.80:25.40]Yesterday, all my troubles seemed so far away ; [chorus][25.40:45.20]...

Each entry is a structure label, the section's [start:end] in seconds and its lyric (empty for
instrumental parts). Labels go through the lyric grammar's `map_section_label` (so "pre-chorus",
"inst", "solo" map as in plain lyrics); the lyric text goes through `check_lyrics`, so it reaches the
model in the official grammar. Anything that cannot be read is refused with the entry and the reason:
nothing is dropped silently.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from core.text import lyrics as lyr
from core.timing.sections import SongTiming, TimedSection, TimingError, fmt_time

_ENTRY = re.compile(r"^\[(?P<label>[^\]\[]{1,40})\]\s*\[\s*(?P<a>\d+(?:\.\d+)?)\s*:\s*(?P<b>\d+(?:\.\d+)?)\s*\]"
                    r"(?P<text>.*)$", re.S)
_SPLIT = re.compile(r"\s*;\s*(?=\[)")
OVERLAP_TOLERANCE_S = 0.05   # SongPrep rounds to hundredths; touching sections may differ by that much


@dataclass
class SongPrepResult:
    timing: SongTiming           # source "songprep", not yet normalised
    lyrics: str                  # the official lyric text
    notes: list[str] = field(default_factory=list)


def _entries(text: str) -> list[tuple[int, str, float, float, str]]:
    out = []
    for k, raw in enumerate((x for x in _SPLIT.split(text.strip().lstrip("\ufeff")) if x.strip()), 1):
        m = _ENTRY.match(raw.strip())
        if not m:
            raise TimingError(f"entry {k} (\"{raw.strip()[:50]}\") is not \"[structure][start:end]lyric\"",
                              code="sp_bad_entry", k=k, text=raw.strip()[:50])
        out.append((k, m.group("label").strip(), float(m.group("a")), float(m.group("b")), m.group("text").strip()))
    if not out:
        raise TimingError("the SongPrep result is empty (expected \"[structure][start:end]lyric ; ...\")",
                          code="sp_empty")
    return out


def _body(k: int, label: str, tag: str, text: str, tags: tuple[str, ...]) -> str:
    if tag not in lyr.VOCAL_TAGS:
        if text:
            raise TimingError(f"entry {k} [{label}] is an instrumental section but has words (\"{text[:40]}\"); "
                              "label it as a sung section or remove the words", code="sp_inst_words", k=k,
                              label=label, text=text[:40])
        return ""
    if not text:
        raise TimingError(f"entry {k} [{label}] is a sung section without words; label it [inst] or give its lyric",
                          code="sp_no_words", k=k, label=label)
    res = lyr.check_lyrics(f"{tag}\n{text}", tags)
    if not res.ok or not res.sections:
        raise TimingError(f"entry {k} [{label}]: its lyric cannot be read ({'; '.join(map(str, res.errors))[:80]})",
                          code="sp_bad_lyric", k=k, label=label, why=list(res.errors))
    return res.sections[0][1]


def parse_songprep(text: str, duration_s: float | None = None,
                   tags: Iterable[str] = lyr.STRUCTURE_TAGS) -> SongPrepResult:
    """Read one song's SongPrep string; raises TimingError naming the entry and what is wrong
    (broken entry, unknown label, end before start, overlapping sections, start after the audio)."""
    tags = tuple(tags)
    notes: list[str] = []
    secs: list[TimedSection] = []
    prev_end = 0.0
    entries = _entries(text)
    for k, label, a, b, body_text in entries:
        tag = lyr.map_section_label(label, tags)
        if tag is None:
            raise TimingError(f"entry {k}: [{label}] is not a section name we know; use one of "
                              f"{', '.join(tags)} (or verse, chorus, bridge, intro, outro, inst)",
                              code="sp_bad_label", k=k, label=label, tags=", ".join(tags))
        if b <= a:
            raise TimingError(f"entry {k} [{label}] ends at {b:g} s, not after its start {a:g} s",
                              code="sp_end_before_start", k=k, label=label, a=f"{a:g}", b=f"{b:g}")
        if secs and a < prev_end - OVERLAP_TOLERANCE_S:
            raise TimingError(f"entry {k} [{label}] starts at {fmt_time(a)}, before entry {k - 1} ends "
                              f"({fmt_time(prev_end)}): sections overlap", code="sp_overlap", k=k, label=label,
                              at=fmt_time(a), prev=k - 1, prev_end=fmt_time(prev_end))
        if duration_s is not None and a >= duration_s:
            raise TimingError(f"entry {k} [{label}] starts at {fmt_time(a)}, after the end of the audio "
                              f"({fmt_time(duration_s)}); is this the result for this song?", code="sp_after_end",
                              k=k, label=label, at=fmt_time(a), end=fmt_time(duration_s))
        if secs and a > prev_end + OVERLAP_TOLERANCE_S:
            notes.append(lyr.note("sp_gap", "{s} s between entry {prev} and entry {k} belong to entry {prev}",
                                  s=f"{a - prev_end:.1f}", prev=k - 1, k=k))
        secs.append(TimedSection(tag, _body(k, label, tag, body_text, tags), a))
        prev_end = b
    dur = float(duration_s) if duration_s is not None else prev_end
    timing = SongTiming(secs, dur, "songprep")
    return SongPrepResult(timing, timing.lyrics(), notes)
