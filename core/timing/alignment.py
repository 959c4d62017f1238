"""Section starts from the user's own lyrics, aligned to the recording offline (pocketsphinx).

pocketsphinx (BSD licence) ships CMU's US-English acoustic model and pronouncing dictionary inside
its wheel, so nothing is downloaded. Whole-song forced alignment drifts over minutes of music (the
decoder must place every word somewhere), so alignment runs in two passes (one decoder recognises,
a fresh one force-aligns: after the language model a decoder places words worse):

1. recognition with a language model built from the lyrics alone, in 12 s windows that overlap by
   3 s (one long utterance loses its way in minutes of music): the decoder hears the words it can.
   The heard words are matched to the lyric's words by one global alignment (choruses repeat, so
   a local match would pick the wrong one); a matched word whose neighbour in its line is matched
   close by in time is an anchor. In long instrumental stretches the lyrics-only model "hears" lyric
   words in the music: a line whose anchors are out of step with the rest of its section loses them
   and the words are matched again without those heard words;
2. forced alignment of the words still between two anchors, in short spans: the rest of an
   anchored line next to its anchor (a few words at the song's own pace), whole unheard lines next
   to the timed lines of their own section, in the audio left between.

A line starts at its first word, a sung section at its first line; instrumental sections start where
the voice of the section before stops. A line's confidence is the share of its words the
recogniser heard in place; a line timed only by pass 2 gets FORCED_CONFIDENCE, one timed by neither
0 (its words get an even share of their span, and the notes name its section). Lyrics that are not
English are refused with the reason (there is no offline model for them), and so is a recording in
which none of the lyric's words can be heard.
"""
from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from core.text.lyrics import note
from core.timing.sections import SongTiming, TimedSection, TimingError

RATE = 16000            # the acoustic model's sample rate
FRAME_S = 0.01          # pocketsphinx's frame
WINDOW_S = 12.0         # recognition window (see `recognise`)
OVERLAP_S = 3.0         # windows overlap by this much; each keeps the words of its middle
ANCHOR_GAP_S = 2.0      # two matched words of a line this close in time anchor each other
MAX_REMATCH = 4         # lines out of step with their section dropped, one at a time (see `_anchors`)
HIT, MISS_LYRIC, MISS_HEARD = 2.0, 1.0, 0.5   # match scores (see `match_heard`)
SPAN_S, SPAN_PER_WORD_S = 1.5, 0.8            # longest span for the rest of an anchored line
PACE_WORDS = 3          # this few words next to an anchor are placed at the song's pace (see `_place`)
DEFAULT_PACE_S = 0.4    # seconds a sung word when no two words of a line were heard
FORCED_CONFIDENCE = 0.4
MIN_ENGLISH_SHARE = 0.6  # below this share of words in the English dictionary the lyrics are not English
_WORD = re.compile(r"[a-z0-9']+")


@dataclass
class LineSpan:
    line: int
    start_s: float
    end_s: float
    score: float            # 0..1: how sure the start is (see the module doc)


