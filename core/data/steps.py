"""One song through the checks and the tokenizer, step by step, each step adding to its `SongReport`.

    text check -> audio check -> timing -> cache key -> (cached | decode -> separate -> encode) -> items

`process_song` runs the steps in that order and stops at the first step that rejects the song;
`plan()` runs the same function with `dry_run=True`, which stops before anything is decoded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from core.audio import io as audio_mod
from core.text import lyrics as lyr
from core.text import fields
from core.timing import resolve as song_timing
from core.timing.sections import as_note, coded
from core.config import StudioConfig
from core.data.inputs import SongInput
from core.data.limits import ModelLimits
from core.data.separate import SeparationPlan
from core.text.description import DEFAULT_MUSICALITY, check_description
from core.fsutil import atomic_torch_save
from core.tokens import CODE_SIZE, EMPTY

SCHEMA_VERSION = 1


@dataclass
class SongReport:
    """What happened to one song: findings (level error | warning | fix | info, in order) and report fields."""
    idx: str
    source: str
    audio: Optional[str]
    findings: list[dict] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)   # lyrics, description, duration_s, key, ...

    @classmethod
    def start(cls, song: SongInput) -> "SongReport":
        rep = cls(song.idx, song.source, song.audio)
        for p in song.problems:
            rep.add("error", p)
        return rep

    def add(self, level: str, message: str, **extra: Any) -> None:
        """One finding; a coded note (core.text.lyrics.Note: lyrics, descriptions, timing) keeps its code and
        values in the finding itself, so report.json and every UI word it by code, never by its text."""
        code = getattr(message, "code", "")
        if code and "code" not in extra:
            extra = {"code": code, "values": lyr.plain_values(getattr(message, "values", {})), "note": True, **extra}
        self.findings.append({"level": level, "message": message, **extra})

    def reason_findings(self) -> list[dict[str, Any]]:
        return reason_findings(self.findings, self.status)

    def messages(self, level: str) -> list[str]:
        return [f["message"] for f in self.findings if f["level"] == level]

    @property
    def rejected(self) -> bool:
        return any(f["level"] == "error" for f in self.findings)

    @property
    def status(self) -> str:
        if self.rejected:
            return "rejected"
        if self.messages("fix"):
            return "fixed"
        return "warning" if self.messages("warning") else "ok"

    def entry(self) -> dict[str, Any]:
        """The report.json entry: status, plain reasons (errors, warnings, then fixes) and the fields."""
        status = self.status
        reasons = [f["message"] for f in self.reason_findings()]
        return {"idx": self.idx, "source": self.source, "status": status, "reasons": reasons, "audio": self.audio,
                **self.fields, "findings": list(self.findings)}


def reason_findings(findings: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    """The findings a song's `reasons` list (report.json) is made of, in its order: errors, warnings, fixes
    (when the song is fixed), notes. A UI words each by its `code` and `values` where it has them."""
    order = ("error", "warning") + (("fix",) if status == "fixed" else ()) + ("info",)
    return [f for level in order for f in findings if f.get("level") == level]


@dataclass
class Context:
    """What every song of one run shares."""
    cfg: StudioConfig
    codec: Any
    limits: ModelLimits
    separation: SeparationPlan
    songs_dir: Path
    static_key: dict
    counters: dict = field(default_factory=lambda: {"encoded": 0, "cached": 0})


def static_key(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> dict:
    """The part of every song key that the run's settings decide."""
    return {"schema": SCHEMA_VERSION, "codec": getattr(codec, "id", type(codec).__name__),
            "codec_version": str(getattr(codec, "version", "")), "max_dur": limits.max_dur,
            "frame_rate": limits.frame_rate, "prompt_frames": limits.prompt_frames,
            "prompt_offset_s": cfg.data.prompt_offset_s, "min_duration_s": cfg.data.min_duration_s,
            "tags": list(limits.structure_tags)}


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# ---- the steps ------------------------------------------------------------------------------
def check_text(song: SongInput, rep: SongReport, limits: ModelLimits) -> None:
    """Lyrics into SongGeneration's grammar (fixes shown beside the original) and the description,
    with the song's musicality tier (metadata key `musicality`) put first in it."""
    if not (song.lyrics or "").strip() and song.lrc:
        return _check_description(song, rep)  # the LRC's lines are the lyrics (check_timing)
    res = None
    if song.lyrics is not None or not song.problems:
        res = lyr.check_lyrics(song.lyrics, limits.structure_tags)
        for level, msgs in (("error", res.errors), ("warning", res.warnings), ("fix", res.changes)):
            for m in msgs:
                rep.add(level, m)
        rep.fields["lyrics"] = res.text  # its token budget is checked per training item (check_timing)
        if res.status == "fixed":
            rep.fields.update(lyrics_original=res.original, lyrics_fixed=res.text, lyrics_changes=res.changes)
    _check_description(song, rep, res.instrumental_only if res is not None and res.ok else None)


