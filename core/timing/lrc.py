"""Timed lyrics (LRC) -> section timing and SongGeneration lyrics.

Standard LRC: one line per lyric line, each preceded by one or more time tags `[mm:ss.xx]`
(also `[mm:ss]`, `[mm:ss.xxx]` and `[mm:ss:xx]`); a line with several time tags is sung at each of
those times. ID tags (`[ar:...]`, `[ti:...]`, `[offset:+250]` ...) are read, word time tags
(`<mm:ss.xx>`) dropped. Our one addition: after the time tags a line may open with a structure tag,
`[00:12.30][verse] the city lights are calling`; a tag on a line of its own (with or without a time)
opens a section at that time (or at the next timed line). Section names go through the lyric
grammar's `map_section_label`, so `[Verse 1]` or `[Guitar Solo]` work as in plain lyrics.

`timing_from_lrc` turns the parsed file into a `SongTiming`. With tags in the LRC the sections come
from it; without, the sections of the song's `gt_lyric` are found in the LRC by their lines. The
lyric text of every section goes through `core.text.lyrics.check_lyrics`, so it reaches the model in the
official grammar, and `SongTiming.lyrics()` is the gt_lyric to use when the song has none.
"""
from __future__ import annotations

import difflib
import re
import statistics
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Optional

from core.text import lyrics as lyr
from core.timing.sections import SongTiming, TimedSection, TimingError, fmt_time

_TIME = r"\[(\d{1,3}):(\d{1,2})(?:([.:])(\d{1,3}))?\]"
_TIME_RE = re.compile(_TIME)
_LEAD_TIMES = re.compile(r"^\s*(?P<times>(?:" + _TIME + r"\s*)+)(?P<rest>.*)$")
_ID_TAG = re.compile(r"^\s*\[(ar|ti|al|au|by|re|ve|length|offset|la|lang|id|tool|#)\s*:(.*)\]\s*$", re.I)
_WORD_TIME = re.compile(r"<\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?>")
_BRACKET = re.compile(r"^\s*\[([^\]]{1,40})\]\s*(.*)$")
# Credit lines that music sites put at the top of an LRC as if they were lyrics.
_CREDIT = re.compile(r"^\s*(作词|作曲|编曲|制作人|监制|混音|词|曲|lyrics\s+by|lyricist|composer|composed\s+by|"
                     r"written\s+by|arranged\s+by|producer|produced\s+by)\s*[:：]", re.I)


@dataclass
class LrcLine:
    time_s: float
    text: str                  # the sung words ("" for a time mark or a bare section tag)
    tag: Optional[str] = None  # official structure tag opening a section here
    label: Optional[str] = None  # the tag as written
    line_no: int = 0


@dataclass
class Lrc:
    lines: list[LrcLine]       # by time
    meta: dict[str, str] = field(default_factory=dict)
    offset_s: float = 0.0
    notes: list[str] = field(default_factory=list)    # what was dropped or read specially (coded notes)
    errors: list[str] = field(default_factory=list)   # coded notes, each naming its line

    @property
    def has_tags(self) -> bool:
        return any(ln.tag for ln in self.lines)

    @property
    def sung(self) -> list[LrcLine]:
        return [ln for ln in self.lines if ln.text]


def _seconds(m: re.Match) -> float:
    mins, secs, sep, frac = m.group(1), m.group(2), m.group(3), m.group(4)
    t = int(mins) * 60 + int(secs)
    if frac:
        # "[mm:ss:xx]" (a colon) is hundredths in the tools that write it; after "." it is a decimal.
        t += int(frac) / 100 if sep == ":" else int(frac) / (10 ** len(frac))
    return float(t)


