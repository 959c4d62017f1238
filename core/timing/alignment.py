"""Section starts from the user's own lyrics, aligned to the recording offline (pocketsphinx).

pocketsphinx (BSD licence) ships CMU's US-English acoustic model and pronouncing dictionary inside
its wheel, so nothing is downloaded. Whole-song forced alignment drifts over minutes of music (the
decoder must place every word somewhere), so alignment runs in two passes:

1. recognition with a language model built from the lyrics alone, in overlapping 10 s windows (one
   long utterance loses its way in minutes of music): the decoder hears the words it can; runs of
   MIN_ANCHOR_WORDS or more lyric words it heard in the lyric's order become anchors;
2. forced alignment of the words still between two anchors, inside the audio between them.

A line starts at its first word, a sung section at its first line; instrumental sections start where
the voice of the section before stops. A line's confidence is the share of its words the
recogniser heard in place; a line timed only by pass 2 gets FORCED_CONFIDENCE, one timed by neither
0 (its words get an even share of the time between their timed neighbours, and the notes name its
section). Lyrics that are not English are refused with the reason (there is no offline model for them).
"""
from __future__ import annotations

import difflib
import io
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from core.text.lyrics import VOCAL_TAGS
from core.timing.sections import SongTiming, TimedSection, TimingError

RATE = 16000            # the acoustic model's sample rate
FRAME_S = 0.01          # pocketsphinx's frame
MIN_ANCHOR_WORDS = 3    # a run this long of heard lyric words, in order, is an anchor
WINDOW_S = 10.0         # recognition window (see `recognise`)
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
        raise TimingError("forced alignment needs the pocketsphinx package (pip install pocketsphinx)") from err
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


