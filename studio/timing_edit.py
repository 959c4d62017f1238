"""What the Timing editor does to a song in the workspace (no Gradio here, no ML: core does the work).

A song's timing lives in its `song.json`: `lrc_path` (a copy of the LRC the user gave) and, once the
user saved starts or accepted a proposal, `timing` ({source: edited|proposed, sections: [{tag,
start_s}]}). `Workspace.write_metadata` passes both to prepare as the `lrc` and `timing` keys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from core.audio import io as audio_mod
from core.text import lyrics as lyr
from core.errors import StudioError
from core.text.fields import read_text_file
from core.timing.lrc import parse_lrc, timing_from_lrc
from core.timing.propose import METHODS  # noqa: F401  (the tab lists them)
from core.timing.sections import SongTiming, TimedSection, TimingError, as_note, coded, in_file, normalize
from studio import timing_plot
from studio.i18n import said

CLIP_S = 30.0          # playback from a section: this much audio


class TimingEditError(ValueError):
    """A user action that cannot be done; the message says why and what to do. `msgs`: its messages (coded:
    a core note or refusal, or the studio's own `said`), which the tab words in the reader's language."""

    def __init__(self, *msgs):
        self.msgs = msgs
        super().__init__("; ".join(map(str, msgs)))


def _file_note(name: str, err: Exception):
    """A refusal about one of the user's files (an LRC), naming it as given."""
    return in_file(name, err if isinstance(err, StudioError) else str(err))


@dataclass
class TimingView:
    idx: str
    duration_s: float
    sections: list[tuple[str, Optional[float]]]   # (tag, start) in the editor's order
    source: str                                    # lrc | edited | proposed | none
    notes: list[str] = field(default_factory=list)
    at_prepare: list[str] = field(default_factory=list)   # what prepare will change (length words, intro)
    errors: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)         # what the action itself changed (an LRC replacing starts)


def _song(ws, idx: str) -> dict[str, Any]:
    s = ws.song(idx) if idx else None
    if s is None:
        raise TimingEditError(said("timing_pick"))
    return s


def _duration(song: dict) -> float:
    return float(audio_mod.probe(song["path"]).duration_s)


def _lyric_sections(song: dict) -> list[tuple[str, str]]:
    res = lyr.check_lyrics(song.get("gt_lyric") or "")
    return list(res.sections) if res.ok else []


def lrc_name(song: dict) -> str:
    """The LRC's name as the user gave it (the copy kept with the song is always lyrics.lrc)."""
    return song.get("lrc_name") or Path(song["lrc_path"]).name


def _raw_timing(song: dict, duration: float) -> tuple[Optional[SongTiming], list[str], list[str]]:
    """(timing as the user gave it, notes, errors): saved starts, else the LRC, else None.

    An LRC that places only some of the lyric's sections gives those starts (the others None) and
    an error that asks for the rest: what the file knows is never thrown away."""
    if song.get("timing"):
        t = SongTiming.from_dict({**song["timing"], "duration_s": duration})
        texts = _lyric_sections(song)
        if [s.tag for s in t.sections] == [tg for tg, _ in texts]:
            for s, (_, body) in zip(t.sections, texts):
                s.text = body
        return t, [], []
    if song.get("lrc_path"):
        name = lrc_name(song)
        try:
            lrc = parse_lrc(read_text_file(Path(song["lrc_path"])))
        except (ValueError, OSError) as err:
            return None, [], [_file_note(name, err)]
        gt = song.get("gt_lyric") or None
        try:
            t, notes = timing_from_lrc(lrc, duration, gt)
            return t, notes, []
        except TimingError as err:
            try:  # what the file does know, for the fields
                t, notes = timing_from_lrc(lrc, duration, gt, partial=True)
                return t, notes, [in_file(name, err)]
            except TimingError:
                return None, [], [in_file(name, err)]
    return None, [], []


