"""The run: inputs -> each song through the steps (core.data.steps) -> split -> a `datasets` cache.

`prepare` and `plan` walk the same loop (`_walk`); `plan` is its dry run (no decoding, nothing written).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from core.config import StudioConfig
from core.data.inputs import collect_inputs
from core.data.limits import DataError, check_frame_rate, model_limits
from core.data.separate import plan_separation
from core.data.steps import SCHEMA_VERSION, Context, SongReport, hash_json, process_song, static_key
from core.text import lyrics as lyr
from core.fsutil import atomic_write_json, atomic_write_text

Progress = Optional[Callable[[int, int, str], None]]


@dataclass
class PrepareResult:
    dataset_dir: Optional[Path]
    report: list[dict]
    summary: dict
    report_path: Optional[Path] = None

    @property
    def ok(self) -> bool:
        return self.dataset_dir is not None


def split_items(idxs: list[str], val_fraction: float, seed: int) -> set[str]:
    """Validation idx set: floor(n * val_fraction) songs, but at least one whenever there are two or
    more songs and val_fraction > 0 (a validation loss needs a held-out song; 0.1 x 5 songs would hold
    none), and at most n - 1 so train is never empty; picked by a seeded hash of idx, so adding a
    song does not reshuffle the others."""
    n = len(idxs)
    n_val = int(math.floor(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(0, n - 1))
    order = sorted(idxs, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return set(order[:n_val])


def _features():
    from datasets import Features, List, Value
    return Features({
        "idx": Value("string"),
        "codes": List(List(Value("int16")), length=3),
        "prompt": List(List(Value("int16")), length=3),
        "lyrics": Value("string"),
        "description": Value("string"),
        "num_frames": Value("int32"),
        "duration_s": Value("float32"),
        "prompt_start_s": Value("float32"),
        # where the item sits in its song and what it is conditioned on (core.timing.resolve)
        "start_s": Value("float32"),
        "end_s": Value("float32"),
        "reaches_end": Value("bool"),
        "timing": Value("string"),      # lrc | edited | proposed | none
        "sections": Value("string"),    # JSON [{tag, start_s (from the item's start)}]; [] without timing
    })


def _write_dataset(items: list[dict], val: set[str], out_dir: Path, manifest: list[dict]) -> None:
    import datasets
    feats = _features()
    cols = list(feats)

    def build(rows: list[dict]):
        data = {c: [r[c] for r in rows] for c in cols}
        return datasets.Dataset.from_dict(data, features=feats)

    train_rows = [r for r in items if r["idx"] not in val]
    val_rows = [r for r in items if r["idx"] in val]
    train = build(train_rows)
    # An empty split cannot be built from an empty dict; select([]) keeps the schema.
    validation = build(val_rows) if val_rows else train.select([])
    dd = datasets.DatasetDict(train=train, validation=validation)
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):  # left by an interrupted earlier run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        dd.save_to_disk(str(tmp), num_shards={"train": 1, "validation": 1})
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    (tmp / "manifest.jsonl").write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in manifest),
                                        encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _context(cfg: StudioConfig, codec: Any) -> Context:
    limits = model_limits(cfg)
    check_frame_rate(cfg, codec, limits)
    return Context(cfg, codec, limits, plan_separation(cfg, codec, limits), cfg.prepared_dir() / ".songs",
                   static_key(cfg, codec, limits))


def _duplicate(song, first: str) -> SongReport:
    rep = SongReport(song.idx, song.source, song.audio)
    rep.add("error", lyr.note("duplicate_idx", "duplicate idx '{idx}' (already used by {first}); give every song a "
                              "unique idx", idx=song.idx, first=first))
    return rep


def _walk(ctx: Context, songs: list, dry_run: bool, progress: Progress = None) -> tuple[list[dict], list[dict]]:
    """Every song through the steps -> (report entries, dataset items). One bad song never stops the others."""
    report, items, seen = [], [], {}
    for i, song in enumerate(songs):
        if progress:
            progress(i, len(songs), f"{song.idx}")
        if song.idx in seen:
            report.append(_duplicate(song, seen[song.idx]).entry())
            continue
        seen[song.idx] = song.source.split(" ", 1)[0] or song.idx
        try:
            rep, song_items = process_song(song, ctx, dry_run=dry_run)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a bug or an odd file must not stop the other songs
            rep, song_items = SongReport(song.idx, song.source, song.audio), []
            rep.add("error", lyr.note("song_unexpected", "unexpected error while preparing this song: {kind}: {why}",
                                      kind=type(err).__name__, why=str(err)))
        report.append(rep.entry())
        items += song_items
    return report, items


def _codec_files(cfg: StudioConfig) -> None:
    """The official codec's files, checked before any song: a missing one is one DataError for the whole
    run (naming the files and the fix), not the same failure repeated as every song's rejection."""
    from core.codec.official import OfficialCodec, WeightFileError

    try:
        OfficialCodec.resolve_files(cfg)
    except WeightFileError as err:
        raise DataError(str(err)[0].upper() + str(err)[1:], code="data_codec_files", why=str(err)) from None


