"""Timed lyric lines from a Whisper model on the user's disk, and a proposed lyric sheet from them.

For songs without lyrics. The model folder is the user's: a transformers Whisper checkpoint
(config.json + model.safetensors + tokenizer files) or a CTranslate2 one for faster-whisper
(model.bin, read only when faster-whisper is installed). Nothing is downloaded: transformers loads
with local_files_only and safetensors only.

`sheet_from_lines` turns the lines into a *proposal* for review: lines are grouped into blocks at
pauses, blocks whose words repeat another block are guessed as [chorus], the others [verse]; long
pauses become [inst-*], the audio before the first line an [intro-*] (normalize sets length words).
"""
from __future__ import annotations

import difflib
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch

from core.text import lyrics as lyr
from core.timing.sections import SongTiming, TimedSection, TimingError

RATE = 16000
CHUNK_S = 30.0            # Whisper's window
BLOCK_PAUSE_S = 3.0       # a pause this long (or 2x the song's usual pause) ends a block of lines
INST_PAUSE_S = 8.0        # a pause this long is an instrumental section of its own
REPEAT_SIMILARITY = 0.7   # blocks at least this alike (by words) are the same chorus


@dataclass
class Line:
    start_s: float
    end_s: float
    text: str


@dataclass
class Transcript:
    lines: list[Line]
    model: str
    notes: list[str] = field(default_factory=list)


def model_kind(folder: str | Path) -> str:
    """'transformers' or 'ctranslate2' for a model folder; TimingError naming what is missing."""
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise TimingError(f"the transcription model folder {p} does not exist; give the folder of a Whisper model "
                          "on this machine (the studio never downloads one)", code="asr_no_folder", folder=str(p))
    if (p / "model.bin").is_file():
        return "ctranslate2"
    if (p / "config.json").is_file() and any(p.glob("*.safetensors")):
        return "transformers"
    raise TimingError(f"{p} holds no Whisper model: expected config.json + model.safetensors (transformers) "
                      "or model.bin (CTranslate2 / faster-whisper)", code="asr_no_model", folder=str(p))


def _mono16k(wave: torch.Tensor, sample_rate: int):
    import torchaudio.functional as AF

    x = torch.as_tensor(wave, dtype=torch.float32)
    x = x.reshape(-1, x.shape[-1]).mean(0)
    return (AF.resample(x, sample_rate, RATE) if sample_rate != RATE else x).numpy()