def view(ws, idx: str) -> TimingView:
    song = _song(ws, idx)
    dur = _duration(song)
    timing, notes, errors = _raw_timing(song, dur)
    if timing is None:
        secs = [(tag, None) for tag, _ in _lyric_sections(song)]
        if not secs:
            errors.append(said("te_no_sections_yet"))
        return TimingView(idx, dur, secs, "none", notes, [], errors)
    out = TimingView(idx, dur, [(s.tag, s.start_s) for s in timing.sections], timing.source, notes, [], errors)
    if any(s.start_s is None for s in timing.sections):
        return out  # partial: the error says which starts are missing
    try:
        _, out.at_prepare = normalize(timing, lyr.STRUCTURE_TAGS)
    except TimingError as err:
        out.errors.append(as_note(err))
    return out


def use_lrc(ws, idx: str, lrc_file: str) -> TimingView:
    """Keep a copy of the LRC with the song; its times replace earlier saved starts (said so);
    its lines fill the lyrics when the song has none. An LRC that places only some sections is kept
    too: its starts fill the fields and the view says which ones to set."""
    song = _song(ws, idx)
    src = Path(lrc_file)
    ws.check_bytes(src.stat().st_size)  # before it is read: an LRC counts against a sandbox's quota
    text = read_text_file(src)
    lrc = parse_lrc(text)
    if lrc.errors:  # the first three problems, each naming its line
        raise TimingEditError(in_file(src.name, coded("lrc_problems", "; ".join(lrc.errors[:3]),
                                                       problems=lrc.errors[:3], more="")))
    dur = _duration(song)
    gt = song.get("gt_lyric") or None
    try:
        timing, _ = timing_from_lrc(lrc, dur, gt)
        normalize(timing, lyr.STRUCTURE_TAGS)
    except TimingError as err:
        if gt is None:
            raise TimingEditError(in_file(src.name, err)) from None
        try:
            timing, _ = timing_from_lrc(lrc, dur, gt, partial=True)
        except TimingError:
            raise TimingEditError(in_file(src.name, err)) from None
    ws.attach_lrc(idx, src)
    fields: dict[str, Any] = {"timing": None}
    notes = []
    if song.get("timing"):
        notes.append(said("te_lrc_replaced"))
    if not (song.get("gt_lyric") or "").strip():
        fields["gt_lyric"] = fields["original_lyric"] = timing.lyrics()
        notes.append(said("te_lyrics_from_lrc"))
    ws.update_song(idx, **fields)
    v = view(ws, idx)
    v.notes, v.done = notes + v.notes, notes
    return v


def save_starts(ws, idx: str, starts: Sequence[Optional[float]], source: str = "edited") -> TimingView:
    """Save one start per section (seconds); refused with the reason when they cannot be used."""
    v = view(ws, idx)
    if not v.sections:
        raise TimingEditError(*(v.errors or [said("te_no_sections")]))
    starts = list(starts)[:len(v.sections)]
    missing = [f"{k + 1} {tag}" for k, ((tag, _), s) in enumerate(zip(v.sections, starts)) if s is None or s == ""]
    if missing or len(starts) < len(v.sections):
        raise TimingEditError(said("te_missing", missing=", ".join(missing)))
    timing = SongTiming([TimedSection(tag, "", float(s)) for (tag, _), s in zip(v.sections, starts)],
                        v.duration_s, source)
    try:
        normalize(timing, lyr.STRUCTURE_TAGS)
    except TimingError as err:
        raise TimingEditError(as_note(err)) from None
    saved = timing.to_dict()
    saved.pop("duration_s")
    for s in saved["sections"]:
        s.pop("text", None)
        s.pop("lines", None)
    _as_prepare_will(ws, _song(ws, idx), saved, v.duration_s)
    ws.update_song(idx, timing=saved)
    return view(ws, idx)


def _as_prepare_will(ws, song: dict, saved: dict, duration: float) -> None:
    """Refuse starts that prepare would refuse: the same core steps (core.timing.resolve against the song's
    lyrics, then the items cut for the base model's max_dur) on the timing about to be saved."""
    from core.timing.resolve import resolve, song_items

    res = resolve(gt_lyric=song.get("gt_lyric") or None, duration_s=duration, lrc_path=song.get("lrc_path"),
                  saved=saved, lrc_name=song.get("lrc_name"))
    errors = list(res.errors)
    if not errors:
        max_dur, min_dur = _model_durations(ws)
        errors = song_items(res, duration, max_dur, min_dur, song.get("source_name") or song["idx"])[2]
    if errors:
        raise TimingEditError(*errors)