def check_context(cfg: StudioConfig, codec: Any = None) -> Context:
    """What the steps share, for checking songs without encoding (plan, the studio's song check): the codec's
    class attributes are all they need, so no weights are loaded."""
    if codec is None:
        if cfg.data.codec == "demo":
            from core.codec.demo import DemoCodec as codec
        else:
            from core.codec.official import OfficialCodec as codec
    return _context(cfg, codec)


def plan(cfg: StudioConfig, items: Optional[Iterable[Any]] = None, codec: Any = None) -> dict:
    """What `prepare` would do, without decoding or encoding anything: {"cached": [idx], "to_encode": [idx],
    "rejected": [idx], "report": [entries so far], "separation": label}. Checks lyrics, descriptions and
    audio headers, and hashes the files (cheap)."""
    if codec is None and cfg.data.codec != "demo":
        _codec_files(cfg)
    ctx = check_context(cfg, codec)
    report, _ = _walk(ctx, collect_inputs(cfg, items), dry_run=True)
    return {"cached": [e["idx"] for e in report if e["status"] != "rejected" and e.get("cached")],
            "to_encode": [e["idx"] for e in report if e["status"] != "rejected" and not e.get("cached")],
            "rejected": [e["idx"] for e in report if e["status"] == "rejected"],
            "report": report, "separation": ctx.separation.label,
            "separation_info": ctx.separation.info(cfg.data.bgm_mode), "dataset_dir": None,
            "model": ctx.limits.to_dict()}


def prepare(cfg: StudioConfig, items: Optional[Iterable[Any]] = None, progress: Progress = None,
            codec: Any = None) -> PrepareResult:
    """Validate, separate and tokenize songs into the cache; see the package doc."""
    t0 = time.time()
    if codec is None:
        from core.codec import get_codec
        if cfg.data.codec == "official":
            _codec_files(cfg)
        codec = get_codec(cfg)
    ctx = _context(cfg, codec)
    songs = collect_inputs(cfg, items)
    report, items_out = _walk(ctx, songs, dry_run=False, progress=progress)
    total = len(songs)
    if progress:
        progress(total, total, "writing the dataset")
    counts = {s: sum(1 for e in report if e["status"] == s) for s in ("ok", "fixed", "warning", "rejected")}
    summary: dict[str, Any] = {
        "total": total, **counts, "prepared": len(items_out), "encoded": ctx.counters["encoded"],
        "cached": ctx.counters["cached"], "audio_seconds": round(sum(it["duration_s"] for it in items_out), 3),
        "codec": getattr(codec, "id", "?"), "codec_is_demo": bool(getattr(codec, "is_demo", False)),
        "separation": ctx.separation.label, "separation_info": ctx.separation.info(cfg.data.bgm_mode),
        "model": ctx.limits.to_dict(),
    }
    prepared_dir = cfg.prepared_dir()
    dataset_dir = None
    if items_out:
        # the split is by song: all items of a long song land on the same side
        val = split_items(list(dict.fromkeys(it["idx"] for it in items_out)), cfg.data.val_fraction, cfg.data.seed)
        ds_hash = hash_json({"schema": SCHEMA_VERSION, "val": sorted(val), "items": [
            [it["idx"], it["key"], it["start_s"], it["end_s"], it["lyrics"], it["sections"], it["timing"]]
            for it in items_out]})[:16]
        dataset_dir = prepared_dir / ds_hash
        for e in report:
            if e["status"] != "rejected":
                e["split"] = "validation" if e["idx"] in val else "train"
        summary["train"] = sum(1 for it in items_out if it["idx"] not in val)
        summary["validation"] = len(items_out) - summary["train"]
        summary["songs_split"] = sum(1 for e in report if len(e.get("items") or []) > 1)
        if not val:
            n_songs = len({it["idx"] for it in items_out})
            summary["validation_note"] = (
                "no validation song: with one song everything trains; add a second song to get a validation loss"
                if n_songs == 1 else "no validation song: the validation fraction is 0")
        if not (dataset_dir / "dataset_dict.json").is_file():
            manifest = [{"path": it["audio"], "gt_lyric": it["lyrics"], "descriptions": it["description"],
                         "idx": it["idx"], "split": "validation" if it["idx"] in val else "train",
                         "num_frames": it["num_frames"], "duration_s": it["duration_s"], "key": it["key"],
                         "start_s": it["start_s"], "end_s": it["end_s"], "lyrics": it["lyrics"],
                         "reaches_end": it["reaches_end"], "timing": it["timing"]}
                        for it in items_out]
            _write_dataset(items_out, val, dataset_dir, manifest)
    summary["elapsed_s"] = round(time.time() - t0, 3)
    doc = {"dataset_dir": str(dataset_dir) if dataset_dir else None, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "summary": summary, "songs": report}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    report_path = prepared_dir / "last-report.json"
    if dataset_dir is not None:
        report_path = atomic_write_text(dataset_dir / "report.json", text)
        atomic_write_json(prepared_dir / "latest.json", {"dataset_dir": str(dataset_dir)})
    atomic_write_text(prepared_dir / "last-report.json", text)
    if progress:
        progress(total, total, "done")
    return PrepareResult(dataset_dir, report, summary, report_path)