def _transformers(folder: Path, audio, language: Optional[str]) -> list[tuple[float, float, str]]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

    proc = WhisperProcessor.from_pretrained(str(folder), local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    asr = pipeline("automatic-speech-recognition", model=model.eval(), tokenizer=proc.tokenizer,
                   feature_extractor=proc.feature_extractor, device="cpu")
    kw = {"task": "transcribe", **({"language": language} if language else {})}
    out = asr({"raw": audio, "sampling_rate": RATE}, chunk_length_s=CHUNK_S, return_timestamps=True,
              generate_kwargs=kw)
    return [(c["timestamp"][0], c["timestamp"][1], c["text"]) for c in out.get("chunks") or []]


def _ctranslate2(folder: Path, audio, language: Optional[str]) -> list[tuple[float, float, str]]:
    try:
        from faster_whisper import WhisperModel
    except ImportError as err:
        raise TimingError(f"{folder} is a CTranslate2 model: install faster-whisper to use it "
                          "(pip install faster-whisper), or give a transformers Whisper folder",
                          code="asr_need_faster_whisper", folder=str(folder)) from err
    segs, _ = WhisperModel(str(folder), device="cpu", local_files_only=True).transcribe(audio, language=language)
    return [(s.start, s.end, s.text) for s in segs]


def transcribe(folder: str | Path, wave: torch.Tensor, sample_rate: int, language: Optional[str] = None) -> Transcript:
    """Timed lines of a recording (the vocal estimate is best) from the model in `folder`."""
    p = Path(folder).expanduser()
    kind = model_kind(p)
    audio = _mono16k(wave, sample_rate)
    dur = len(audio) / RATE
    raw = (_ctranslate2 if kind == "ctranslate2" else _transformers)(p, audio, language)
    lines, skipped = [], 0
    for a, b, text in raw:
        text = re.sub(r"\s+", " ", "".join(c for c in str(text) if c.isprintable() and c != "\ufffd")).strip()
        a = float(a or 0.0)
        b = float(b) if b is not None else a
        if not re.search(r"\w", text) or a >= dur:
            skipped += 1
            continue
        lines.append(Line(round(a, 2), round(min(max(b, a), dur), 2), text))
    lines.sort(key=lambda ln: ln.start_s)
    notes = [lyr.note("asr_skipped", "{n} piece(s) without words or past the end of the audio were left out",
                      n=skipped)] if skipped else []
    return Transcript(lines, p.name, notes)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _blocks(lines: Sequence[Line]) -> list[list[Line]]:
    pauses = [b.start_s - a.end_s for a, b in zip(lines, lines[1:])]
    limit = min(BLOCK_PAUSE_S, 2 * statistics.median(pauses)) if pauses else BLOCK_PAUSE_S
    out: list[list[Line]] = [[lines[0]]]
    for ln, pause in zip(lines[1:], pauses):
        if pause >= max(limit, 1.0):
            out.append([])
        out[-1].append(ln)
    return out


def _body(block: Sequence[Line]) -> str:
    res = lyr.check_lyrics("[verse]\n" + "\n".join(ln.text for ln in block))
    return res.sections[0][1] if res.ok and res.sections else ""


def sheet_from_lines(lines: Sequence[Line], duration_s: float) -> tuple[SongTiming, list[float], list[str]]:
    """A proposed lyric sheet: (timing with source "transcribed", confidence per section, notes).

    A block's confidence is how clearly a pause separates it from the block before (1 for a pause of
    two block pauses or more); a chorus guess takes its similarity to the repeated block."""
    if not lines:
        raise TimingError("the transcription found no words; check the model folder and the audio", code="asr_no_words")
    blocks = _blocks(lines)
    texts = [" ".join(w for ln in b for w in _words(ln.text)) for b in blocks]
    sim = [max((difflib.SequenceMatcher(None, t.split(), u.split()).ratio() for j, u in enumerate(texts) if j != i),
               default=0.0) for i, t in enumerate(texts)]
    secs: list[TimedSection] = []
    conf: list[float] = []
    notes: list[str] = []
    if blocks[0][0].start_s > 1.0:
        secs.append(TimedSection("[intro-short]", "", 0.0))
        conf.append(1.0)
    prev_end = 0.0
    for i, b in enumerate(blocks):
        pause = b[0].start_s - prev_end
        if i and pause >= INST_PAUSE_S:
            secs.append(TimedSection("[inst-short]", "", prev_end))
            conf.append(min(1.0, pause / (2 * INST_PAUSE_S)))
        chorus = sim[i] >= REPEAT_SIMILARITY
        tag = "[chorus]" if chorus else "[verse]"
        secs.append(TimedSection(tag, _body(b), b[0].start_s, [(ln.start_s, ln.text) for ln in b]))
        conf.append(round(sim[i] if chorus else min(1.0, pause / (2 * BLOCK_PAUSE_S)) if i else 1.0, 3))
        prev_end = b[-1].end_s
    if duration_s - prev_end >= INST_PAUSE_S:
        secs.append(TimedSection("[outro-short]", "", prev_end))
        conf.append(1.0)
    if not any(s.tag == "[chorus]" for s in secs):
        notes.append(lyr.note("asr_no_chorus", "no block of lines repeats, so no chorus was guessed; mark the chorus "
                              "yourself if there is one"))
    empty = [k + 1 for k, s in enumerate(secs) if s.vocal and not s.text]
    if empty:
        raise TimingError(f"the transcription of section(s) {empty} cannot be written as lyrics; check the model",
                          code="asr_unwritable", sections=str(empty))
    return SongTiming(secs, float(duration_s), "transcribed", min(conf)), conf, notes