def _check_description(song: SongInput, rep: SongReport, instrumental: Optional[bool] = None) -> None:
    desc = check_description(song.description, musicality=song.musicality, instrumental=instrumental)
    for level, msgs in (("warning", desc.warnings), ("fix", desc.changes)):
        for m in msgs:
            rep.add(level, m)
    rep.fields["description"] = desc.text
    rep.fields["musicality"] = desc.tier or DEFAULT_MUSICALITY
    if instrumental:
        rep.fields["pure_music"] = True  # conditioned as upstream's bgm mode (core.text.rules.song_text)
    if desc.unknown:
        rep.fields["unknown_tags"] = desc.unknown
    if desc.musicality:
        rep.fields["musicality_tags"] = desc.musicality


def check_audio(song: SongInput, rep: SongReport, cfg: StudioConfig, limits: ModelLimits,
                separation: SeparationPlan) -> None:
    """The audio header (readable, length, rate, channels) and whether stems can be had; no decoding."""
    if not song.audio or song.problems:
        return
    info = None
    try:
        info = audio_mod.probe(song.audio, song.shown_name)
        # no length limit here: that is the timing step's business (a timed long song is split, not refused)
        header = audio_mod.check_header(info, max_dur=None, min_dur=cfg.data.min_duration_s, name=song.shown_name)
    except audio_mod.AudioError as err:  # missing, empty, unreadable: worded by its own code
        header = []
        rep.add("error", as_note(err))
    rep.findings += [f.to_dict() for f in header]
    if info is not None:
        if 0 < info.duration_s < limits.prompt_len and not any(f.level == "error" for f in header):
            rep.add("warning", lyr.note("prompt_short", "{name} is shorter than the model's {s} s prompt; the rest of "
                                        "its prompt is left empty", name=song.shown_name, s=f"{limits.prompt_len:g}"))
        rep.fields.update(duration_s=round(info.duration_s, 3), sample_rate=info.sample_rate, channels=info.channels)
    if rep.rejected:
        return
    has_stems = bool(song.vocal and song.bgm)
    if not has_stems and separation.kind in ("none", "unavailable"):
        # the plan's sentence as it is, coded by why there is none ("none" by choice, "unavailable": no Demucs)
        rep.add("error", coded(f"separation_{separation.kind}", separation.error) if separation.error
                else lyr.note("no_separation_available", "no separation available"))
    elif (song.vocal is None) != (song.bgm is None):
        rep.add("error", lyr.note("one_stem", "give both stems (vocal and bgm) or neither; with one only the other "
                                  "cannot be derived"))


