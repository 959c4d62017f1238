"""One song, one method -> a timing proposal the user reviews (the CLI and the studio's Timing tab).

Methods (the timing `source` an accepted proposal gets):
- "align"      forced alignment of the song's English lyrics (source "aligned");
- "vocal"      where the vocal estimate is active (source "proposed");
- "transcribe" a Whisper model folder on disk, for songs without lyrics (source "transcribed");
- "songprep"   SongPrep's output for the song (source "songprep");
- "auto"       align, or vocal activity when alignment cannot run (lyrics not English).
A proposal is never saved here; a method that cannot propose says why in `refused`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from core.text import lyrics as lyr
from core.errors import StudioError
from core.timing.sections import SongTiming, TimedSection, TimingError, as_note, in_file, normalize

METHODS = ("align", "vocal", "transcribe", "songprep")
SOURCE_OF = {"align": "aligned", "vocal": "proposed", "transcribe": "transcribed", "songprep": "songprep"}


@dataclass
class MethodResult:
    method: str
    timing: Optional[SongTiming] = None          # the lyric's sections; None when refused
    confidence: list[float] = field(default_factory=list)   # per section
    lyrics: Optional[str] = None                 # the sheet, for transcribe / songprep
    stem: str = ""                               # what was listened to
    notes: list[str] = field(default_factory=list)
    refused: str = ""

    def to_dict(self) -> dict[str, Any]:
        secs = [] if self.timing is None else [
            {"section": s.tag, "start_s": round(s.start_s, 2), "confidence": round(float(c), 2),
             "source": self.timing.source} for s, c in zip(self.timing.sections, self.confidence)]
        d = {"method": self.method, "source": SOURCE_OF.get(self.method, ""), "sections": secs, "notes": self.notes}
        if self.lyrics is not None:
            d["lyrics"] = self.lyrics
        if self.stem:
            d["listened_to"] = self.stem
        if self.refused:
            d["refused"] = self.refused
        return d


def _sections(gt_lyric: Optional[str]) -> list[tuple[str, str]]:
    res = lyr.check_lyrics(gt_lyric or "")
    if not (gt_lyric or "").strip() or not res.ok or not res.sections:
        raise TimingError("the song has no lyric sections to time; give its lyrics (or use transcribe / SongPrep)",
                          code="prop_no_sections")
    return list(res.sections)


def _finish(out: MethodResult, timing: SongTiming, conf: list[float]) -> MethodResult:
    """Keep the lyric's own sections (one start each, as the editor and metadata store them); the
    timing must pass `normalize`, whose changes (an intro added, length words) prepare will make."""
    _, changes = normalize(timing, lyr.STRUCTURE_TAGS)
    out.timing, out.confidence = timing, [round(float(c), 3) for c in conf]
    out.notes += [lyr.note("prop_at_prepare", "at prepare: {change}", change=c) for c in changes]
    return out


def run_method(method: str, audio_path: str | Path, gt_lyric: Optional[str] = None, *,
               vocal_path: Optional[str] = None, runtime_path: Optional[str] = None,
               model_dir: Optional[str] = None, songprep: Optional[str] = None,
               language: Optional[str] = None, audio_name: Optional[str] = None) -> MethodResult:
    """Run one method on one song; every expected failure comes back in `refused` (a coded note, never
    raised). `audio_name`: the audio's name as the user gave it, for messages."""
    from core.audio import io as audio_mod

    out = MethodResult(method)
    try:
        duration = float(audio_mod.probe(audio_path).duration_s)
        if method == "songprep":
            return _songprep(out, songprep, duration)
        from core.timing.vocal_activity import vocal_stem

        if method == "align":  # refuse before the (slow) vocal estimate
            from core.timing.alignment import english_words, section_lines

            english_words(section_lines(SongTiming([TimedSection(t, b, 0.0) for t, b in _sections(gt_lyric)],
                                                   duration))[0])
        wav, sr, out.stem = vocal_stem(str(audio_path), vocal_path, runtime_path)
        if method == "align":
            from core.timing.alignment import align_sections

            al = align_sections(_sections(gt_lyric), wav, sr, duration)
            out.notes += al.notes
            al.timing.source = "aligned"
            return _finish(out, al.timing, al.section_confidence)
        if method == "vocal":
            from core.timing.vocal_activity import propose_from_stem

            prop, _, _ = propose_from_stem(_sections(gt_lyric), wav, sr, duration)
            out.notes += prop.notes
            if prop.unusable:
                out.refused = prop.unusable
                return out
            return _finish(out, prop.timing, prop.section_confidence)
        if method == "transcribe":
            return _transcribe(out, model_dir, wav, sr, duration, language)
        raise TimingError(f"unknown timing method {method!r}; use one of {', '.join(METHODS)}",
                          code="prop_unknown_method", method=method, methods=", ".join(METHODS))
    except TimingError as err:
        out.refused = as_note(err)
    except (OSError, ValueError) as err:  # unreadable audio or file
        out.refused = in_file(audio_name or Path(str(audio_path)).name,
                              as_note(err) if isinstance(err, StudioError) else str(err))
    return out


def _songprep(out: MethodResult, songprep: Optional[str], duration: float) -> MethodResult:
    from core.timing.songprep import parse_songprep

    if not songprep or not str(songprep).strip():
        raise TimingError("give SongPrep's output for this song (a string or a file)", code="prop_need_songprep")
    text = str(songprep)
    if "\n" not in text and not text.lstrip().startswith("[") and Path(text).expanduser().is_file():
        from core.text.fields import read_text_file

        text = read_text_file(Path(text).expanduser())
    res = parse_songprep(text, duration)
    out.notes += res.notes
    out.lyrics = res.lyrics
    return _finish(out, res.timing, [1.0] * len(res.timing.sections))


def _transcribe(out: MethodResult, model_dir: Optional[str], wav, sr: int, duration: float,
                language: Optional[str]) -> MethodResult:
    from core.timing.transcribe import sheet_from_lines, transcribe

    if not model_dir:
        raise TimingError("transcription needs the folder of a Whisper model on this machine (--model DIR)",
                          code="prop_need_model")
    tr = transcribe(model_dir, wav, sr, language)
    timing, conf, notes = sheet_from_lines(tr.lines, duration)
    out.notes += tr.notes + notes + [lyr.note("prop_transcribed", "transcribed with {model}: review the words before "
                                              "using them", model=tr.model)]
    out.lyrics = timing.lyrics()
    return _finish(out, timing, conf)


def run_auto(audio_path: str | Path, gt_lyric: Optional[str], **kw) -> MethodResult:
    """Forced alignment, or the vocal-activity proposal where alignment cannot run (said in the notes)."""
    first = run_method("align", audio_path, gt_lyric, **kw)
    if not first.refused:
        return first
    second = run_method("vocal", audio_path, gt_lyric, **kw)
    second.notes.insert(0, lyr.note("prop_no_alignment", "forced alignment could not run: {why}", why=first.refused))
    return second