def recognise(pcm: np.ndarray, lines: Sequence[str], window_s: float = WINDOW_S) -> list[tuple[str, float, float]]:
    """Pass 1: what the decoder hears with a language model of the lyric lines only, in windows of
    `window_s` that overlap by half (each keeps the words of its middle half, so a word cut by one
    window's edge lies whole in the next)."""
    from pocketsphinx.lm import ArpaBoLM

    lm = ArpaBoLM(text="\n".join(lines), add_start=True)
    lm.compute()
    buf = io.StringIO()
    lm.write(buf)
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "lyrics.arpa"
        path.write_text(buf.getvalue(), encoding="utf-8")
        d = _decoder(lm=str(path))
    win = int(window_s * RATE)
    hop = max(1, win // 2)
    out = []
    for a in range(0, max(1, len(pcm) - hop), hop):
        d.start_utt()
        d.process_raw(pcm[a:a + win].tobytes(), full_utt=True)
        d.end_utt()
        lo = a / RATE + (win / RATE / 4 if a else 0.0)
        hi = a / RATE + (3 * win / RATE / 4 if a + win < len(pcm) else win / RATE)
        out += [(w, s + a / RATE, e + a / RATE) for w, s, e in _words(d.seg())
                if lo <= a / RATE + (s + e) / 2 < hi]
    return out


def force_align(pcm: np.ndarray, words: Sequence[str], offset_s: float) -> Optional[list[tuple[str, float, float]]]:
    """Pass 2: the words' times inside this stretch of audio (None when the decoder finds no path)."""
    if not words or len(pcm) < RATE * 0.1 * len(words):
        return None
    d = _decoder()
    d.set_align_text(" ".join(words))
    d.start_utt()
    d.process_raw(pcm.tobytes(), full_utt=True)
    d.end_utt()
    got = _words(d.seg()) if d.hyp() is not None else []
    if len(got) != len(words):
        return None
    return [(w, a + offset_s, b + offset_s) for w, a, b in got]


def known_words(lines: Sequence[str]) -> tuple[list[list[str]], float]:
    """Each line's words that the English dictionary knows, and the share of all words it knows."""
    d = _decoder()
    out, total, known = [], 0, 0
    for line in lines:
        ws = _WORD.findall(line.lower())
        ok = [w for w in ws if d.lookup_word(w) is not None]
        total += len(ws)
        known += len(ok)
        out.append(ok)
    return out, (known / total if total else 0.0)


def english_words(lines: Sequence[str]) -> list[list[str]]:
    """Each line's dictionary words; TimingError when the lyrics are not English (no offline model)."""
    words, share = known_words(lines)
    if share < MIN_ENGLISH_SHARE:
        raise TimingError(
            f"only {share:.0%} of the lyric's words are in the English dictionary: forced alignment works offline "
            "for English lyrics only (pocketsphinx's model), and there is no offline model for this language; "
            "use the vocal-activity proposal, an LRC file or a SongPrep result instead")
    return words


def _anchors(flat: Sequence[str], heard: Sequence[tuple[str, float, float]]) -> dict[int, tuple[float, float]]:
    """Lyric word index -> (start, end) for runs of >= MIN_ANCHOR_WORDS heard words in lyric order."""
    sm = difflib.SequenceMatcher(None, list(flat), [w for w, _, _ in heard], autojunk=False)
    out = {}
    for a, b, n in sm.get_matching_blocks():
        if n >= MIN_ANCHOR_WORDS:
            for k in range(n):
                out[a + k] = heard[b + k][1:]
    return out


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


def align_lines(pcm: np.ndarray, line_words: Sequence[Sequence[str]]) -> list[LineSpan]:
    """Start, end and confidence of every line that has words (the passes of the module doc)."""
    flat = [w for ws in line_words for w in ws]
    owner = [i for i, ws in enumerate(line_words) for _ in ws]
    dur = len(pcm) / RATE
    lines = [" ".join(ws) for ws in line_words if ws]
    times = _anchors(flat, recognise(pcm, lines))
    anchored = set(times)
    for k, j, a, b in list(_runs_between_anchors(times, len(flat), dur)):
        got = force_align(pcm[int(a * RATE):int(b * RATE)], flat[k:j], a) if b > a else None
        times.update({k + m: (s, e) for m, (_, s, e) in enumerate(got or [])})
    guessed = set()
    for k, j, a, b in list(_runs_between_anchors(times, len(flat), dur)):  # neither: an even share, score 0
        step = max(b - a, 0.0) / (j - k)
        times.update({m: (a + step * (m - k), a + step * (m - k + 1)) for m in range(k, j)})
        guessed.update(range(k, j))
    out = []
    for i, ws in enumerate(line_words):
        idx = [m for m, o in enumerate(owner) if o == i]
        if not idx or idx[0] not in times:
            continue
        last = max((m for m in idx if m in times), default=idx[0])
        heard_share = sum(m in anchored for m in idx) / len(idx)
        score = (heard_share if idx[0] in anchored else 0.0 if idx[0] in guessed
                 else FORCED_CONFIDENCE * (0.5 + 0.5 * heard_share))
        out.append(LineSpan(i, times[idx[0]][0], times[last][1], round(score, 3)))
    return out


def _fill_instrumental(timing: SongTiming, conf: list[float], spans: Sequence[LineSpan],
                       owner: Sequence[int]) -> None:
    """Instrumental sections start where the voice of the section before stops (lead ones at 0);
    several in a row share the gap evenly."""
    end_of = {}
    for sp in spans:
        end_of[owner[sp.line]] = (sp.end_s, sp.score)
    secs = timing.sections
    i = 0
    while i < len(secs):
        if secs[i].vocal:
            i += 1
            continue
        j = i
        while j < len(secs) and not secs[j].vocal:
            j += 1
        a, c = end_of.get(i - 1, (0.0, 1.0 if i == 0 else 0.0))
        b = secs[j].start_s if j < len(secs) else timing.duration_s
        for m in range(i, j):
            secs[m].start_s = 0.0 if i == 0 and m == i else a + (b - a) * (m - i) / (j - i)
            conf[m] = 1.0 if i == 0 and m == i else c
        i = j


def align_sections(sections: Sequence[tuple[str, str]], wave: torch.Tensor, sample_rate: int,
                   duration_s: Optional[float] = None) -> Alignment:
    """Align the lyric's sections ((tag, official body) pairs) to a recording (vocal estimate or mix).

    Raises TimingError when the lyrics are not English (no offline model) or have no sung lines."""
    pcm = pcm16(wave, sample_rate)
    dur = float(duration_s if duration_s is not None else len(pcm) / RATE)
    base = SongTiming([TimedSection(t, b, 0.0) for t, b in sections], dur, "proposed")
    lines, owner = section_lines(base)
    if not lines:
        raise TimingError("the lyrics have no sung lines to align")
    words = english_words(lines)
    notes = []
    dropped = sum(len(_WORD.findall(x.lower())) - len(w) for x, w in zip(lines, words))
    if dropped:
        notes.append(f"{dropped} word(s) are not in the English dictionary and were skipped when aligning")
    spans = align_lines(pcm, words)
    timed = {owner[sp.line] for sp in spans}
    missing = [f"{i + 1} {s.tag}" for i, s in enumerate(base.sections) if s.vocal and i not in timed]
    if missing:
        raise TimingError(f"no line of section(s) {', '.join(missing)} could be aligned; is this the song's recording?")
    timing = refine_timing(base, spans, owner, lines)
    first = {}
    for sp in spans:
        first.setdefault(owner[sp.line], sp.score)
    conf = [first.get(i, 0.0) for i in range(len(timing.sections))]
    _fill_instrumental(timing, conf, spans, owner)
    for s in timing.sections:
        s.start_s = round(s.start_s, 2)
    unsure = [f"{i + 1} {s.tag}" for i, (s, c) in enumerate(zip(timing.sections, conf)) if c < 0.5]
    if unsure:
        notes.append(f"section(s) {', '.join(unsure)} were placed without hearing their first words clearly "
                     "(confidence under 0.5): play them and check")
    total = min(conf) if conf else 0.0
    timing.confidence = total
    return Alignment(timing, conf, total, spans, notes)