@dataclass
class Alignment:
    timing: SongTiming                  # source "proposed", lines filled with aligned starts
    section_confidence: list[float]
    confidence: float
    lines: list[LineSpan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def section_lines(timing: SongTiming) -> tuple[list[str], list[int]]:
    """The sung lines of a timing (its LRC lines, or its sentences) and the section each belongs to."""
    lines, owner = [], []
    for i, s in enumerate(timing.sections):
        if not s.vocal:
            continue
        texts = [x for _, x in s.lines] or [x for x in re.split(r"\.", s.text) if x.strip()]
        lines += texts
        owner += [i] * len(texts)
    return lines, owner


def refine_timing(timing: SongTiming, line_spans: Sequence[LineSpan], line_owner: Sequence[int],
                  line_texts: Optional[Sequence[str]] = None) -> SongTiming:
    """Sung sections start at their first aligned line; line times are replaced by the aligned ones.

    `line_owner[k]` is the section index of line k (`line_texts[k]` its text). Instrumental sections keep their start unless it
    would fall after the next section's new start, in which case it moves to the end of the previous
    aligned line."""
    by_section: dict[int, list[LineSpan]] = {}
    for sp in line_spans:
        by_section.setdefault(line_owner[sp.line], []).append(sp)
    secs = []
    for i, s in enumerate(timing.sections):
        got = by_section.get(i)
        if got and s.vocal:
            if line_texts is not None:
                lines = [(sp.start_s, line_texts[sp.line]) for sp in got]
            else:
                texts = [x for _, x in s.lines] or [""] * len(got)
                lines = [(sp.start_s, texts[k] if k < len(texts) else "") for k, sp in enumerate(got)]
            secs.append(TimedSection(s.tag, s.text, got[0].start_s, lines))
        else:
            secs.append(TimedSection(s.tag, s.text, s.start_s, list(s.lines)))
    ends = {line_owner[sp.line]: sp.end_s for sp in line_spans}
    for i in range(1, len(secs) - 1):
        if not secs[i].vocal and secs[i].start_s >= secs[i + 1].start_s and (i - 1) in ends:
            secs[i].start_s = ends[i - 1]
    return SongTiming(secs, timing.duration_s, timing.source)


# ---- pocketsphinx ---------------------------------------------------------------------------------
def _decoder(**config):
    try:
        import pocketsphinx
    except ImportError as err:  # a dependency in requirements.txt; say what to install
        raise TimingError("forced alignment needs the pocketsphinx package (pip install pocketsphinx)",
                          code="align_no_pocketsphinx", package="pocketsphinx") from err
    return pocketsphinx.Decoder(loglevel="FATAL", **config)


def pcm16(wave: torch.Tensor, sample_rate: int) -> np.ndarray:
    """Mono int16 at the model's rate, peak-normalised (the decoder's cepstral mean follows the level)."""
    import torchaudio.functional as AF

    x = torch.as_tensor(wave, dtype=torch.float32)
    x = x.reshape(-1, x.shape[-1]).mean(0)
    if sample_rate != RATE:
        x = AF.resample(x, sample_rate, RATE)
    x = x / x.abs().max().clamp_min(1e-6) * 0.9
    return (x.numpy() * 32767).astype(np.int16)


def _words(seg) -> list[tuple[str, float, float]]:
    """Decoder segments -> (word, start_s, end_s), fillers and silences dropped, variants '(2)' folded."""
    out = []
    for s in seg:
        w = re.sub(r"\(\d+\)$", "", s.word)
        if _WORD.fullmatch(w):
            out.append((w, s.start_frame * FRAME_S, (s.end_frame + 1) * FRAME_S))
    return out


def _use_lyrics_lm(decoder, lines: Sequence[str]) -> None:
    """Switch the decoder to a language model of the lyric lines only (what it may hear)."""
    from pocketsphinx.lm import ArpaBoLM

    lm = ArpaBoLM(text="\n".join(lines), add_start=True)
    lm.compute()
    buf = io.StringIO()
    lm.write(buf)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "lyrics.arpa"
        path.write_text(buf.getvalue(), encoding="utf-8")
        decoder.add_lm_file("lyrics", str(path))
    decoder.activate_search("lyrics")


def recognise(decoder, pcm: np.ndarray, window_s: float = WINDOW_S,
              overlap_s: float = OVERLAP_S) -> list[tuple[str, float, float]]:
    """Pass 1: what the decoder (its active search) hears, in windows of `window_s` that overlap by
    `overlap_s`; each keeps the words whose middle lies in its part of the overlaps, so a word cut by
    one window's edge lies whole in the next."""
    win, hop = int(window_s * RATE), int((window_s - overlap_s) * RATE)
    half = overlap_s / 2
    out = []
    for a in range(0, max(1, len(pcm) - int(overlap_s * RATE)), hop):
        decoder.start_utt()
        decoder.process_raw(pcm[a:a + win].tobytes(), full_utt=True)
        decoder.end_utt()
        t0 = a / RATE
        lo = t0 + half if a else 0.0
        hi = t0 + window_s - half if a + win < len(pcm) else float("inf")
        out += [(w, s + t0, e + t0) for w, s, e in _words(decoder.seg()) if lo <= t0 + (s + e) / 2 < hi]
    return out


def force_align(decoder, pcm: np.ndarray, words: Sequence[str],
                offset_s: float) -> Optional[list[tuple[str, float, float]]]:
    """Pass 2: the words' times inside this stretch of audio (None when the decoder finds no path)."""
    if not words or len(pcm) < RATE * 0.1 * len(words):
        return None
    decoder.set_align_text(" ".join(words))
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    got = _words(decoder.seg()) if decoder.hyp() is not None else []
    if len(got) != len(words):
        return None
    return [(w, a + offset_s, b + offset_s) for w, a, b in got]


def known_words(lines: Sequence[str], decoder=None) -> tuple[list[list[str]], float]:
    """Each line's words that the English dictionary knows, and the share of all words it knows."""
    d = decoder or _decoder()
    out, total, known = [], 0, 0
    for line in lines:
        ws = _WORD.findall(line.lower())
        ok = [w for w in ws if d.lookup_word(w) is not None]
        total += len(ws)
        known += len(ok)
        out.append(ok)
    return out, (known / total if total else 0.0)


def english_words(lines: Sequence[str], decoder=None) -> list[list[str]]:
    """Each line's dictionary words; TimingError when the lyrics are not English (no offline model)."""
    words, share = known_words(lines, decoder)
    if share < MIN_ENGLISH_SHARE:
        raise TimingError(
            f"only {share:.0%} of the lyric's words are in the English dictionary: forced alignment works offline "
            "for English lyrics only (pocketsphinx's model), and there is no offline model for this language; "
            "use the vocal-activity proposal, an LRC file or a SongPrep result instead",
            code="align_not_english", share=f"{share:.0%}")
    return words


# ---- matching what was heard to the lyrics ---------------------------------------------------------
def match_heard(flat: Sequence[str], heard: Sequence[tuple[str, float, float]]) -> dict[int, int]:
    """Lyric word index -> heard word index, by one global alignment of the two sequences (a match
    scores HIT, a lyric word not heard costs MISS_LYRIC, a heard word not in place MISS_HEARD): the
    lyric's order holds over the whole song, so a repeated chorus takes its own occurrence."""
    n, m = len(flat), len(heard)
    said = [w for w, _, _ in heard]
    score = np.zeros((n + 1, m + 1))
    move = np.zeros((n + 1, m + 1), dtype=np.int8)      # 0 match, 1 lyric word missed, 2 heard word extra
    score[:, 0], move[1:, 0] = -MISS_LYRIC * np.arange(n + 1), 1
    score[0, :], move[0, 1:] = -MISS_HEARD * np.arange(m + 1), 2
    for i in range(1, n + 1):
        row, up, w = score[i], score[i - 1], flat[i - 1]
        for j in range(1, m + 1):
            best, how = up[j] - MISS_LYRIC, 1
            if row[j - 1] - MISS_HEARD > best:
                best, how = row[j - 1] - MISS_HEARD, 2
            if said[j - 1] == w and up[j - 1] + HIT >= best:
                best, how = up[j - 1] + HIT, 0
            row[j], move[i, j] = best, how
    out, i, j = {}, n, m
    while i and j:
        how = move[i, j]
        if how == 0:
            out[i - 1] = j - 1
        i, j = i - (how != 2), j - (how != 1)
    return out


def _cohesive(got: dict[int, int], heard, line_of: Sequence[int]) -> dict[int, int]:
    """The matches with a matched neighbour in their line close in time (a lone match is as likely a
    filler the lyrics-only model forced into a lyric word)."""
    return {k: j for k, j in got.items()
            if any(nb in got and line_of[nb] == line_of[k] and abs(heard[got[nb]][1] - heard[j][1]) <= ANCHOR_GAP_S
                   for nb in (k - 1, k + 1))}


def _stray_line(anch: dict[int, int], heard, line_of: Sequence[int], section_of: Sequence[int]) -> Optional[int]:
    """The anchored line farthest out of step with its section: lines of a section follow each other at
    about the song's line period, so two anchored lines of one section further apart than twice that
    per line step mean one of them heard music as lyrics; the one in more such pairs (else the one
    with fewer anchored words) goes. None when every section is in step."""
    span: dict[int, list[float]] = {}           # line -> [first start, last end, anchored words]
    for k, j in sorted(anch.items()):
        got = span.setdefault(line_of[k], [heard[j][1], heard[j][2], 0])
        got[1], got[2] = heard[j][2], got[2] + 1
    lines = sorted(span)
    pairs = [(p, q) for p, q in zip(lines, lines[1:]) if section_of[p] == section_of[q]]
    steps = [(span[q][0] - span[p][0]) / (q - p) for p, q in pairs]
    if not steps:
        return None
    period = float(np.median(steps))
    bad = [(p, q) for p, q in pairs if span[q][0] - span[p][1] > 2 * period * (q - p)]
    if not bad:
        return None
    count = {x: sum(x in pq for pq in bad) for pq in bad for x in pq}
    return max(count, key=lambda x: (count[x], -span[x][2]))


def _anchors(flat: Sequence[str], heard: Sequence[tuple[str, float, float]], line_of: Sequence[int],
             section_of: Optional[Sequence[int]] = None) -> dict[int, tuple[float, float]]:
    """Lyric word index -> (start, end) of the cohesive matches, matched again without the heard words
    of a line out of step with its section (see `_stray_line`) until none is."""
    heard = list(heard)
    for _ in range(MAX_REMATCH + 1):
        anch = _cohesive(match_heard(flat, heard), heard, line_of)
        stray = _stray_line(anch, heard, line_of, section_of) if section_of is not None else None
        if stray is None:
            break
        for k, j in anch.items():
            if line_of[k] == stray:
                heard[j] = ("", *heard[j][1:])      # no longer matches a lyric word
    return {k: heard[j][1:] for k, j in anch.items()}


def _runs_between_anchors(times: dict, n: int, dur: float):
    """(k, j, a, b): each run of untimed words k..j-1 and the audio a..b between its timed neighbours."""
    k = 0
    while k < n:
        if k in times:
            k += 1
            continue
        j = k
        while j < n and j not in times:
            j += 1
        a = times[k - 1][1] if k > 0 else 0.0
        b = times[j][0] if j < n else dur
        yield k, j, a, b
        k = j


def _pieces(k: int, j: int, line_of: Sequence[int], times: dict,
            section_of: Optional[Sequence[int]] = None) -> list[tuple[int, int, str]]:
    """A run k..j-1 cut where it meets a timed line: (start, stop, side) with side "left" for the rest
    of a line timed before the run, "right" for the start of a line timed after it, "" for one line
    timed on both sides. Whole lines between go by section: those of the section timed before the
    run "left" (they follow it), those of the section timed after it "right" (they lead into it),
    others ""."""
    a, b = k, j
    out = []
    if k > 0 and line_of[k - 1] == line_of[k]:
        while a < j and line_of[a] == line_of[k]:
            a += 1
        out.append((k, a, "left" if a < j or j not in times or line_of[j] != line_of[k] else ""))
    if a < j and j in times and line_of[j] == line_of[j - 1]:
        while b > a and line_of[b - 1] == line_of[j]:
            b -= 1
    sec = (lambda m: section_of[line_of[m]]) if section_of is not None else (lambda m: line_of[m])
    p = a
    while p < b:  # whole lines, one group per section
        q = p
        while q < b and sec(q) == sec(p):
            q += 1
        side = ("left" if k > 0 and sec(k - 1) == sec(p) else
                "right" if j in times and sec(j) == sec(p) else "")
        out.append((p, q, side if section_of is not None else ""))
        p = q
    if b < j:
        out.append((b, j, "right"))
    return out


def _pace(times: dict, line_of: Sequence[int]) -> float:
    """The song's sung pace: median seconds from one anchored word to the next in the same line."""
    steps = [times[k + 1][0] - times[k][0] for k in times
             if k + 1 in times and line_of[k + 1] == line_of[k] and times[k + 1][0] > times[k][0]]
    return float(np.median(steps)) if steps else DEFAULT_PACE_S


def _place(aligner, pcm: np.ndarray, words: Sequence[str], a: float, b: float, side: str, pace: float):
    """Times of `words` inside a..b and whether they were heard by forced alignment (True), set at the
    song's pace next to their anchor ("pace") or given an even share of the span (False). A few words
    next to an anchor go at the pace: forced alignment of a word or two in a stretch of music is
    less sure than the pace of the words heard beside them."""
    n = len(words)
    if side and n <= PACE_WORDS:
        step = min(pace, (b - a) / n) if b > a else 0.0   # never over the words timed before
        t0 = b - n * step if side == "right" else a
        return [(t0 + step * m, t0 + step * (m + 1)) for m in range(n)], "pace"
    cap = SPAN_S + SPAN_PER_WORD_S * n
    if side == "left":
        b = min(b, a + cap)
    elif side == "right":
        a = max(a, b - cap)
    got = force_align(aligner, pcm[int(a * RATE):int(b * RATE)], words, a) if b > a else None
    if got:
        return [(s, e) for _, s, e in got], True
    step = max(b - a, 0.0) / n
    return [(a + step * m, a + step * (m + 1)) for m in range(n)], False


def _fill_runs(aligner, pcm: np.ndarray, flat: Sequence[str], line_of: Sequence[int], times: dict,
               section_of: Optional[Sequence[int]] = None) -> set[int]:
    """Pass 2 over every run of untimed words (in place in `times`); returns the words given an even
    share (not found by either pass). Pieces next to timed words first, so the rest get the audio between."""
    guessed: set[int] = set()
    pace = _pace(times, line_of)
    for k, j, a, b in list(_runs_between_anchors(times, len(flat), len(pcm) / RATE)):
        pieces = _pieces(k, j, line_of, times, section_of)
        # from the timed words inwards: left pieces in order, right ones backwards, then the rest
        order = {"left": lambda x: (0, x[0]), "right": lambda x: (1, -x[0]), "": lambda x: (2, x[0])}
        for p, q, side in sorted(pieces, key=lambda x: order[x[2]](x)):
            lo = max([times[x][1] for x in range(k, p) if x in times], default=a)
            hi = min([times[x][0] for x in range(q, j) if x in times], default=b)
            got, forced = _place(aligner, pcm, flat[p:q], lo, max(lo, hi), side, pace)
            times.update({p + m: t for m, t in enumerate(got)})
            if not forced:
                guessed.update(range(p, q))
    return guessed


def align_lines(pcm: np.ndarray, line_words: Sequence[Sequence[str]], decoder=None,
                line_section: Optional[Sequence[int]] = None) -> list[LineSpan]:
    """Start, end and confidence of every line that has words (the passes of the module doc).

    Raises TimingError when not one lyric word can be heard (nothing to align to)."""
    d = decoder or _decoder()
    flat = [w for ws in line_words for w in ws]
    line_of = [i for i, ws in enumerate(line_words) for _ in ws]
    _use_lyrics_lm(d, [" ".join(ws) for ws in line_words if ws])
    times = _anchors(flat, recognise(d, pcm), line_of, line_section)
    anchored = set(times)
    # a fresh decoder for pass 2: one that has run the language model places words worse
    guessed = _fill_runs(_decoder(), pcm, flat, line_of, times, line_section)
    if flat and len(guessed) == len(flat):
        raise TimingError("none of the lyric's words could be heard in the recording: is this the song's "
                          "recording, with its voice audible? Give the starts by hand or from an LRC file",
                          code="align_nothing_heard")
    out, k = [], 0
    for i, ws in enumerate(line_words):
        idx = list(range(k, k + len(ws)))
        k += len(ws)
        if not idx:
            continue
        heard_share = sum(m in anchored for m in idx) / len(idx)
        first = idx[0]
        score = (heard_share if first in anchored else 0.0 if first in guessed
                 else FORCED_CONFIDENCE * (0.5 + 0.5 * heard_share))
        out.append(LineSpan(i, times[first][0], times[idx[-1]][1], round(score, 3)))
    return out


def _fill_untimed(timing: SongTiming, conf: list[float], spans: Sequence[LineSpan],
                  owner: Sequence[int]) -> None:
    """Sections no line timed (instrumental ones, and sung ones without a dictionary word) start where
    the voice of the section before stops (a lead one at 0); several in a row share the gap evenly.
    Instrumental ones take the confidence of that end, unheard sung ones 0."""
    end_of = {}
    for sp in spans:
        end_of[owner[sp.line]] = (sp.end_s, sp.score)
    timed = set(end_of)
    secs = timing.sections
    i = 0
    while i < len(secs):
        if i in timed:
            i += 1
            continue
        j = i
        while j < len(secs) and j not in timed:
            j += 1
        a, c = end_of.get(i - 1, (0.0, 1.0 if i == 0 else 0.0))
        b = secs[j].start_s if j < len(secs) else timing.duration_s
        for m in range(i, j):
            secs[m].start_s = 0.0 if i == 0 and m == i else a + (b - a) * (m - i) / (j - i)
            conf[m] = 0.0 if secs[m].vocal else 1.0 if i == 0 and m == i else c
        i = j


def _section_list(timing: SongTiming, picked) -> str:
    return ", ".join(f"{i + 1} {s.tag}" for i, s in enumerate(timing.sections) if picked(i, s))


def align_sections(sections: Sequence[tuple[str, str]], wave: torch.Tensor, sample_rate: int,
                   duration_s: Optional[float] = None) -> Alignment:
    """Align the lyric's sections ((tag, official body) pairs) to a recording (vocal estimate or mix).

    Raises TimingError when the lyrics are not English (no offline model), have no sung lines, or
    not one of their words can be heard."""
    pcm = pcm16(wave, sample_rate)
    dur = float(duration_s if duration_s is not None else len(pcm) / RATE)
    base = SongTiming([TimedSection(t, b, 0.0) for t, b in sections], dur, "proposed")
    lines, owner = section_lines(base)
    if not lines:
        raise TimingError("the lyrics have no sung lines to align", code="align_no_lines")
    decoder = _decoder()
    words = english_words(lines, decoder)
    notes = []
    dropped = sum(len(_WORD.findall(x.lower())) - len(w) for x, w in zip(lines, words))
    if dropped:
        notes.append(note("align_skipped_words", "{n} word(s) are not in the English dictionary and were "
                          "skipped when aligning", n=dropped))
    spans = align_lines(pcm, words, decoder, owner)
    timing = refine_timing(base, spans, owner, lines)
    first = {}
    for sp in spans:
        first.setdefault(owner[sp.line], sp.score)
    conf = [first.get(i, 0.0) for i in range(len(timing.sections))]
    _fill_untimed(timing, conf, spans, owner)
    for s in timing.sections:
        s.start_s = round(s.start_s, 2)
    guessed = _section_list(timing, lambda i, s: s.vocal and conf[i] == 0.0)
    if guessed:
        notes.append(note("align_estimated", "section(s) {sections} could not be heard: their starts are "
                          "estimated from the sections around them (confidence 0); play them and set them "
                          "by hand", sections=guessed))
    unsure = _section_list(timing, lambda i, s: conf[i] < 0.5 and not (s.vocal and conf[i] == 0.0))
    if unsure:
        notes.append(note("align_unsure", "section(s) {sections} were placed without hearing their first "
                          "words clearly (confidence under 0.5): play them and check", sections=unsure))
    total = min(conf) if conf else 0.0
    timing.confidence = total
    return Alignment(timing, conf, total, spans, notes)