def check_timing(song: SongInput, rep: SongReport, limits: ModelLimits) -> None:
    """Section timing (saved starts > LRC > none) -> the song's training items.

    A song longer than max_dur is split at section boundaries into items of at most max_dur, each
    with its own sections' lyrics; without timing it is refused with the ways to add timing. Every
    tag the timing changed (length words from measured lengths) is reported as a fix."""
    duration = rep.fields.get("duration_s")
    if duration is None:
        return
    res = song_timing.resolve(gt_lyric=rep.fields.get("lyrics") if (song.lyrics or "").strip() else None,
                              duration_s=float(duration), lrc_path=song.lrc, saved=song.timing,
                              tags=limits.structure_tags, lrc_name=song.lrc_name)
    for m in res.errors:
        rep.add("error", m)
    for m in res.notes + res.changes:
        rep.add("fix", m, kind="timing")
    rep.fields["timing"] = res.source
    if res.timing is not None and not rep.rejected:
        rep.fields["lyrics"] = res.lyrics  # length words measured; the lyrics from the LRC when none were given
        rep.fields["sections"] = [{"tag": s.tag, "start_s": round(s.start_s, 3)} for s in res.timing.sections]
        if song.prompt_start_s is None and song.chorus_start_s is None and res.chorus_start_s is not None:
            song.chorus_start_s = res.chorus_start_s  # the prompt comes from the first chorus
    items, warnings, errors = song_timing.song_items(res, float(duration), limits.max_dur, limits.min_dur,
                                                     song.shown_name)
    untimed = {"code": "untimed_too_long", "values": {"dur": f"{float(duration):.0f}", "max": f"{limits.max_dur:g}"}}
    for m in errors:
        rep.add("error", m, kind="timing", **(untimed if res.timing is None else {}))
    for m in warnings:
        rep.add("warning", m)
    if len(items) > 1 and not rep.rejected:
        rep.add("info", f"longer than the model's {limits.max_dur:g} s: split at section boundaries into {len(items)} "
                        "training items", kind="timing", code="split", values={"max": f"{limits.max_dur:g}", "n": len(items)})
    for i, it in enumerate(items if not rep.rejected else []):  # what each item is conditioned on
        where = lyr.note("lyrics_of_song", "lyrics") if len(items) == 1 else lyr.note(
            "lyrics_of_item", "lyrics of item {k} ({a}-{b} s)", k=i + 1, a=f"{it.start_s:.0f}", b=f"{it.end_s:.0f}")
        over = fields.lyric_token_problem(it.lyrics or "", limits.lyric_max_len, limits.lyric_tokens, where)
        if over:  # the model would cut the rest: the item would train on words it never hears
            rep.add("error", over)
    if not rep.rejected:
        rep.fields["items"] = [it.to_dict() for it in items]


def cache_key(song: SongInput, rep: SongReport, ctx: Context) -> Optional[Path]:
    """The song's key (a hash of everything that shapes its tokens) -> its cache file, or None if unreadable."""
    has_stems = bool(song.vocal and song.bgm)
    try:
        stems_sha = [hash_file(song.vocal), hash_file(song.bgm)] if has_stems else None
        key = hash_json({**ctx.static_key, "audio": hash_file(song.audio), "stems": stems_sha,
                         "separation": "stems" if has_stems else ctx.separation.id,
                         "lyrics": rep.fields.get("lyrics"), "description": rep.fields.get("description"),
                         "prompt_start_s": song.prompt_start_s, "chorus_start_s": song.chorus_start_s})
    except OSError as err:
        rep.add("error", lyr.note("cannot_read", "cannot read {name}: {why}", name=song.shown_name,
                                  why=err.strerror or str(err)))
        return None
    rep.fields["key"] = key
    rep.fields["separation"] = "given stems" if has_stems else ctx.separation.label
    return ctx.songs_dir / key[:2] / f"{key}.pt"


def load_cached(rep: SongReport, path: Path) -> Optional[dict]:
    """A song encoded by an earlier run (its signal findings replayed), or None to encode it again."""
    if not path.is_file():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache file is simply rebuilt
        return None
    rep.fields["cached"] = True
    rep.findings += record["meta"]["signal_findings"]
    rep.fields.update(duration_s=record["meta"]["duration_s"], prompt_start_s=record["meta"]["prompt_start_s"])
    return record