def parse_lrc(text: str, tags: Iterable[str] = lyr.STRUCTURE_TAGS) -> Lrc:
    """Read LRC text; never raises for content (problems go to `errors` with line numbers)."""
    tags = tuple(tags)
    out = Lrc([])
    pending: Optional[tuple[str, str, int]] = None   # an untimed section tag waiting for the next timed line
    raw: list[LrcLine] = []
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n"), 1):
        if not line.strip():
            continue
        m = _ID_TAG.match(line)
        if m:
            key, val = m.group(1).lower(), m.group(2).strip()
            out.meta[key] = val
            if key == "offset":
                try:  # LRC convention: a positive offset makes the lyrics appear sooner
                    out.offset_s = int(val) / 1000.0
                except ValueError:
                    out.errors.append(lyr.note("lrc_bad_offset", "line {line}: [offset:{val}] is not a number of "
                                               "milliseconds", line=n, val=val))
            continue
        m = _LEAD_TIMES.match(line)
        times = [_seconds(t) for t in _TIME_RE.finditer(m.group("times"))] if m else []
        rest = (m.group("rest") if m else line).strip()
        tag = label = None
        b = _BRACKET.match(rest)
        if b and not _TIME_RE.match(rest):
            mapped = lyr.map_section_label(b.group(1), tags)
            if mapped is None:
                # the header is named (at most 40 characters); the rest of a failing line never is
                out.errors.append(lyr.note("lrc_bad_section", "line {line}: [{label}] is not a section name; use one "
                                           "of {tags} (or Verse, Chorus, Bridge, Intro, Outro, Instrumental)",
                                           line=n, label=b.group(1)[:40], tags=", ".join(tags)))
                continue
            tag, label, rest = mapped, b.group(1).strip(), b.group(2).strip()
        rest = _WORD_TIME.sub("", rest).strip()
        if rest and _CREDIT.match(rest):
            out.notes.append(lyr.note("lrc_credit", "line {line}: credit line left out of the lyrics: {text}", line=n,
                                      text=rest[:60]))
            continue
        if not times:
            if tag and not rest:
                pending = (tag, label, n)
            elif rest:
                # not quoted: an LRC that fails to parse may be any file (a token, an environment)
                out.errors.append(lyr.note("lrc_no_time", "line {line} has no time tag [mm:ss.xx]", line=n))
            continue
        if pending and not tag:
            tag, label = pending[0], pending[1]
        pending = None
        for t in times:
            raw.append(LrcLine(t, rest, tag, label, n))
    if pending:
        out.errors.append(lyr.note("lrc_tag_alone", "line {line}: section tag [{label}] is not followed by any timed "
                                   "line", line=pending[2], label=pending[1]))
    for ln in raw:  # the offset applies to the whole file wherever its tag stands
        ln.time_s = max(0.0, ln.time_s - out.offset_s)
    raw.sort(key=lambda ln: (ln.time_s, ln.line_no))
    out.lines = raw
    if not any(ln.text for ln in raw) and not out.errors:
        out.errors.append(lyr.note("lrc_no_lines", "the LRC has no timed lyric lines (expected lines like "
                                   "\"[00:12.30] first line\")"))
    return out


# ------------------------------------------------------------------------------------------------
# LRC -> timed sections
# ------------------------------------------------------------------------------------------------
def _section_text(tag: str, lines: list[str], tags: tuple[str, ...]) -> tuple[str, list[str]]:
    """A section's lines -> its official body via the lyric grammar's fixer (one rule everywhere)."""
    if tag not in lyr.VOCAL_TAGS:
        if lines:  # never drop a lyric without the user seeing it
            raise TimingError(f"the LRC has sung lines under the instrumental section {tag} "
                              f"(\"{' / '.join(lines)[:60]}\"); tag them with their own section "
                              "(e.g. [verse]) or move the instrumental tag after them", code="lrc_inst_lines",
                              tag=tag, text=" / ".join(lines)[:60])
        return "", []
    res = lyr.check_lyrics(f"{tag}\n" + "\n".join(lines), tags)
    body = res.sections[0][1] if res.ok and res.sections else ""
    return body, []


def _from_tags(lrc: Lrc, tags: tuple[str, ...]) -> tuple[list[TimedSection], list[str]]:
    notes: list[str] = []
    groups: list[tuple[str, float, list[LrcLine]]] = []
    for ln in lrc.lines:
        if ln.tag:
            groups.append((ln.tag, ln.time_s, []))
        elif not groups:
            groups.append(("[verse]", ln.time_s, []))
            notes.append(lyr.note("lrc_lines_before_tag", "lines before the first section tag became a [verse] "
                                  "(from {at})", at=fmt_time(ln.time_s)))
        if ln.text:
            groups[-1][2].append(ln)
    out = []
    for tag, start, lines in groups:
        body, n = _section_text(tag, [ln.text for ln in lines], tags)
        notes += n
        if tag in lyr.VOCAL_TAGS and not body:
            raise TimingError(f"the {tag} section at {fmt_time(start)} has no lyric lines in the LRC; give its "
                              "sung lines (or use an [inst] tag if nothing is sung there)", code="lrc_empty_section",
                              tag=tag, at=fmt_time(start))
        out.append(TimedSection(tag, body, start, [(ln.time_s, ln.text) for ln in lines]))
    return out, notes


