"""When each section of a song is sung, and what that timing lets training do.

SongGeneration learns from crops of min_dur..max_dur seconds that carry *the lyrics of that crop*
(reference lelm.md §4). A long song can only be cut that way when the studio knows when each
section starts. This module holds that knowledge (`SongTiming`, from an LRC file, the studio's
editor or a vocal-activity proposal) and the rules built on it:

- `normalize`: starts in order and inside the song, the first section starting at 0, and the
  length word of [intro-*] / [inst-*] / [outro-*] set from the measured length, every change listed;
- `plan_windows`: a song longer than max_dur split at section boundaries into items of at most
  max_dur (and at least min_dur where possible), each with exactly its own sections' lyrics;
- `crop_sections`: a memory crop (training.max_frames) that starts and ends on section boundaries.

Times are seconds from the start of the audio; a section ends where the next one starts and the
last one at the end of the song.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from core.errors import StudioError
from core.text.lyrics import SEP, VOCAL_TAGS, Note, note

# proposed: vocal activity; aligned: forced alignment of the lyrics; transcribed: a local Whisper model;
# songprep: imported from SongPrep's output
SOURCES = ("lrc", "edited", "proposed", "aligned", "transcribed", "songprep", "none")

# Length words of instrumental tags, from the measured section length. The reference does not
# publish the rule its annotators used, so these are our choice: at common pop tempi (90-130 bpm,
# 4/4) four bars last 7.4-10.7 s and eight bars 15-21 s. "short" is up to about four bars, "medium"
# up to about eight, "long" beyond; the official example songs' [intro-short] intros are a few bars.
SHORT_MAX_S = 10.0
MEDIUM_MAX_S = 20.0
# Audio before the first timed section: shorter than this it is taken as the first section's own
# lead-in (LRC lines are usually stamped a little before the voice); longer, it is an intro.
LEAD_IN_MAX_S = 1.0

HOW_TO_ADD_TIMING = (
    "give the song section timing: an LRC file (NAME.lrc next to the audio, or an \"lrc\" key in "
    "metadata.jsonl, lines like \"[00:12.30][verse] first line\"), or set the section starts in the "
    "studio's Timing editor (it can also propose them from the vocal stem)")


class TimingError(StudioError, ValueError):
    """Timing that cannot be used; the message names the section and what to change. Each raise has its
    own `code` and params (worded as err_<code> in the studio's locale files)."""
    code = "timing"


def coded(code: str, text: str, **values) -> Note:
    """A note whose English is written out (a value is a list of notes, joined in the English text)."""
    n = Note(text)
    n.code, n.values = code, values
    return n


def as_note(err: StudioError) -> Note:
    """A refusal kept as a finding (a list of errors, a proposal's refusal): same English, same code and values."""
    return coded(err.code, err.message, **err.params)


def in_file(name: str, why) -> Note:
    """"<file>: <why>": a message about one of the user's files, the file named as the user gave it."""
    return note("in_file", "{file}: {why}", file=name, why=as_note(why) if isinstance(why, StudioError) else why)


@dataclass
class TimedSection:
    tag: str                    # official structure tag, e.g. "[verse]" or "[intro-short]"
    text: str                   # the section's body in the official grammar ("" when instrumental)
    start_s: float
    lines: list[tuple[float, str]] = field(default_factory=list)  # known line starts (LRC, alignment)

    @property
    def vocal(self) -> bool:
        return self.tag in VOCAL_TAGS

    def official(self) -> str:
        return f"{self.tag} {self.text}" if self.text else self.tag

    def to_dict(self) -> dict:
        return {"tag": self.tag, "text": self.text, "start_s": round(float(self.start_s), 3),
                "lines": [[round(float(t), 3), s] for t, s in self.lines]}

    @classmethod
    def from_dict(cls, d: dict) -> "TimedSection":
        return cls(str(d["tag"]), str(d.get("text") or ""), float(d["start_s"]),
                   [(float(t), str(s)) for t, s in d.get("lines") or []])


@dataclass
class SongTiming:
    sections: list[TimedSection]
    duration_s: float
    source: str = "none"        # lrc | edited | proposed | none
    confidence: Optional[float] = None  # proposals only

    def ends(self) -> list[float]:
        return [s.start_s for s in self.sections[1:]] + [self.duration_s]

    def lengths(self) -> list[float]:
        return [e - s.start_s for s, e in zip(self.sections, self.ends())]

    def lyrics(self, first: int = 0, last: Optional[int] = None) -> str:
        """The official lyric text of sections first..last (inclusive): what the model is conditioned on."""
        last = len(self.sections) - 1 if last is None else last
        return SEP.join(s.official() for s in self.sections[first:last + 1])

    def to_dict(self) -> dict:
        d = {"source": self.source, "duration_s": round(float(self.duration_s), 3),
             "sections": [s.to_dict() for s in self.sections]}
        if self.confidence is not None:
            d["confidence"] = round(float(self.confidence), 3)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SongTiming":
        src = str(d.get("source") or "none")
        if src not in SOURCES:
            raise TimingError(f"timing source {src!r} is not one of {', '.join(SOURCES)}", code="tm_bad_source",
                              source=src, sources=", ".join(SOURCES))
        return cls([TimedSection.from_dict(s) for s in d.get("sections") or []], float(d.get("duration_s") or 0.0),
                   src, d.get("confidence"))


def fmt_time(t: float) -> str:
    """Seconds -> "m:ss.s" for messages."""
    m, s = divmod(max(0.0, float(t)), 60.0)
    return f"{int(m)}:{s:04.1f}"


def length_word(seconds: float) -> str:
    if seconds < SHORT_MAX_S:
        return "short"
    return "medium" if seconds < MEDIUM_MAX_S else "long"


def _with_length(tag: str, seconds: float, tags: Iterable[str]) -> str:
    for kind in ("intro", "inst", "outro"):
        if tag.startswith(f"[{kind}-"):
            new = f"[{kind}-{length_word(seconds)}]"
            return new if new in tuple(tags) else tag
    return tag


def normalize(timing: SongTiming, tags: Iterable[str]) -> tuple[SongTiming, list[str]]:
    """Check the timing against the song and make it usable; returns (timing, changes).

    Raises TimingError when it cannot be used (starts out of order, a start past the end of the song,
    no sections). Changes (all listed): the first section starting at 0 (a lead-in up to
    LEAD_IN_MAX_S joins it, a longer one becomes an [intro-*]), and the length word of every
    intro/inst/outro set from its measured length."""
    tags = tuple(tags)
    if not timing.sections:
        raise TimingError("the timing has no sections", code="tm_no_sections")
    dur = float(timing.duration_s)
    changes: list[str] = []
    secs = [TimedSection(s.tag, s.text, float(s.start_s), list(s.lines)) for s in timing.sections]
    for i, s in enumerate(secs):
        where = f"section {i + 1} {s.tag}"
        at = {"n": i + 1, "tag": s.tag, "at": fmt_time(s.start_s)}
        if s.start_s < 0:
            raise TimingError(f"{where} starts at a negative time ({s.start_s:g} s)", code="tm_negative_start",
                              **at, s=f"{s.start_s:g}")
        if s.start_s >= dur:
            raise TimingError(f"{where} starts at {fmt_time(s.start_s)}, after the end of the song "
                              f"({fmt_time(dur)}); fix its time or remove it", code="tm_start_after_end",
                              **at, end=fmt_time(dur))
        if i and s.start_s <= secs[i - 1].start_s:
            raise TimingError(f"{where} starts at {fmt_time(s.start_s)}, not after section {i} "
                              f"{secs[i - 1].tag} ({fmt_time(secs[i - 1].start_s)}); section starts must increase",
                              code="tm_start_order", **at, prev=i, prev_tag=secs[i - 1].tag,
                              prev_at=fmt_time(secs[i - 1].start_s))
    first = secs[0]
    if first.start_s > 0:
        if not first.vocal or first.start_s <= LEAD_IN_MAX_S:
            changes.append(note("tm_first_at_zero", "section 1 {tag} now starts at 0:00.0 (was {was}): "
                                "the audio before it belongs to it", tag=first.tag, was=fmt_time(first.start_s)))
            first.start_s = 0.0
        else:
            tag = _with_length("[intro-short]", first.start_s, tags)
            secs.insert(0, TimedSection(tag, "", 0.0))
            changes.append(note("tm_intro_added", "added {tag} for the {s} s before the first sung line", tag=tag,
                                s=f"{first.start_s:.1f}"))
    out = SongTiming(secs, dur, timing.source, timing.confidence)
    for i, (s, length) in enumerate(zip(out.sections, out.lengths())):
        new = _with_length(s.tag, length, tags)
        if new != s.tag:
            changes.append(note("tm_length_word", "section {n} {tag} lasts {s} s: tagged {new}", n=i + 1, tag=s.tag,
                                s=f"{length:.1f}", new=new))
            s.tag = new
    return out, changes


# ------------------------------------------------------------------------------------------------
# long songs -> training items
# ------------------------------------------------------------------------------------------------
@dataclass
class Window:
    first: int              # first section index (inclusive)
    last: int               # last section index (inclusive)
    start_s: float
    end_s: float
    reaches_end: bool       # only this item carries the song's end (EOS is a target)
    lyrics: str             # exactly its sections' official text

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _best_partition(bounds: list[float], max_dur: float, min_dur: float) -> Optional[list[int]]:
    """Boundary indices 0 = i0 < i1 < ... < n splitting `bounds` into hops of min_dur..max_dur:
    fewest hops first (items as long as the model's window allows), then the longest shortest hop."""
    n = len(bounds) - 1
    eps = 1e-6
    best: list[Optional[tuple[int, float, int]]] = [None] * (n + 1)   # (hops, -shortest, previous)
    best[0] = (0, -float("inf"), -1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            span = bounds[j] - bounds[i]
            if span > max_dur + eps:
                break
            if span < min_dur - eps or best[i] is None:
                continue
            cand = (best[i][0] + 1, max(best[i][1], -span), i)
            if best[j] is None or cand[:2] < best[j][:2]:
                best[j] = cand
    if best[n] is None:
        return None
    path, j = [n], n
    while j > 0:
        j = best[j][2]
        path.append(j)
    return path[::-1]


def plan_windows(timing: SongTiming, max_dur: float, min_dur: float = 0.0) -> tuple[list[Window], list[str]]:
    """Split a song at section boundaries into items of <= max_dur seconds; returns (windows, warnings).

    A song that fits is one item. Items are consecutive and do not overlap, so every second of the
    song is trained once per epoch with its own lyrics; only the last item reaches the song's end.
    Items shorter than min_dur are avoided when the boundaries allow it (else a warning names them).
    Raises TimingError when one section alone is longer than max_dur."""
    warnings: list[str] = []
    n = len(timing.sections)
    if timing.duration_s <= max_dur + 1e-6:
        return [Window(0, n - 1, 0.0, timing.duration_s, True, timing.lyrics())], warnings
    for i, (s, length) in enumerate(zip(timing.sections, timing.lengths())):
        if length > max_dur + 1e-6:
            raise TimingError(
                f"section {i + 1} {s.tag} ({fmt_time(s.start_s)}, {length:.1f} s) is longer than the model's "
                f"max_dur of {max_dur:g} s, so the song cannot be split at section boundaries; add a section "
                "start inside it (e.g. split a long verse into two [verse] sections) or trim the audio",
                code="tm_section_too_long", n=i + 1, tag=s.tag, at=fmt_time(s.start_s), s=f"{length:.1f}",
                max=f"{max_dur:g}")
    bounds = [s.start_s for s in timing.sections] + [timing.duration_s]
    path = _best_partition(bounds, max_dur, min_dur)
    if path is None:
        path = _best_partition(bounds, max_dur, 0.0)
        assert path is not None  # every section fits, so single-section hops always work
    wins = [Window(a, b - 1, bounds[a], bounds[b], b == n, timing.lyrics(a, b - 1))
            for a, b in zip(path[:-1], path[1:])]
    short = [w for w in wins if w.duration_s < min_dur - 1e-6]
    if short:
        items = [note("tm_short_item", "item {k} ({a}-{b}) lasts {s} s", k=wins.index(w) + 1, a=fmt_time(w.start_s),
                      b=fmt_time(w.end_s), s=f"{w.duration_s:.1f}") for w in short]
        warnings.append(coded("tm_short_items", "the section boundaries allow no split with every item at least "
                              f"min_dur ({min_dur:g} s) long: " + ", ".join(items), min=f"{min_dur:g}", items=items))
    return wins, warnings


def untimed_too_long(name: str, duration_s: float, max_dur: float) -> str:
    from core.audio.io import format_duration

    return (f"{name} lasts {format_duration(duration_s)}, longer than the model's max_dur of {max_dur:g} s, and has no "
            f"section timing, so it cannot be cut into pieces that keep their own lyrics. To train on it, "
            f"{HOW_TO_ADD_TIMING}; or trim it to {max_dur:g} s and shorten the lyrics to match")


# ------------------------------------------------------------------------------------------------
# memory crops on section boundaries
# ------------------------------------------------------------------------------------------------
@dataclass
class Crop:
    first: int
    last: int
    start_frame: int
    num_frames: int
    reaches_end: bool


def section_frames(starts_s: Sequence[float], num_frames: int, frame_rate: int) -> list[tuple[int, int]]:
    """[start, end) frame spans of sections given their start times relative to the item."""
    fr = [min(num_frames, max(0, int(round(float(s) * frame_rate)))) for s in starts_s] + [num_frames]
    fr[0] = 0
    return list(zip(fr[:-1], fr[1:]))


def crop_candidates(spans: Sequence[tuple[int, int]], max_frames: int) -> list[tuple[int, int]]:
    """(first, last) section runs that fit in max_frames: the longest run starting at each section."""
    out = []
    for i in range(len(spans)):
        j = i - 1
        while j + 1 < len(spans) and spans[j + 1][1] - spans[i][0] <= max_frames:
            j += 1
        if j >= i and (not out or out[-1][1] < j):  # a run inside the previous one adds nothing
            out.append((i, j))
    return out


def crop_sections(spans: Sequence[tuple[int, int]], max_frames: int, item_reaches_end: bool,
                  seed: int, random_start: bool = True) -> Crop:
    """A crop of at most max_frames that starts and ends on section boundaries.

    Training draws one of the candidate runs from `seed` (the caller derives it from seed, epoch and
    item, so resume replays the same crops); validation (`random_start=False`) takes the first.
    Sections longer than the crop are never trained on this way. Raises TimingError when no
    section fits."""
    total = spans[-1][1] if spans else 0
    if total <= max_frames:
        return Crop(0, len(spans) - 1, 0, total, item_reaches_end)
    cands = crop_candidates(spans, max_frames)
    if not cands:
        raise TimingError(f"training.max_frames ({max_frames}) is shorter than every section of this item; "
                          "raise training.max_frames or add section starts", code="tm_crop_too_short",
                          max_frames=max_frames)
    first, last = random.Random(seed).choice(cands) if random_start else cands[0]
    a, b = spans[first][0], spans[last][1]
    return Crop(first, last, a, b - a, item_reaches_end and last == len(spans) - 1)


def sections_longer_than(spans: Sequence[tuple[int, int]], max_frames: int) -> list[int]:
    return [i for i, (a, b) in enumerate(spans) if b - a > max_frames]