def _device(cfg: StudioConfig) -> str:
    if cfg.data.device != "auto":
        return cfg.data.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def encode(song: SongInput, rep: SongReport, ctx: Context, path: Path) -> Optional[dict]:
    """Decode and check the samples, separate (or read the stems), tokenize, and cache the record."""
    cfg, codec, limits = ctx.cfg, ctx.codec, ctx.limits
    got = check_signal(song, rep)
    if got is None or rep.rejected:
        return None
    wav, sr, signal = got
    target_sr = int(getattr(codec, "sample_rate", audio_mod.CODEC_SAMPLE_RATE))
    mix = audio_mod.to_codec_layout(wav, sr, target_sr)
    del wav
    try:
        if song.vocal and song.bgm:
            vocal = audio_mod.load_for_codec(song.vocal, target_sr)
            bgm = audio_mod.load_for_codec(song.bgm, target_sr)
        else:
            vocal, bgm = ctx.separation.split(mix, target_sr, cfg.data.bgm_mode, _device(cfg), cfg.data.seed)
    except Exception as err:
        why = as_note(err) if isinstance(err, audio_mod.AudioError) else str(err)  # a stem's refusal stays worded
        rep.add("error", lyr.note("separation_failed", "separating vocals from accompaniment failed: {why}", why=why))
        return None
    try:
        with torch.inference_mode():
            codes = codec.encode(mix, vocal, bgm)
        ctx.counters["encoded"] += 1
        codes = torch.as_tensor(codes).long().cpu()
        if codes.dim() == 3:
            codes = codes[0]
        if codes.dim() != 2 or codes.shape[0] != 3 or codes.shape[1] == 0:
            raise ValueError(f"the codec returned shape {tuple(codes.shape)}, expected [3, T]")
        if int(codes.min()) < 0 or int(codes.max()) >= CODE_SIZE:
            raise ValueError(f"the codec returned ids outside 0..{CODE_SIZE - 1} ({int(codes.min())}..{int(codes.max())})")
    except Exception as err:
        rep.add("error", lyr.note("tokenize_failed", "tokenizing with {codec} failed: {why}",
                                  codec=getattr(codec, "id", "the codec"), why=str(err)))
        return None
    duration = mix.shape[-1] / target_sr
    start = song.prompt_start_s if song.prompt_start_s is not None else (
        song.chorus_start_s if song.chorus_start_s is not None else cfg.data.prompt_offset_s)
    start = min(max(0.0, start), max(0.0, duration - limits.prompt_len))
    prompt, prompt_start = extract_prompt(codes, start, limits)
    record = {"codes": codes.to(torch.int16), "prompt": prompt.to(torch.int16),
              "meta": {"duration_s": round(duration, 3), "prompt_start_s": prompt_start, "signal_findings": signal,
                       "codec": getattr(codec, "id", "?"), "separation": rep.fields["separation"]}}
    atomic_torch_save(record, path)
    rep.fields.update(cached=False, duration_s=round(duration, 3), prompt_start_s=prompt_start)
    return record


def check_signal(song: SongInput, rep: SongReport) -> Optional[tuple[torch.Tensor, int, list[dict]]]:
    """Decode the song and check its samples (silence, clipping, ...): (samples, rate, findings), or None
    when it cannot be decoded (said in the report)."""
    try:
        wav, sr = audio_mod.read_audio(song.audio, name=song.shown_name)
    except audio_mod.AudioError as err:
        rep.add("error", as_note(err))
        return None
    signal = [f.to_dict() for f in audio_mod.check_signal(wav, sr, song.shown_name)]
    rep.findings += signal
    return wav, sr, signal