def _key(text: str) -> str:
    """Text reduced to what must match: letters and digits only (NFKC folds full-width forms, so
    "啊，河流带我远行，" and "啊 河流带我远行" agree), case ignored."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def _first_lines(sung: list[LrcLine], gt_sections: list[tuple[str, str]]) -> dict[int, int]:
    """Section index -> index of the LRC line where its words begin, by matching the sheet's text
    to the LRC's text character by character, in order (lines may be split or joined differently)."""
    sheet, owner = [], []
    for k, (tag, body) in enumerate(gt_sections):
        if tag in lyr.VOCAL_TAGS:
            key = _key(body)
            sheet += list(key)
            owner += [k] * len(key)
    lrc_chars, line_of = [], []
    for j, ln in enumerate(sung):
        key = _key(ln.text)
        lrc_chars += list(key)
        line_of += [j] * len(key)
    sm = difflib.SequenceMatcher(None, sheet, lrc_chars, autojunk=False)
    first: dict[int, int] = {}
    for a, b, n in sm.get_matching_blocks():
        for m in range(n):
            k = owner[a + m]
            if k not in first and n >= min(3, len(sheet)):
                first[k] = line_of[b + m]
    return first


def _instrumental_start(k: int, out: list, marks: list[float], sung: list[LrcLine], nxt: Optional[float],
                        notes: list[str], tag: str) -> Optional[float]:
    """An instrumental section after sung lines: a time mark (an empty timed line) between the last
    line before it and the next section, else an estimate one line length after that last line."""
    prev = out[-1].lines[-1][0] if out[-1].lines else out[-1].start_s   # the last known time before it
    if prev is None:
        return None
    cand = [t for t in marks if t > prev and (nxt is None or t < nxt)]
    if cand:
        return cand[0]
    times = [ln.time_s for ln in sung]
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    step = statistics.median(steps) if steps else 4.0
    est = prev + (step if nxt is None else min(step, (nxt - prev) / 2))
    notes.append(lyr.note("lrc_estimated_start", "the file has no time for section {n} {tag}: its start was estimated "
                          "at {at} (one line after the last sung line); check it, or add a line \"[mm:ss.xx]\" where "
                          "it starts", n=k + 1, tag=tag, at=fmt_time(est)))
    return est


def _from_gt(lrc: Lrc, gt_sections: list[tuple[str, str]], tags: tuple[str, ...],
             partial: bool = False) -> tuple[list[TimedSection], list[str]]:
    """LRC lines + a lyric sheet: each sung section starts at the LRC line where its words begin
    (found by text, punctuation, spacing and case ignored); instrumental sections at a time mark or
    estimated. The sheet's words are kept whatever the LRC says; LRC lines not in the sheet are named.
    With `partial`, sections that cannot be placed get start None instead of an error."""
    notes: list[str] = []
    sung = lrc.sung
    marks = [ln.time_s for ln in lrc.lines if not ln.text]
    first = _first_lines(sung, gt_sections)
    order = [first[k] for k in sorted(first)]
    if order != sorted(order):
        raise TimingError("the LRC's lines are not in the order of the lyrics' sections; check that the LRC "
                          "belongs to these lyrics", code="lrc_order")
    vocal_ks = sorted(first)
    out: list[TimedSection] = []
    missing = []
    for k, (tag, body) in enumerate(gt_sections):
        if tag not in lyr.VOCAL_TAGS:
            nxt_k = next((m for m in vocal_ks if m > k), None)
            nxt = sung[first[nxt_k]].time_s if nxt_k is not None else None
            start = 0.0 if not out else _instrumental_start(k, out, marks, sung, nxt, notes, tag)
            out.append(TimedSection(tag, "", start))
            continue
        later = [first[m] for m in vocal_ks if m > k]
        if k not in first or (later and later[0] <= first[k]):  # no line of its own: its words were not found
            missing.append(f"{k + 1} {tag} (\"{body[:30]}\")")
            out.append(TimedSection(tag, body, None))
            continue
        lines = sung[first[k]:later[0] if later else len(sung)]
        out.append(TimedSection(tag, body, lines[0].time_s, [(ln.time_s, ln.text) for ln in lines]))
    if missing and not partial:
        raise TimingError(f"the words of section(s) {', '.join(missing)} were not found in the LRC; make its "
                          "lines match the lyrics, or set those starts in the Timing editor", code="lrc_words_missing",
                          sections=", ".join(missing))
    if missing:
        notes.append(lyr.note("lrc_words_missing_partial", "the words of section(s) {sections} were not found in the "
                              "LRC: set their starts", sections=", ".join(missing)))
    skipped = [ln for j, ln in enumerate(sung) if vocal_ks and j < first[vocal_ks[0]]]
    if skipped:
        notes.append(lyr.note("lrc_lines_unused", "{n} LRC line(s) before the first section's words are not in the "
                              "lyrics and were not used: {text}", n=len(skipped),
                              text=" / ".join(ln.text for ln in skipped)[:80]))
    return out, notes