def token_budget(report: list[dict], frame_rate: int, max_frames: int) -> list[dict]:
    """What prepare makes (or, from a plan's report, will make) of each usable song, item by item: its window,
    its audio tokens per stream (the frames cut; planned from the window before encoding) and whether they
    fit the model's context. Items are planned within max_dur, so a song longer than that appears as
    several section-aligned items, never as one cropped song."""
    rows = []
    for e in report:
        items = (e.get("items") or []) if e.get("status") != "rejected" else []
        for k, it in enumerate(items):
            frames = it.get("frames")
            if frames is None:
                frames = int(round(it["end_s"] * frame_rate)) - int(round(it["start_s"] * frame_rate))
            rows.append({"idx": e["idx"], "item": k + 1, "items": len(items), "start_s": it["start_s"],
                         "end_s": it["end_s"], "frames": int(frames), "context": int(max_frames),
                         "fits": frames <= max_frames})
    return rows


def load_prepared(dataset_dir: str | Path):
    """The DatasetDict ("train", "validation"); codes/prompt come back as int64 torch tensors [3, T] / [3, P]."""
    import datasets
    p = Path(dataset_dir)
    if not (p / "dataset_dict.json").is_file():
        raise DataError(f"{p} is not a prepared dataset (no dataset_dict.json); run `python -m core prepare` first",
                        code="data_not_prepared", path=str(p))
    dd = datasets.load_from_disk(str(p))
    dd.set_format("torch", columns=["codes", "prompt"], output_all_columns=True)
    return dd


def format_summary(result: PrepareResult, width: int = 100) -> str:
    s = result.summary
    lines = []
    w_idx = min(24, max([3] + [len(str(e["idx"])) for e in result.report]))
    lines.append(f"{'idx':<{w_idx}}  {'status':<8}  reason")
    lines.append("-" * min(width, w_idx + 60))
    for e in result.report:
        reasons = e.get("reasons") or []
        first = reasons[0] if reasons else ""
        more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        room = max(20, width - w_idx - 14 - len(more))
        first = first if len(first) <= room else first[: room - 3] + "..."
        lines.append(f"{str(e['idx'])[:w_idx]:<{w_idx}}  {e['status']:<8}  {first}{more}")
    lines.append("")
    lines.append(f"songs: {s['total']}  ok: {s['ok']}  fixed: {s['fixed']}  warning: {s['warning']}  "
                 f"rejected: {s['rejected']}  |  prepared: {s['prepared']} items (train {s.get('train', 0)}, "
                 f"validation {s.get('validation', 0)}; {s.get('songs_split', 0)} long songs split at section "
                 f"boundaries), encoded {s['encoded']}, from cache {s['cached']}, "
                 f"{s['audio_seconds']:.0f} s of audio in {s['elapsed_s']:.1f} s")
    codec_label = s["codec"] + (" (DEMO codec, not SongGeneration's tokenizer)" if s["codec_is_demo"] else "")
    lines.append(f"codec: {codec_label}  |  separation: {s['separation']}")
    if result.dataset_dir:
        lines.append(f"dataset: {result.dataset_dir}")
    lines.append(f"report: {result.report_path}")
    return "\n".join(lines)
