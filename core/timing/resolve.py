"""The timing a song is prepared with, and the training items it yields.

A song's timing comes from, in this order: a `timing` the user set or accepted in the studio
(source "edited" or "proposed"), its LRC file (source "lrc"), or nothing (source "none"). With
timing, the song is cut at section boundaries into items of at most the model's max_dur, each
conditioned on exactly its own sections' lyrics; without, a song longer than max_dur is refused
with a message that says how to add timing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from core.errors import StudioError
from core.text import lyrics as lyr
from core.timing.lrc import parse_lrc, timing_from_lrc
from core.timing.sections import (SongTiming, TimingError, Window, as_note, in_file, normalize, plan_windows,
                                  untimed_too_long)


@dataclass
class ResolvedTiming:
    timing: Optional[SongTiming]       # normalised; None without timing
    lyrics: Optional[str]              # the song's lyrics (from the LRC when gt_lyric was absent)
    source: str = "none"
    notes: list[str] = field(default_factory=list)      # informational
    changes: list[str] = field(default_factory=list)    # what normalisation changed (tags, starts)
    errors: list[str] = field(default_factory=list)

    @property
    def chorus_start_s(self) -> Optional[float]:
        if self.timing is None:
            return None
        return next((s.start_s for s in self.timing.sections if s.tag == "[chorus]"), None)


def _plain(tag: str) -> str:
    return re.sub(r"-(short|medium|long)\]$", "]", tag)


def _from_saved(saved: dict, gt_lyric: Optional[str], duration_s: float, tags: tuple[str, ...]) -> SongTiming:
    """A timing saved by the studio ({source, sections: [{tag, start_s, ...}]}) checked against the lyrics.

    The lyrics may have been edited after the timing was set: the timed sections must still be the
    lyric's sections (length words aside); their text is taken from the current lyrics."""
    t = SongTiming.from_dict({**saved, "duration_s": duration_s})
    if gt_lyric is not None and str(gt_lyric).strip():
        res = lyr.check_lyrics(gt_lyric, tags)
        if res.ok:
            mine = [_plain(s.tag) for s in t.sections]
            theirs = [_plain(tg) for tg, _ in res.sections]
            if mine != theirs:
                raise TimingError(
                    f"the lyrics' sections ({' '.join(theirs)}) are no longer the timed sections "
                    f"({' '.join(mine)}); set the section starts again in the studio's Timing editor",
                    code="tm_lyrics_changed", sheet=" ".join(theirs), timed=" ".join(mine))
            for s, (_, body) in zip(t.sections, res.sections):
                s.text = body if s.vocal else ""
    return t


def resolve(*, gt_lyric: Optional[str], duration_s: float, lrc_path: Optional[str | Path] = None,
            lrc_text: Optional[str] = None, saved: Optional[dict] = None,
            tags: Iterable[str] = lyr.STRUCTURE_TAGS, lrc_name: Optional[str] = None) -> ResolvedTiming:
    """The song's timing (normalised) and lyrics; problems go to `errors` (coded notes), never raised.
    `lrc_name`: the LRC's name as the user gave it (messages name it; default: the file's own name)."""
    tags = tuple(tags)
    out = ResolvedTiming(None, gt_lyric)
    try:
        if (lrc_path is not None or lrc_text is not None) and lrc_text is None:
            from core.text.fields import read_text_file  # one reader for every user text file
            lrc_text = read_text_file(Path(lrc_path))
        if saved:
            if not (gt_lyric and str(gt_lyric).strip()) and lrc_text is not None:
                # saved starts of an LRC-only song: its words are the LRC's
                gt_lyric = timing_from_lrc(parse_lrc(lrc_text, tags), duration_s, None, tags)[0].lyrics()
            timing = _from_saved(saved, gt_lyric, duration_s, tags)
        elif lrc_text is not None:
            timing, notes = timing_from_lrc(parse_lrc(lrc_text, tags), duration_s, gt_lyric, tags)
            out.notes += notes
        else:
            return out
        timing, changes = normalize(timing, tags)
    except TimingError as err:
        if lrc_path and not saved:
            out.errors.append(in_file(lrc_name or Path(lrc_path).name, err))
        else:
            out.errors.append(lyr.note("tm_saved_refused", "the section timing: {why}", why=as_note(err)))
        return out
    except (OSError, ValueError) as err:  # unreadable LRC file (missing, not UTF-8): core's own words
        out.errors.append(in_file(lrc_name or (Path(lrc_path).name if lrc_path else "LRC"),
                                  as_note(err) if isinstance(err, StudioError) else str(err)))
        return out
    out.timing, out.changes, out.source = timing, changes, timing.source
    if gt_lyric is None or not str(gt_lyric).strip():
        out.notes.append(lyr.note("tm_lyrics_from_lrc", "the lyrics were taken from the timed lyrics (LRC)"))
    out.lyrics = timing.lyrics()
    return out


@dataclass
class Item:
    start_s: float
    end_s: float
    lyrics: Optional[str]       # exactly what the model is conditioned on
    reaches_end: bool
    sections: list[dict]        # [{tag, start_s (relative to the item)}]; [] without timing

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3), "lyrics": self.lyrics,
                "reaches_end": self.reaches_end, "sections": self.sections}


def song_items(resolved: ResolvedTiming, duration_s: float, max_dur: float, min_dur: float,
               name: str) -> tuple[list[Item], list[str], list[str]]:
    """(items, warnings, errors) for one song. Without timing: one whole-song item, or an error when
    the song is longer than max_dur."""
    if resolved.timing is None:
        if duration_s > max_dur + 1e-6:
            return [], [], [untimed_too_long(name, duration_s, max_dur)]
        return [Item(0.0, duration_s, resolved.lyrics, True, [])], [], []
    try:
        wins, warnings = plan_windows(resolved.timing, max_dur, min_dur)
    except TimingError as err:
        return [], [], [in_file(name, err)]
    return [_item(resolved.timing, w) for w in wins], warnings, []


def _item(timing: SongTiming, w: Window) -> Item:
    secs = [{"tag": s.tag, "start_s": round(s.start_s - w.start_s, 3)} for s in timing.sections[w.first:w.last + 1]]
    return Item(w.start_s, w.end_s, w.lyrics, w.reaches_end, secs)