def _model_durations(ws) -> tuple[float, float]:
    """(max_dur, min_dur) of the workspace's base model, as prepare reads them (core.data.model_limits)."""
    from core.data import model_limits
    from studio.backend import _prepare_cfg

    try:
        lim = model_limits(_prepare_cfg(ws))
        return float(lim.max_dur), float(lim.min_dur)
    except (StudioError, OSError):  # no readable model yet: the split is checked again at prepare
        return float("inf"), 0.0


# ---- audio: picture, clips, proposal ---------------------------------------------------------------
def _mono(song: dict) -> tuple[np.ndarray, int]:
    wav, sr = audio_mod.read_audio(song["path"])
    return wav.mean(0).numpy(), sr


def _env_cache(song: dict) -> Path:
    return Path(song["path"]).parent / "vocal_envelope.json"


def cached_envelope(song: dict) -> Optional[dict]:
    p = _env_cache(song)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    src = song.get("vocal_path") or song["path"]
    return d if d.get("mtime") == Path(src).stat().st_mtime and d.get("source") == src else None


def picture(ws, idx: str, starts: Optional[Sequence[Optional[float]]] = None,
            proposal: Optional[Sequence[float]] = None) -> str:
    song = _song(ws, idx)
    v = view(ws, idx)
    secs = v.sections if starts is None else [(tag, (None if s in (None, "") else float(s)))
                                              for (tag, _), s in zip(v.sections, starts)]
    mono, sr = _mono(song)
    env = envelope_for(ws, song, allow_separation=False)
    out = Path(song["path"]).parent / "timing.png"
    timing_plot.render(out, mono, sr, secs, np.asarray(env["db"]) if env else None,
                       env["hop_s"] if env else 0.05, proposal)
    return str(out)


def clip_from(ws, idx: str, start_s: float) -> str:
    """A CLIP_S-second WAV of the song from `start_s` (playback from a section)."""
    import soundfile as sf

    song = _song(ws, idx)
    wav, sr = audio_mod.read_audio(song["path"])
    a = max(0, int(float(start_s) * sr))
    if a >= wav.shape[-1]:
        raise TimingEditError(said("te_past_end", s=f"{start_s:g}"))
    out = Path(song["path"]).parent / "clip.wav"
    sf.write(str(out), wav[:, a:a + int(CLIP_S * sr)].T.numpy(), sr)
    return str(out)


def envelope_for(ws, song: dict, allow_separation: bool) -> Optional[dict]:
    """The song's vocal envelope (cached beside the audio). Without a vocal stem it needs a separation:
    Demucs when the workspace's runtime has it (slow: only when `allow_separation`), else the DEMO split."""
    from core.timing.vocal_activity import envelope, vocal_stem

    env_d = cached_envelope(song)
    if env_d is not None:
        return env_d
    runtime = ws.get_state().get("paths.runtime_path")
    if not song.get("vocal_path") and runtime and not allow_separation:
        from core.audio.separation import find_demucs_checkpoint
        if find_demucs_checkpoint(runtime):
            return None
    wav, sr, label = vocal_stem(song["path"], song.get("vocal_path"), runtime)
    env = envelope(wav, sr)
    src = song.get("vocal_path") or song["path"]
    # the label kept coded ({code, values, text}), so the tab words it in the reader's language
    env_d = {"source": src, "mtime": Path(src).stat().st_mtime, "label": label.to_dict(), "hop_s": env.hop_s,
             "duration_s": env.duration_s, "db": [round(float(x), 2) for x in env.db]}
    _env_cache(song).write_text(json.dumps(env_d), encoding="utf-8")
    return env_d