def _from_blocks(lrc: Lrc, tags: tuple[str, ...]) -> tuple[list[TimedSection], list[str]]:
    """No tags anywhere: blocks of sung lines between time marks become [verse] sections; a time mark
    after the last line starts an [outro-short] (its length word is set by normalize)."""
    blocks: list[list[LrcLine]] = [[]]
    mark_after_last = None
    for ln in lrc.lines:
        if ln.text:
            blocks[-1].append(ln)
            mark_after_last = None
        else:
            if blocks[-1]:
                blocks.append([])
            mark_after_last = ln.time_s
    out = []
    for b in (b for b in blocks if b):
        body, _ = _section_text("[verse]", [ln.text for ln in b], tags)
        out.append(TimedSection("[verse]", body, b[0].time_s, [(ln.time_s, ln.text) for ln in b]))
    if mark_after_last is not None and out and "[outro-short]" in tags:
        out.append(TimedSection("[outro-short]", "", mark_after_last))
    notes = [lyr.note("lrc_blocks", "the LRC has no section tags and no lyrics were given: {n} block(s) of lines "
                      "became [verse] sections; tag choruses in the LRC (\"[01:02.00][chorus] ...\") for better "
                      "results", n=len([b for b in blocks if b]))]
    return out, notes


def timing_from_lrc(lrc: Lrc, duration_s: float, gt_lyric: Optional[str] = None,
                    tags: Iterable[str] = lyr.STRUCTURE_TAGS, partial: bool = False) -> tuple[SongTiming, list[str]]:
    """A parsed LRC (+ the song's gt_lyric when given) -> (timing with source "lrc", notes).

    Raises TimingError with a message that names the line or section to fix. The timing is not yet
    normalised (see core.timing.sections.normalize). With `partial` (the studio's editor), sections of
    the lyrics that the LRC cannot place get start None instead of an error: the editor fills what is
    known and asks for the rest."""
    tags = tuple(tags)
    if lrc.errors:
        more = len(lrc.errors) - 5
        raise TimingError("the LRC file has problems: " + "; ".join(lrc.errors[:5])
                          + (f" (+{more} more)" if more > 0 else ""), code="lrc_problems",
                          problems=list(lrc.errors[:5]), more=f" (+{more})" if more > 0 else "")
    notes = list(lrc.notes)
    gt_sections = None
    if gt_lyric is not None and str(gt_lyric).strip():
        res = lyr.check_lyrics(gt_lyric, tags)
        if res.ok and res.sections:
            gt_sections = list(res.sections)
    if lrc.has_tags:
        try:
            secs, n = _from_tags(lrc, tags)
        except TimingError:
            if gt_sections is None:
                raise
            secs, n = [], []  # compared with the lyrics below
        notes += n
        if gt_sections is not None:
            base = [re.sub(r"-(short|medium|long)\]$", "]", t) for t, _ in gt_sections]
            mine = [re.sub(r"-(short|medium|long)\]$", "]", s.tag) for s in secs]
            if base == mine:  # same sections: keep the user's own wording, the LRC gives the times
                for s, (_, body) in zip(secs, gt_sections):
                    s.text = body if s.vocal else ""
            else:  # the lyrics' sections, placed by the LRC's words; its tags are time marks
                secs, n = _from_gt(lrc, gt_sections, tags, partial)
                notes = list(lrc.notes) + n + [lyr.note(
                    "lrc_other_sections", "the LRC's sections ({lrc}) differ from the lyrics' sections ({sheet}): the "
                    "lyrics' sections were kept and placed where their words are in the LRC", lrc=" ".join(mine),
                    sheet=" ".join(base))]
    elif gt_sections is not None and any(t in lyr.VOCAL_TAGS for t, _ in gt_sections):
        secs, n = _from_gt(lrc, gt_sections, tags, partial)
        notes += n
    else:
        secs, n = _from_blocks(lrc, tags)
        notes += n
    return SongTiming(secs, float(duration_s), "lrc"), notes
