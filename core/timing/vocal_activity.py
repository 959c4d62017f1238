"""A section-timing proposal from where the voice is heard, with no downloaded weights.

The vocal stem (Demucs' output, or a stem the user gave) is loud where someone sings and near
silent elsewhere. `envelope` measures its level every 50 ms, `regions` finds where it is active,
and `propose` matches the lyric's sections to that in order: sung sections to active stretches,
[intro]/[inst]/[outro] to the gaps between them. The result is a *proposal* with a confidence; the
studio shows it and the user accepts it (timing source "proposed") or edits it. Nothing here
changes a song's timing by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from core.text.lyrics import VOCAL_TAGS, note
from core.timing.sections import SongTiming, TimedSection

HOP_S = 0.05          # envelope resolution; section starts are reported to this precision
WIN_S = 0.10          # RMS window (two hops: smooth enough, sharp onsets)
FLOOR_DB = -100.0     # digital silence is clamped here
MIN_GAP_S = 0.2       # quieter stretches shorter than this are consonants/vibrato dips, not pauses
MIN_REGION_S = 0.15   # louder blips shorter than this are clicks or bleed
CLEAR_CONTRAST_DB = 20.0  # singing this far above the gaps counts as fully clear
# Below this confidence a proposal is worse than none: on a mix-like estimate (DEMO split of a full
# arrangement) "activity" covers the whole song and the starts are off by tens of seconds.
USABLE_CONFIDENCE = 0.2


@dataclass
class Envelope:
    db: torch.Tensor      # [frames] level in dB (RMS, re full scale)
    hop_s: float
    duration_s: float

    @property
    def times(self) -> torch.Tensor:
        return torch.arange(self.db.numel(), dtype=torch.float32) * self.hop_s


def envelope(wave: torch.Tensor, sample_rate: int, hop_s: float = HOP_S, win_s: float = WIN_S) -> Envelope:
    """RMS level in dB of a mono or [channels, samples] signal, one value per hop."""
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.dim() > 1:
        x = x.reshape(-1, x.shape[-1]).mean(0)
    hop = max(1, int(round(hop_s * sample_rate)))
    win = max(hop, int(round(win_s * sample_rate)))
    n = x.numel()
    frames = max(1, (n + hop - 1) // hop)
    pad = torch.nn.functional.pad(x, (win // 2, win // 2 + frames * hop - n))
    power = pad.pow(2).unfold(0, win, hop)[:frames].mean(-1)
    db = (10.0 * torch.log10(power.clamp_min(1e-10))).clamp_min(FLOOR_DB)
    return Envelope(db, hop / sample_rate, n / sample_rate)


def _runs(mask: list[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for i, m in enumerate(mask + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


@dataclass
class Activity:
    regions: list[tuple[float, float]]   # active stretches (s)
    threshold_db: float
    contrast_db: float                    # active level minus gap level


def regions(env: Envelope, min_gap_s: float = MIN_GAP_S, min_region_s: float = MIN_REGION_S) -> Activity:
    """Active stretches of the envelope.

    Threshold halfway (in dB) between the gap level (10th percentile) and the singing level (90th
    percentile), so it adapts to a quiet stem and to bleed from the accompaniment; then pauses
    shorter than `min_gap_s` are closed and blips shorter than `min_region_s` dropped."""
    db = env.db
    lo = float(torch.quantile(db, 0.10))
    hi = float(torch.quantile(db, 0.90))
    thr = (lo + hi) / 2
    mask = (db > thr).tolist()
    runs = _runs(mask)
    gap = int(round(min_gap_s / env.hop_s))
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a - merged[-1][1] < gap:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    keep = [(a, b) for a, b in merged if (b - a) * env.hop_s >= min_region_s]
    return Activity([(a * env.hop_s, min(env.duration_s, b * env.hop_s)) for a, b in keep], thr, hi - lo)


@dataclass
class Proposal:
    timing: SongTiming                   # source "proposed"
    confidence: float                    # 0..1, the weakest decision times the stem's clarity
    section_confidence: list[float]
    notes: list[str] = field(default_factory=list)
    unusable: str = ""                   # why no start is offered ("" when the proposal can be used)


def _pick_gaps(gaps: list[tuple[float, float]], k: int) -> tuple[list[tuple[float, float]], float]:
    """The k longest gaps, in time order, and how clearly they beat the next-longest (0..1)."""
    if k <= 0:
        return [], 1.0
    ranked = sorted(gaps, key=lambda g: g[1] - g[0], reverse=True)
    chosen = sorted(ranked[:k])
    if len(ranked) <= k:
        return chosen, 1.0
    weakest = ranked[k - 1][1] - ranked[k - 1][0]
    rival = ranked[k][1] - ranked[k][0]
    return chosen, max(0.0, min(1.0, 1.0 - rival / max(weakest, 1e-6)))


def _split_by_text(a: float, b: float, texts: Sequence[str]) -> list[float]:
    """Start times of len(texts) sections sharing [a, b), in proportion to their text length."""
    w = [max(1, len(t)) for t in texts]
    total = float(sum(w))
    starts, acc = [], 0.0
    for x in w:
        starts.append(a + (b - a) * acc / total)
        acc += x
    return starts


def _sung_runs(sections: Sequence[tuple[str, str]], vocal_tags: frozenset) -> list[list[int]]:
    """[first, last] section indices of each run of consecutive sung sections."""
    runs: list[list[int]] = []
    for i, (tag, _) in enumerate(sections):
        if tag in vocal_tags:
            if runs and runs[-1][1] == i - 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
    return runs


def _run_spans(regs, between: list[tuple[float, float]], n_runs: int, duration_s: float) -> list[tuple[float, float]]:
    """(start, end) of each run's active singing: from the voice's first region through the gaps taken as
    instrumental parts (`between`) to its last; runs beyond the gaps found share the rest of the song."""
    spans: list[tuple[float, float]] = []
    edges = [regs[0][0]] + [x for g in between for x in g] + [regs[-1][1]]
    for r in range(n_runs):
        if 2 * r + 1 < len(edges):
            spans.append((edges[2 * r], edges[2 * r + 1]))
        else:  # not enough gaps: share the rest of the song by text length
            a = spans[-1][1] if spans else 0.0
            spans.append((a, duration_s))
    return spans


def propose(sections: Sequence[tuple[str, str]], activity: Activity, duration_s: float,
            vocal_tags: Iterable[str] = VOCAL_TAGS) -> Proposal:
    """Section starts from vocal activity, matched in order to the lyric's (tag, text) sections.

    Consecutive sung sections form a run; runs are separated by instrumental sections. The R-1
    longest pauses between active stretches separate the R runs (an instrumental section starts
    where the voice stops, the next run where it comes back); inside a run of k sections the k-1
    longest pauses separate them (a section starts where the voice comes back). Where too few
    pauses exist, the rest is split in proportion to text length and marked as a guess."""
    vocal_tags = frozenset(vocal_tags)
    notes: list[str] = []
    n = len(sections)
    starts: list[Optional[float]] = [None] * n
    conf = [1.0] * n
    regs = activity.regions
    clarity = max(0.0, min(1.0, activity.contrast_db / CLEAR_CONTRAST_DB))
    if clarity < 0.5:
        notes.append(note("va_unclear", "the vocal stem is not clearly louder where singing happens ({db} dB "
                          "between singing and gaps); check the proposal by ear", db=f"{activity.contrast_db:.0f}"))
    runs = _sung_runs(sections, vocal_tags)
    if not regs or not runs:
        notes.append(note("va_no_singing", "no singing was found in the vocal stem") if not regs
                     else note("va_no_sung_sections", "the lyrics have no sung sections"))
        t = _split_by_text(0.0, duration_s, [txt or tag for tag, txt in sections])
        timing = SongTiming([TimedSection(tag, txt, s) for (tag, txt), s in zip(sections, t)], duration_s,
                            "proposed", 0.0)
        return Proposal(timing, 0.0, [0.0] * n, notes, _unusable(0.0, activity))
    gaps = [(regs[i][1], regs[i + 1][0]) for i in range(len(regs) - 1)]
    between, c_between = _pick_gaps(gaps, len(runs) - 1)
    if len(between) < len(runs) - 1:
        notes.append(note("va_few_passages", "the lyrics have {n} sung passages separated by instrumental parts but "
                          "the stem has only {found}; the missing boundaries are guesses", n=len(runs),
                          found=len(between) + 1))
        c_between = 0.0
    elif c_between < 0.5:
        notes.append(note("va_weak_breaks", "the pauses taken as instrumental parts are hardly longer than pauses "
                          "inside the singing; the boundaries between sung passages are a guess"))
    spans = _run_spans(regs, between, len(runs), duration_s)
    for r, ((first, last), (a, b)) in enumerate(zip(runs, spans)):
        k = last - first + 1
        inner = [g for g in gaps if g[0] >= a - 1e-9 and g[1] <= b + 1e-9 and g not in between]
        picked, c_inner = _pick_gaps(inner, k - 1)
        c_run = min(c_between, c_inner) if len(runs) > 1 else c_inner
        if len(picked) == k - 1:
            run_starts = [a] + [g[1] for g in picked]
            if k > 1 and c_inner < 0.5:
                notes.append(note("va_weak_pauses", "sections {a}-{b}: the pauses between them are hardly longer than "
                                  "the pauses between lines; their starts are a guess", a=first + 1, b=last + 1))
        else:
            run_starts = _split_by_text(a, b, [sections[i][1] for i in range(first, last + 1)])
            c_run = 0.0
            notes.append(note("va_no_pauses", "sections {a}-{b} are sung without clear pauses between them; "
                              "their starts are split by text length (a guess)", a=first + 1, b=last + 1))
        for i, s in zip(range(first, last + 1), run_starts):
            starts[i] = s
            conf[i] = c_run
        # instrumental sections after this run (up to the next run or the end)
        nxt = runs[r + 1][0] if r + 1 < len(runs) else n
        inst = list(range(last + 1, nxt))
        if inst:
            end = spans[r + 1][0] if r + 1 < len(runs) else duration_s
            for i, s in zip(inst, _split_by_text(b, end, ["x"] * len(inst))):
                starts[i] = s
                conf[i] = c_between if r + 1 < len(runs) else 1.0
    lead = list(range(0, runs[0][0]))
    for i, s in zip(lead, _split_by_text(0.0, spans[0][0], ["x"] * len(lead))):
        starts[i] = s
    if lead and spans[0][0] < 0.5:
        notes.append(note("va_no_intro", "singing starts at once but the lyrics open with an instrumental section"))
        conf[0] = 0.0
    if not lead and spans[0][0] > 0:
        starts[runs[0][0]] = spans[0][0]
    conf = [c * clarity for c in conf]
    secs = [TimedSection(tag, txt, round(float(s), 2)) for (tag, txt), s in zip(sections, starts)]
    total = min(conf) if conf else 0.0
    return Proposal(SongTiming(secs, duration_s, "proposed", total), total, conf, notes, _unusable(total, activity))


def _unusable(confidence: float, activity: Activity) -> str:
    if confidence >= USABLE_CONFIDENCE:
        return ""
    return note("va_unusable", "the vocal estimate cannot place the sections (confidence {conf}: singing is {db} dB "
                "above the quiet parts, the breaks between sections are not clear in it); no starts are proposed "
                "from it. Use forced alignment of the lyrics, an LRC file, a SongPrep result, or give the song's "
                "vocal stem", conf=f"{confidence:.2f}", db=f"{activity.contrast_db:.0f}")


def propose_from_stem(sections: Sequence[tuple[str, str]], vocal: torch.Tensor, sample_rate: int,
                      duration_s: Optional[float] = None) -> tuple[Proposal, Envelope, Activity]:
    """envelope -> regions -> propose, for one vocal stem."""
    env = envelope(vocal, sample_rate)
    act = regions(env)
    return propose(sections, act, float(duration_s if duration_s is not None else env.duration_s)), env, act


def vocal_stem(audio_path: str, vocal_path: Optional[str] = None, runtime_path: Optional[str] = None,
               device: str = "cpu") -> tuple[torch.Tensor, int, str]:
    """The vocal stem to measure -> (wave [channels, N], sample rate, what it is).

    The song's own stem when given; else Demucs (htdemucs from the SongGeneration runtime, as prepare
    uses); else the DEMO split (mid/side + vocal band), which is rough and labelled so."""
    from core.audio import io as audio_mod

    if vocal_path:
        wav, sr = audio_mod.read_audio(vocal_path)
        return wav, sr, note("va_stem_given", "the song's vocal stem")
    wav, sr = audio_mod.read_audio(audio_path)
    ckpt = None
    if runtime_path:
        from core.audio.separation import find_demucs_checkpoint
        ckpt = find_demucs_checkpoint(runtime_path)
    if ckpt:
        from core.audio.separation import Separator
        yaml_path = Path(ckpt).with_suffix(".yaml")
        sep = Separator.from_checkpoint(str(ckpt), str(yaml_path) if yaml_path.is_file() else None, device=device)
        vocal, _ = sep.separate(audio_mod.to_stereo(wav), sr)
        return vocal.float().cpu(), sr, note("va_stem_demucs", "Demucs vocals ({ckpt})", ckpt=Path(ckpt).name)
    from core.codec.demo import demo_split
    vocal, _ = demo_split(audio_mod.to_stereo(wav), sr)
    return vocal, sr, note("va_stem_demo", "DEMO vocal estimate (mid/side + vocal band, not Demucs): check the "
                           "proposal by ear")