def propose(ws, idx: str) -> dict[str, Any]:
    """Vocal-activity proposal for the song's lyric sections; shown to the user, never saved here.
    When the vocal estimate cannot place the sections, `refused` says so and no starts are offered."""
    import torch

    from core.timing.vocal_activity import Envelope, propose as va_propose, regions

    song = _song(ws, idx)
    sections = _lyric_sections(song)
    if not sections:
        raise TimingEditError(said("te_no_lyric_sections"))
    env_d = envelope_for(ws, song, allow_separation=True)
    env = Envelope(torch.tensor(env_d["db"]), float(env_d["hop_s"]), float(env_d["duration_s"]))
    prop = va_propose(sections, regions(env), _duration(song))
    return {"method": "vocal", "source": "proposed", "refused": prop.unusable,
            "starts": [] if prop.unusable else [s.start_s for s in prop.timing.sections],
            "tags": [s.tag for s in prop.timing.sections], "confidence": prop.confidence,
            "section_confidence": [] if prop.unusable else prop.section_confidence, "notes": prop.notes,
            "stem": _label(env_d["label"]), "lyrics": None}


def _label(label) -> str:
    """What the envelope was measured on, as cached: a coded note ({code, values, text}) or plain text."""
    return coded(label["code"], label["text"], **label["values"]) if isinstance(label, dict) else label


def propose_with(ws, idx: str, method: str, model_dir: Optional[str] = None,
                 songprep: Optional[str] = None) -> dict[str, Any]:
    """A proposal from one method (core.timing.propose), in the same form as `propose`."""
    if method == "vocal":
        return propose(ws, idx)
    from core.timing.propose import SOURCE_OF, run_method

    song = _song(ws, idx)
    r = run_method(method, song["path"], song.get("gt_lyric") or None, vocal_path=song.get("vocal_path"),
                   runtime_path=ws.get_state().get("runtime_path"), model_dir=(model_dir or "").strip() or None,
                   songprep=songprep, audio_name=song.get("source_name"))
    secs = r.timing.sections if r.timing is not None else []
    return {"method": method, "source": SOURCE_OF[method], "refused": r.refused,
            "starts": [s.start_s for s in secs], "tags": [s.tag for s in secs],
            "confidence": min(r.confidence) if r.confidence else 0.0, "section_confidence": r.confidence,
            "notes": r.notes, "stem": r.stem, "lyrics": r.lyrics}


def accept(ws, idx: str, prop: dict[str, Any]) -> TimingView:
    """Save a proposal's starts (source: its method's). A transcribed or SongPrep sheet becomes the
    song's lyrics when it has none; a song that has lyrics keeps them, so their sections must match."""
    if not prop or prop.get("refused") or not prop.get("starts"):
        raise TimingEditError(prop.get("refused") if prop else said("timing_no_proposal"))
    song = _song(ws, idx)
    has_lyrics = bool((song.get("gt_lyric") or "").strip())
    if prop.get("lyrics") and not has_lyrics:
        ws.update_song(idx, gt_lyric=prop["lyrics"], original_lyric=prop["lyrics"], timing=None)
    elif [t for t, _ in view(ws, idx).sections] != list(prop["tags"]):
        raise TimingEditError(said("te_prop_other_sections"))
    return save_starts(ws, idx, prop["starts"], prop["source"])


def comparison(v: TimingView, proposals: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """The proposals side by side with the saved starts: (method columns, one row per section of the
    view -- or of the first proposal when the song has no sections yet, e.g. a transcribed sheet --:
    section, saved start, then "start (confidence)" per method, "-" where a method timed other sections)."""
    methods = [m for m, p in proposals.items() if p and not p.get("refused")]
    base = v.sections or [(t, None) for t in (proposals[methods[0]]["tags"] if methods else [])]
    rows = []
    for k, (tag, saved) in enumerate(base):
        row = [f"{k + 1} {tag}", "-" if saved is None else f"{saved:.2f}"]
        for m in methods:
            p = proposals[m]
            same = list(p["tags"]) == [t for t, _ in base]
            row.append(f"{p['starts'][k]:.2f} ({p['section_confidence'][k]:.2f})" if same else "-")
        rows.append(row)
    return methods, rows
