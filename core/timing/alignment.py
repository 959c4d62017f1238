"""Line-level timing from a CTC model's emission, with torchaudio's forced aligner.

A user who has a CTC alignment model (for example torchaudio's MMS forced-alignment bundle,
downloaded on their own machine) can refine section timing to the start of every lyric line:
run the model on the vocal stem to get an emission (log-probabilities per frame and token), then
`align_lines` finds, with `torchaudio.functional.forced_align`, the frames where each line is sung,
and `refine_timing` moves each sung section's start to its first line. The studio never downloads
a model; `mms_emission` is there for a user who asks for it.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import torch
import torchaudio.functional as AF

from core.timing.sections import SongTiming, TimedSection, TimingError


@dataclass
class LineSpan:
    line: int
    start_frame: int
    end_frame: int          # exclusive
    start_s: float
    end_s: float
    score: float            # mean probability of the line's tokens along the path (0..1)


def tokenize_line(text: str, dictionary: Mapping[str, int]) -> list[int]:
    """Characters of `text` that the model knows (lower-cased, accents removed), as ids.

    Spaces and punctuation are dropped: an aligner such as MMS_FA spells words letter by letter and
    the blank between letters absorbs the pauses."""
    t = unicodedata.normalize("NFKD", text.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    return [dictionary[c] for c in t if c in dictionary and not c.isspace()]


def align_lines(emission: torch.Tensor, lines: Sequence[Sequence[int]], frame_s: float, blank: int = 0) -> list[LineSpan]:
    """Frames where each line (a list of token ids) is sung, by CTC forced alignment.

    `emission`: [frames, tokens] or [1, frames, tokens] log-probabilities (log_softmax output).
    Lines without tokens are skipped (no span is returned for them). Raises TimingError when the
    emission is too short for the text."""
    em = emission if emission.dim() == 3 else emission.unsqueeze(0)
    em = em.float().cpu()
    flat: list[int] = []
    owner: list[int] = []
    for i, toks in enumerate(lines):
        flat += [int(t) for t in toks]
        owner += [i] * len(toks)
    if not flat:
        return []
    repeats = sum(1 for a, b in zip(flat, flat[1:]) if a == b)
    if em.shape[1] < len(flat) + repeats:
        raise TimingError(f"the emission has {em.shape[1]} frames, too few for {len(flat)} lyric tokens; "
                          "is it the emission of the whole vocal stem?")
    targets = torch.tensor([flat], dtype=torch.int32)
    path, scores = AF.forced_align(em, targets, blank=blank)
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=blank)
    if len(spans) != len(flat):  # merge_tokens returns one span per target token on a valid path
        raise TimingError(f"alignment returned {len(spans)} token spans for {len(flat)} tokens")
    out: list[LineSpan] = []
    for i in sorted(set(owner)):
        idx = [k for k, o in enumerate(owner) if o == i]
        first, last = spans[idx[0]], spans[idx[-1]]
        score = sum(spans[k].score * (spans[k].end - spans[k].start) for k in idx) / \
            max(1, sum(spans[k].end - spans[k].start for k in idx))
        out.append(LineSpan(i, first.start, last.end, first.start * frame_s, last.end * frame_s, float(score)))
    return out


def refine_timing(timing: SongTiming, line_spans: Sequence[LineSpan], line_owner: Sequence[int]) -> SongTiming:
    """Sung sections start at their first aligned line; line times are replaced by the aligned ones.

    `line_owner[k]` is the section index of line k (the order used for `align_lines`). Instrumental
    sections keep their start unless it would fall after the next section's new start, in which
    case it moves to the end of the previous aligned line."""
    by_section: dict[int, list[LineSpan]] = {}
    for sp in line_spans:
        by_section.setdefault(line_owner[sp.line], []).append(sp)
    secs = []
    for i, s in enumerate(timing.sections):
        got = by_section.get(i)
        if got and s.vocal:
            texts = [x for _, x in s.lines] or [""] * len(got)
            lines = [(sp.start_s, texts[k] if k < len(texts) else "") for k, sp in enumerate(got)]
            secs.append(TimedSection(s.tag, s.text, got[0].start_s, lines))
        else:
            secs.append(TimedSection(s.tag, s.text, s.start_s, list(s.lines)))
    # keep the order: an instrumental section sits between the previous line's end and the next start
    ends = {line_owner[sp.line]: sp.end_s for sp in line_spans}
    for i in range(1, len(secs) - 1):
        if not secs[i].vocal and secs[i].start_s >= secs[i + 1].start_s and (i - 1) in ends:
            secs[i].start_s = ends[i - 1]
    return SongTiming(secs, timing.duration_s, timing.source)


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


def mms_emission(vocal: torch.Tensor, sample_rate: int, device: str = "cpu",
                 dl_kwargs: Optional[dict] = None) -> tuple[torch.Tensor, float, dict[str, int]]:
    """Emission of torchaudio's MMS_FA model for a vocal stem -> (log-probs [frames, tokens], frame_s,
    dictionary). The model's weights are fetched by torchaudio on first use (about 1.2 GB); call this
    only when the user asked for it."""
    import torchaudio

    bundle = torchaudio.pipelines.MMS_FA
    model = bundle.get_model(with_star=False, dl_kwargs=dl_kwargs).to(device).eval()
    x = torch.as_tensor(vocal, dtype=torch.float32)
    x = x.reshape(-1, x.shape[-1]).mean(0, keepdim=True)
    if sample_rate != bundle.sample_rate:
        x = AF.resample(x, sample_rate, bundle.sample_rate)
    with torch.inference_mode():
        emission, _ = model(x.to(device))
    frames = emission.shape[1]
    frame_s = x.shape[-1] / bundle.sample_rate / max(1, frames)
    dictionary = bundle.get_dict(star=None)
    return emission[0].float().cpu().log_softmax(-1), frame_s, dictionary