def check_song(song: SongInput, ctx: Context) -> SongReport:
    """One song checked as prepare will check it, nothing written: the steps before the cache (text, audio
    header and stems, timing and items), then the signal checks prepare runs on the samples, streamed
    block by block (core.audio.io.scan_signal: the song is never decoded whole here)."""
    rep = SongReport.start(song)
    check_text(song, rep, ctx.limits)
    check_audio(song, rep, ctx.cfg, ctx.limits, ctx.separation)
    check_timing(song, rep, ctx.limits)
    if "duration_s" in rep.fields and not any(f.get("code") in ("unreadable", "empty") for f in rep.findings):
        try:
            rep.findings += [f.to_dict() for f in audio_mod.scan_signal(song.audio, name=song.shown_name)[0]]
        except audio_mod.AudioError as err:
            rep.add("error", as_note(err))
    return rep


def extract_prompt(codes: torch.Tensor, start_s: float, limits: ModelLimits) -> tuple[torch.Tensor, float]:
    """A [3, prompt_frames] window starting near `start_s` (clamped into the song); short songs are
    padded with EMPTY, the id the model reads as "no prompt here"."""
    p = limits.prompt_frames
    t = codes.shape[1]
    f0 = int(round(max(0.0, start_s) * limits.frame_rate))
    f0 = max(0, min(f0, t - p))
    win = codes[:, f0:f0 + p]
    if win.shape[1] < p:
        win = torch.cat([win, torch.full((codes.shape[0], p - win.shape[1]), EMPTY, dtype=codes.dtype)], 1)
    return win, f0 / limits.frame_rate


def _items(song: SongInput, rep: SongReport, record: dict, limits: ModelLimits) -> list[dict]:
    """The song's training items: its codes cut at the planned windows, each with exactly its own lyrics."""
    codes = record["codes"]
    total = int(codes.shape[1])
    frame_rate = limits.frame_rate
    out = []
    for it in rep.fields["items"]:
        f0 = min(total, int(round(it["start_s"] * frame_rate)))
        f1 = total if it["reaches_end"] else min(total, int(round(it["end_s"] * frame_rate)))
        # the codec makes floor(s*rate)+1 frames: a song of exactly max_dur is one frame over the model's
        # max_frames. That last frame holds under 1/rate s; drop it so the item trains whole, EOS kept.
        f1 = min(f1, f0 + limits.max_frames)
        start_s = f0 / frame_rate
        end_s = float(record["meta"]["duration_s"]) if it["reaches_end"] else f1 / frame_rate
        it["frames"] = f1 - f0  # the report says what was cut, not only what was planned
        out.append({"idx": song.idx, "codes": codes[:, f0:f1].numpy(), "prompt": record["prompt"].numpy(),
                    "lyrics": it["lyrics"], "description": rep.fields["description"], "num_frames": f1 - f0,
                    "duration_s": end_s - start_s, "prompt_start_s": float(record["meta"]["prompt_start_s"]),
                    "key": rep.fields["key"], "audio": song.audio, "start_s": start_s, "end_s": end_s,
                    "reaches_end": bool(it["reaches_end"]), "timing": rep.fields["timing"],
                    "sections": json.dumps(it["sections"])})
    return out


def process_song(song: SongInput, ctx: Context, dry_run: bool = False) -> tuple[SongReport, list[dict]]:
    """One song through the steps -> (its report, its dataset items; [] when rejected). A problem with
    the song itself never raises; `dry_run` (plan) stops before decoding and only says whether it is cached."""
    rep = SongReport.start(song)
    check_text(song, rep, ctx.limits)
    check_audio(song, rep, ctx.cfg, ctx.limits, ctx.separation)
    check_timing(song, rep, ctx.limits)
    if rep.rejected:
        return rep, []
    path = cache_key(song, rep, ctx)
    if path is None:
        return rep, []
    if dry_run:
        rep.fields["cached"] = path.is_file()
        return rep, []
    record = load_cached(rep, path)
    if record is not None:
        ctx.counters["cached"] += 1
    else:
        record = encode(song, rep, ctx, path)
    if record is None or rep.rejected:
        return rep, []
    return rep, _items(song, rep, record, ctx.limits)
