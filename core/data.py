"""Songs in, a checked and tokenized `datasets` cache out.

    result = prepare(cfg)                 # or prepare(cfg, items=[{...}, ...]) from the studio
    ds = load_prepared(result.dataset_dir)  # DatasetDict: "train", "validation"

Inputs (one of, in this order):
- `items`: a list of dicts or objects with `audio` (or `path`), `lyrics` (or `gt_lyric`),
  `description` (or `descriptions`), optional `idx`, `vocal` / `bgm` stem paths (skip separation),
  `prompt_start_s` (where the 10 s prompt starts) or `chorus_start_s` (first chorus time).
- `paths.metadata_path`: metadata.jsonl in the seed format {path, gt_lyric, descriptions, idx} (+ the
  optional keys above). A relative `path` is looked up next to the jsonl, in `paths.raw_data_dir`,
  then in the current folder.
- `paths.raw_data_dir`: a folder of audio files; `NAME.txt` holds NAME's lyrics, `NAME.desc.txt`
  its description, `NAME.vocal.<ext>` / `NAME.bgm.<ext>` optional stems.

Every input song gets one report entry (status ok | fixed | warning | rejected, with plain
reasons); one bad song never stops the others, and user files are only ever read.

Cache layout under `cfg.prepared_dir()`:
- `.songs/<key>.pt`: one file per song (int16 codes + prompt + QC results), written atomically. The
  key hashes everything that shapes the item: audio and stem bytes, final lyrics and description,
  codec id/version, separation, model timing, prompt settings. Unchanged songs are never encoded
  again; an interrupted run resumes from the songs already written.
- `<hash>/`: the DatasetDict (save_to_disk) + `manifest.jsonl` (seed format) + `report.json`;
  `<hash>` covers the song keys and the split settings.
- `latest.json`, `last-report.json`: the most recent run (also when nothing could be prepared).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

from core import audio as audio_mod
from core import lyrics as lyr
from core.config import StudioConfig

SCHEMA_VERSION = 1
EMPTY_TOKEN = 16385
LYRIC_EXTS = (".txt",)
STEM_SUFFIXES = {"vocal": ("vocal", "vocals"), "bgm": ("bgm", "accompaniment", "instrumental")}
DESC_SUFFIXES = ("desc", "description")

Progress = Optional[Callable[[int, int, str], None]]


class DataError(ValueError):
    """A prepare run that cannot start; the message names the file or config key to fix."""


# ----------------------------------------------------------------------------------------------
# model limits
# ----------------------------------------------------------------------------------------------
@dataclass
class ModelLimits:
    version: str
    max_dur: float
    prompt_len: float
    frame_rate: int
    structure_tags: tuple[str, ...]
    runtime_root: Optional[Path] = None
    is_demo: bool = False

    @property
    def prompt_frames(self) -> int:
        return int(round(self.prompt_len * self.frame_rate))

    @property
    def max_frames(self) -> int:
        return int(round(self.max_dur * self.frame_rate))

    def to_dict(self) -> dict:
        return {"version": self.version, "max_dur": self.max_dur, "prompt_len": self.prompt_len,
                "frame_rate": self.frame_rate, "prompt_frames": self.prompt_frames, "max_frames": self.max_frames,
                "is_demo": self.is_demo, "runtime_root": str(self.runtime_root) if self.runtime_root else None}


def model_limits(cfg: StudioConfig) -> ModelLimits:
    """max_dur / prompt_len / frame rate / tags of the model being finetuned (paths.base_model_path)."""
    from core.model import describe_checkpoint, resolve_base_model  # the model core's one source of truth

    # The demo model carries its own runtime (in the workspace); paths.runtime_path may then point at
    # a SongGeneration folder used only for Demucs.
    runtime = None if cfg.paths.base_model_path == "demo" else cfg.paths.runtime_path
    d = describe_checkpoint(resolve_base_model(cfg), runtime)
    return ModelLimits(str(d.version), float(d.max_dur), float(d.prompt_len), int(d.frame_rate),
                       tuple(d.structure_tags), Path(d.runtime_root) if d.runtime_root else None, bool(d.is_demo))


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
@dataclass
class SongInput:
    idx: Optional[str]
    audio: Optional[str]
    lyrics: Optional[str] = None
    description: Optional[str] = None
    vocal: Optional[str] = None
    bgm: Optional[str] = None
    prompt_start_s: Optional[float] = None
    chorus_start_s: Optional[float] = None
    source: str = ""
    problems: list[str] = field(default_factory=list)   # found while reading the inputs: song is rejected


def _first(d: dict, *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def _float_or_none(v: Any, name: str, problems: list[str]) -> Optional[float]:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        problems.append(f"'{name}' must be a number of seconds, got {v!r}")
        return None


def read_text_file(path: Path) -> str:
    """Lyric/description files: UTF-8 (with or without BOM) or UTF-16 with BOM; anything else is refused
    rather than guessed, since a wrong guess silently puts garbage into training."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name} is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start}); "
                        "open it in a text editor and save it as UTF-8") from None


def _resolve_audio(p: str, bases: list[Path]) -> tuple[Optional[Path], list[Path]]:
    path = Path(p).expanduser()
    if path.is_absolute():
        return (path if path.is_file() else None), [path]
    tried = []
    for b in bases:
        cand = (b / path)
        tried.append(cand)
        if cand.is_file():
            return cand, tried
    return None, tried


def load_metadata(path: str | Path, raw_data_dir: Optional[str | Path] = None) -> list[SongInput]:
    """Seed-format metadata.jsonl -> songs. Broken lines, missing fields and missing files become
    songs with `problems` (rejected with that reason); duplicates are caught later by idx."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"paths.metadata_path: {path} does not exist; point it at your metadata.jsonl")
    bases = [path.parent.resolve()] + ([Path(raw_data_dir).expanduser().resolve()] if raw_data_dir else []) + [Path.cwd()]
    out: list[SongInput] = []
    try:
        text = read_text_file(path)
    except DataError as err:
        raise DataError(f"paths.metadata_path: {err}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        src = f"{path.name}:{n}"
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            out.append(SongInput(f"line-{n}", None, source=src, problems=[
                f"line {n} of {path.name} is not valid JSON ({str(err)[:80]}); each line must be one object like "
                '{"path": ..., "gt_lyric": ..., "descriptions": ..., "idx": ...}']))
            continue
        problems: list[str] = []
        idx = d.get("idx")
        if idx is None or str(idx).strip() == "":
            problems.append(f"line {n} has no 'idx' (a unique name for the song)")
            idx = f"line-{n}"
        raw_path = d.get("path")
        audio = None
        if not raw_path:
            problems.append(f"line {n} has no 'path' (the audio file)")
        else:
            found, tried = _resolve_audio(str(raw_path), bases)
            if found is None:
                problems.append(f"audio file '{raw_path}' not found (looked in: {', '.join(str(t) for t in tried)})")
            audio = str(found or raw_path)
        if "gt_lyric" not in d or d.get("gt_lyric") is None:
            problems.append(f"line {n} has no 'gt_lyric' (the lyrics)")
        stems: dict[str, Optional[str]] = {}
        for key, names in (("vocal", ("vocal", "vocal_path")), ("bgm", ("bgm", "bgm_path", "accompaniment"))):
            v = _first(d, *names)
            if v:
                found, tried = _resolve_audio(str(v), bases)
                if found is None:
                    problems.append(f"{key} stem '{v}' not found (looked in: {', '.join(str(t) for t in tried)})")
                stems[key] = str(found or v)
        out.append(SongInput(
            str(idx), audio, d.get("gt_lyric"), _first(d, "descriptions", "description"),
            stems.get("vocal"), stems.get("bgm"),
            _float_or_none(d.get("prompt_start_s"), "prompt_start_s", problems),
            _float_or_none(d.get("chorus_start_s"), "chorus_start_s", problems),
            source=f"{src} {line.strip()[:300]}", problems=problems))
    return out


def _split_name(p: Path) -> tuple[str, Optional[str]]:
    """song.vocal.wav -> ("song", "vocal"); song.wav -> ("song", None)."""
    stem = p.stem
    if "." in stem:
        base, suffix = stem.rsplit(".", 1)
        for kind, names in STEM_SUFFIXES.items():
            if suffix.lower() in names:
                return base, kind
    return stem, None


def scan_folder(folder: str | Path) -> list[SongInput]:
    """A folder of songs: NAME.wav (any libsndfile format) + NAME.txt lyrics, optional NAME.desc.txt and
    NAME.vocal.wav / NAME.bgm.wav stems. Subfolders are searched too."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"paths.raw_data_dir: {root} is not a folder; point it at the folder holding your songs")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in audio_mod.AUDIO_EXTENSIONS)
    songs: dict[Path, SongInput] = {}
    stems: list[tuple[Path, str, str]] = []
    for p in files:
        base, kind = _split_name(p)
        if kind:
            stems.append((p.parent / base, kind, str(p)))
            continue
        problems: list[str] = []
        lyrics = desc = None
        lyr_path = p.with_suffix(".txt")
        if not lyr_path.is_file():
            problems.append(f"no lyrics file {lyr_path.name} next to {p.name}; write the lyrics into it "
                            "(for an instrumental: [intro-short] ; [inst-long] ; [outro-short])")
        else:
            try:
                lyrics = read_text_file(lyr_path)
            except DataError as err:
                problems.append(str(err))
        for suffix in DESC_SUFFIXES:
            dp = p.parent / f"{p.stem}.{suffix}.txt"
            if dp.is_file():
                try:
                    desc = read_text_file(dp).strip()
                except DataError as err:
                    problems.append(str(err))
                break
        songs[p.parent / p.stem] = SongInput(p.stem, str(p), lyrics, desc, source=str(p), problems=problems)
    for key, kind, sp in stems:
        if key in songs:
            setattr(songs[key], kind, sp)
    return list(songs.values())


def coerce_items(items: Iterable[Any]) -> list[SongInput]:
    """The studio's upload form: dicts or objects with audio/lyrics/description (+ idx, vocal, bgm)."""
    out: list[SongInput] = []
    for i, it in enumerate(items):
        if isinstance(it, SongInput):
            out.append(it)
            continue
        d = it if isinstance(it, dict) else {k: getattr(it, k) for k in dir(it) if not k.startswith("_")}
        problems: list[str] = []
        audio = _first(d, "audio", "path", "audio_path")
        if audio is None:
            problems.append(f"song #{i + 1} has no audio file")
        elif not Path(str(audio)).expanduser().is_file():
            problems.append(f"audio file '{audio}' not found")
        idx = _first(d, "idx", "name")
        if idx is None and audio is not None:
            idx = Path(str(audio)).stem
        lyrics = _first(d, "lyrics", "gt_lyric")
        stems = {}
        for key, names in (("vocal", ("vocal", "vocal_path")), ("bgm", ("bgm", "bgm_path", "accompaniment"))):
            v = _first(d, *names)
            if v:
                if not Path(str(v)).expanduser().is_file():
                    problems.append(f"{key} stem '{v}' not found")
                stems[key] = str(Path(str(v)).expanduser())
        out.append(SongInput(
            str(idx if idx is not None else f"song-{i + 1}"), str(Path(str(audio)).expanduser()) if audio else None,
            lyrics, _first(d, "description", "descriptions"), stems.get("vocal"), stems.get("bgm"),
            _float_or_none(d.get("prompt_start_s"), "prompt_start_s", problems),
            _float_or_none(d.get("chorus_start_s"), "chorus_start_s", problems),
            source=str(audio) if audio else f"item #{i + 1}", problems=problems))
    return out


def collect_inputs(cfg: StudioConfig, items: Optional[Iterable[Any]] = None) -> list[SongInput]:
    if items is not None:
        return coerce_items(items)
    if cfg.paths.metadata_path:
        return load_metadata(cfg.paths.metadata_path, cfg.paths.raw_data_dir)
    if cfg.paths.raw_data_dir:
        return scan_folder(cfg.paths.raw_data_dir)
    raise DataError("nothing to prepare: set paths.metadata_path (a metadata.jsonl) or paths.raw_data_dir "
                    "(a folder of songs with same-named .txt lyrics), or upload songs in the studio")


# ----------------------------------------------------------------------------------------------
# separation
# ----------------------------------------------------------------------------------------------
@dataclass
class SeparationPlan:
    kind: str                 # "demucs" | "demo" | "none" | "unavailable"
    id: str                   # goes into song keys
    label: str                # what the report shows
    checkpoint: Optional[Path] = None
    error: Optional[str] = None
    _separator: Any = None

    def split(self, mix: torch.Tensor, sr: int, bgm_mode: str, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "demo":
            from core.codec.demo import demo_split
            return demo_split(mix, sr)
        if self.kind == "demucs":
            if self._separator is None:
                from core.separation import Separator
                yaml_path = self.checkpoint.with_suffix(".yaml")
                self._separator = Separator.from_checkpoint(str(self.checkpoint),
                                                            str(yaml_path) if yaml_path.is_file() else None,
                                                            device=device, seed=seed)
            vocal, bgm = self._separator.separate(mix, sr, bgm_mode=bgm_mode)
            return vocal.float().cpu(), bgm.float().cpu()
        raise RuntimeError(self.error or "no separation available")


def _runtime_roots(cfg: StudioConfig, limits: ModelLimits) -> list[Path]:
    roots = []
    for r in (cfg.paths.runtime_path, limits.runtime_root):
        if r and Path(r) not in roots:
            roots.append(Path(r).expanduser())
    return roots


def plan_separation(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> SeparationPlan:
    mode = cfg.data.separation
    bgm = cfg.data.bgm_mode
    if mode == "none":
        return SeparationPlan("none", "none", "none (per-song stems required)",
                              error="this song has no vocal/bgm stems and data.separation is 'none'; give the "
                                    "song's 'vocal' and 'bgm' files or set data.separation to auto")
    if mode == "demo":
        return SeparationPlan("demo", "demo-split-1", "DEMO split (mid/side + vocal band; not Demucs)")
    ckpt = None
    why = ""
    roots = _runtime_roots(cfg, limits)
    try:
        from core.separation import find_demucs_checkpoint
    except ImportError as err:
        find_demucs_checkpoint = None
        why = f" (the Demucs module could not be imported: {err})"
    if find_demucs_checkpoint is not None:
        for r in roots:
            ckpt = find_demucs_checkpoint(r)
            if ckpt:
                break
    if ckpt:
        ckpt = Path(ckpt)
        size = ckpt.stat().st_size if ckpt.is_file() else 0
        return SeparationPlan("demucs", f"demucs-htdemucs:{ckpt.name}:{size}:{bgm}:{cfg.data.seed}",
                              f"Demucs htdemucs ({ckpt}), accompaniment = "
                              + ("drums + bass + other" if bgm == "stems" else "mix - vocal"), checkpoint=ckpt)
    if mode == "auto" and getattr(codec, "is_demo", False):
        return SeparationPlan("demo", "demo-split-1",
                              "DEMO split (mid/side + vocal band; not Demucs: no htdemucs checkpoint was found)")
    looked = ", ".join(str(r) for r in roots) if roots else "nowhere (paths.runtime_path is not set)"
    return SeparationPlan("unavailable", "unavailable", "none available", error=(
        f"no Demucs checkpoint (third_party/demucs/ckpt/htdemucs.pth) to split vocals from accompaniment{why}; "
        f"looked under: {looked}. Set paths.runtime_path to the SongGeneration folder that holds "
        "third_party/demucs/ckpt/htdemucs.pth, or give this song's 'vocal' and 'bgm' stem files"))


# ----------------------------------------------------------------------------------------------
# hashing and the per-song cache
# ----------------------------------------------------------------------------------------------
def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def extract_prompt(codes: torch.Tensor, start_s: float, limits: ModelLimits) -> tuple[torch.Tensor, float]:
    """A [3, prompt_frames] window starting near `start_s` (clamped into the song); short songs are
    padded with 16385, the id the model reads as "no prompt here"."""
    p = limits.prompt_frames
    t = codes.shape[1]
    f0 = int(round(max(0.0, start_s) * limits.frame_rate))
    f0 = max(0, min(f0, t - p))
    win = codes[:, f0:f0 + p]
    if win.shape[1] < p:
        win = torch.cat([win, torch.full((codes.shape[0], p - win.shape[1]), EMPTY_TOKEN, dtype=codes.dtype)], 1)
    return win, f0 / limits.frame_rate


# ----------------------------------------------------------------------------------------------
# prepare
# ----------------------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    dataset_dir: Optional[Path]
    report: list[dict]
    summary: dict
    report_path: Optional[Path] = None

    @property
    def ok(self) -> bool:
        return self.dataset_dir is not None


def _device(cfg: StudioConfig) -> str:
    if cfg.data.device != "auto":
        return cfg.data.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _status(errors: list[str], changed: bool, warnings: list[str]) -> str:
    if errors:
        return "rejected"
    if changed:
        return "fixed"
    return "warning" if warnings else "ok"


def _process_song(song: SongInput, *, cfg: StudioConfig, codec: Any, limits: ModelLimits, plan: SeparationPlan,
                  songs_dir: Path, static_key: dict, counters: dict, dry_run: bool = False) -> tuple[dict, Optional[dict]]:
    """One song -> (report entry, item or None). Never raises for a problem with the song itself."""
    entry: dict[str, Any] = {"idx": song.idx, "source": song.source, "status": "rejected", "reasons": [],
                             "audio": song.audio}
    errors: list[str] = list(song.problems)
    warnings: list[str] = []
    changes: list[str] = []
    findings: list[dict] = [{"level": "error", "message": p} for p in song.problems]

    lres = lyr.check_lyrics(song.lyrics, limits.structure_tags) if song.lyrics is not None or not song.problems else None
    if lres is not None:
        errors += lres.errors
        warnings += lres.warnings
        changes += lres.changes
        findings += [{"level": "error", "message": m} for m in lres.errors]
        findings += [{"level": "warning", "message": m} for m in lres.warnings]
        findings += [{"level": "fix", "message": m} for m in lres.changes]
        entry["lyrics"] = lres.text
        if lres.status == "fixed":
            entry["lyrics_original"] = lres.original
            entry["lyrics_fixed"] = lres.text
            entry["lyrics_changes"] = lres.changes
    dres = lyr.check_description(song.description)
    warnings += dres.warnings
    changes += dres.changes
    findings += [{"level": "warning", "message": m} for m in dres.warnings]
    findings += [{"level": "fix", "message": m} for m in dres.changes]
    entry["description"] = dres.text
    if dres.unknown:
        entry["unknown_tags"] = dres.unknown
    if dres.musicality:
        entry["musicality_tags"] = dres.musicality

    info = None
    if song.audio and not song.problems:
        try:
            info = audio_mod.probe(song.audio)
            hf = audio_mod.check_header(info, max_dur=limits.max_dur, min_dur=cfg.data.min_duration_s)
        except audio_mod.AudioError as err:
            hf = [audio_mod.AudioFinding("error", "unreadable", str(err))]
        errors += [f.message for f in hf if f.level == "error"]
        warnings += [f.message for f in hf if f.level == "warning"]
        findings += [f.to_dict() for f in hf]
        if info is not None and 0 < info.duration_s < limits.prompt_len and not any(f.level == "error" for f in hf):
            msg = (f"{Path(song.audio).name} is shorter than the model's {limits.prompt_len:g} s prompt; "
                   "the rest of its prompt is left empty")
            warnings.append(msg)
            findings.append({"level": "warning", "message": msg})
        if info is not None:
            entry["duration_s"] = round(info.duration_s, 3)
            entry["sample_rate"] = info.sample_rate
            entry["channels"] = info.channels

    has_stems = bool(song.vocal and song.bgm)
    if not errors and not has_stems and plan.kind in ("none", "unavailable"):
        errors.append(plan.error or "no separation available")
        findings.append({"level": "error", "message": plan.error})
    if not errors and (song.vocal is None) != (song.bgm is None):
        errors.append("give both stems (vocal and bgm) or neither; with one only the other cannot be derived")
        findings.append({"level": "error", "message": errors[-1]})

    def finish(item: Optional[dict]) -> tuple[dict, Optional[dict]]:
        entry["status"] = _status(errors, bool(changes), warnings)
        entry["reasons"] = errors + warnings + (changes if entry["status"] == "fixed" else [])
        entry["findings"] = findings
        return entry, item

    if errors:
        return finish(None)

    try:
        stems_sha = [hash_file(song.vocal), hash_file(song.bgm)] if has_stems else None
        key = _hash_json({**static_key, "audio": hash_file(song.audio), "stems": stems_sha,
                          "separation": "stems" if has_stems else plan.id, "lyrics": entry.get("lyrics"),
                          "description": dres.text, "prompt_start_s": song.prompt_start_s,
                          "chorus_start_s": song.chorus_start_s})
    except OSError as err:
        errors.append(f"cannot read {song.audio}: {err.strerror or err}")
        return finish(None)
    entry["key"] = key
    entry["separation"] = "given stems" if has_stems else plan.label
    cache_path = songs_dir / key[:2] / f"{key}.pt"

    if dry_run:  # plan(): say what would happen, touch nothing
        entry["cached"] = cache_path.is_file()
        return finish(None)
    cached = None
    if cache_path.is_file():
        try:
            cached = torch.load(cache_path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache file is simply rebuilt
            cached = None
    if cached is not None:
        counters["cached"] += 1
        entry["cached"] = True
        for f in cached["meta"]["signal_findings"]:
            findings.append(f)
            (warnings if f["level"] == "warning" else errors).append(f["message"])
        entry["duration_s"] = cached["meta"]["duration_s"]
        entry["prompt_start_s"] = cached["meta"]["prompt_start_s"]
        return finish(_item(song, entry, cached))

    # Decode and check the samples, separate, encode.
    try:
        wav, sr = audio_mod.read_audio(song.audio)
    except audio_mod.AudioError as err:
        errors.append(str(err))
        findings.append({"level": "error", "message": str(err)})
        return finish(None)
    sig = [f.to_dict() for f in audio_mod.check_signal(wav, sr, Path(song.audio).name)]
    findings += sig
    errors += [f["message"] for f in sig if f["level"] == "error"]
    warnings += [f["message"] for f in sig if f["level"] == "warning"]
    if errors:
        return finish(None)
    target_sr = int(getattr(codec, "sample_rate", audio_mod.CODEC_SAMPLE_RATE))
    mix = audio_mod.to_codec_layout(wav, sr, target_sr)
    del wav
    try:
        if has_stems:
            vocal = audio_mod.load_for_codec(song.vocal, target_sr)
            bgm = audio_mod.load_for_codec(song.bgm, target_sr)
        else:
            vocal, bgm = plan.split(mix, target_sr, cfg.data.bgm_mode, _device(cfg), cfg.data.seed)
    except Exception as err:
        msg = f"separating vocals from accompaniment failed: {err}"
        errors.append(msg)
        findings.append({"level": "error", "message": msg})
        return finish(None)
    try:
        with torch.inference_mode():
            codes = codec.encode(mix, vocal, bgm)
        counters["encoded"] += 1
        codes = torch.as_tensor(codes).long().cpu()
        if codes.dim() == 3:
            codes = codes[0]
        if codes.dim() != 2 or codes.shape[0] != 3 or codes.shape[1] == 0:
            raise ValueError(f"the codec returned shape {tuple(codes.shape)}, expected [3, T]")
        if int(codes.min()) < 0 or int(codes.max()) >= 16384:
            raise ValueError(f"the codec returned ids outside 0..16383 ({int(codes.min())}..{int(codes.max())})")
    except Exception as err:
        msg = f"tokenizing with {getattr(codec, 'id', 'the codec')} failed: {err}"
        errors.append(msg)
        findings.append({"level": "error", "message": msg})
        return finish(None)
    duration = mix.shape[-1] / target_sr
    start = song.prompt_start_s if song.prompt_start_s is not None else (
        song.chorus_start_s if song.chorus_start_s is not None else cfg.data.prompt_offset_s)
    start = min(max(0.0, start), max(0.0, duration - limits.prompt_len))
    prompt, prompt_start = extract_prompt(codes, start, limits)
    record = {"codes": codes.to(torch.int16), "prompt": prompt.to(torch.int16),
              "meta": {"duration_s": round(duration, 3), "prompt_start_s": prompt_start, "signal_findings": sig,
                       "codec": getattr(codec, "id", "?"), "separation": entry["separation"]}}
    _atomic_torch_save(record, cache_path)
    entry["cached"] = False
    entry["duration_s"] = round(duration, 3)
    entry["prompt_start_s"] = prompt_start
    return finish(_item(song, entry, record))


def _item(song: SongInput, entry: dict, record: dict) -> dict:
    codes = record["codes"]
    return {"idx": song.idx, "codes": codes.numpy(), "prompt": record["prompt"].numpy(), "lyrics": entry["lyrics"],
            "description": entry["description"], "num_frames": int(codes.shape[1]),
            "duration_s": float(record["meta"]["duration_s"]),
            "prompt_start_s": float(record["meta"]["prompt_start_s"]), "key": entry["key"], "audio": song.audio}


def split_items(idxs: list[str], val_fraction: float, seed: int) -> set[str]:
    """Validation idx set: floor(n * val_fraction) songs (at most n - 1, so train is never empty),
    picked by a seeded hash of idx, so adding a song does not reshuffle the others."""
    n = len(idxs)
    n_val = min(int(math.floor(n * val_fraction)), max(0, n - 1))
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


def _static_key(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> dict:
    return {"schema": SCHEMA_VERSION, "codec": getattr(codec, "id", type(codec).__name__),
            "codec_version": str(getattr(codec, "version", "")), "max_dur": limits.max_dur,
            "frame_rate": limits.frame_rate, "prompt_frames": limits.prompt_frames,
            "prompt_offset_s": cfg.data.prompt_offset_s, "min_duration_s": cfg.data.min_duration_s,
            "tags": list(limits.structure_tags)}


def _check_frame_rate(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> None:
    if int(getattr(codec, "frame_rate", limits.frame_rate)) != limits.frame_rate:
        raise DataError(f"the codec {codec.id} makes {codec.frame_rate} Hz tokens but the model "
                        f"({cfg.paths.base_model_path}) expects {limits.frame_rate} Hz; pick a matching data.codec")


def _duplicate_entry(song: SongInput, first: str) -> dict:
    return {"idx": song.idx, "source": song.source, "status": "rejected", "audio": song.audio,
            "reasons": [f"duplicate idx '{song.idx}' (already used by {first}); give every song a unique idx"],
            "findings": [{"level": "error", "message": f"duplicate idx '{song.idx}'"}]}


def plan(cfg: StudioConfig, items: Optional[Iterable[Any]] = None, codec: Any = None) -> dict:
    """What `prepare` would do, without decoding or encoding anything: {"cached": [idx], "to_encode": [idx],
    "rejected": [idx], "report": [entries so far], "separation": label}. Checks lyrics, descriptions and
    audio headers, and hashes the files (cheap)."""
    limits = model_limits(cfg)
    if codec is None:
        if cfg.data.codec == "demo":
            from core.codec.demo import DemoCodec as codec  # class attributes are all a plan needs
        else:
            from core.codec.official import OfficialCodec as codec  # no weights are loaded
    _check_frame_rate(cfg, codec, limits)
    songs = collect_inputs(cfg, items)
    sep = plan_separation(cfg, codec, limits)
    static_key = _static_key(cfg, codec, limits)
    report, seen = [], {}
    for song in songs:
        if song.idx in seen:
            report.append(_duplicate_entry(song, seen[song.idx]))
            continue
        seen[song.idx] = song.source.split(" ", 1)[0] or song.idx
        entry, _ = _process_song(song, cfg=cfg, codec=codec, limits=limits, plan=sep,
                                 songs_dir=cfg.prepared_dir() / ".songs", static_key=static_key,
                                 counters={"encoded": 0, "cached": 0}, dry_run=True)
        report.append(entry)
    return {"cached": [e["idx"] for e in report if e["status"] != "rejected" and e.get("cached")],
            "to_encode": [e["idx"] for e in report if e["status"] != "rejected" and not e.get("cached")],
            "rejected": [e["idx"] for e in report if e["status"] == "rejected"],
            "report": report, "separation": sep.label, "dataset_dir": None}


def prepare(cfg: StudioConfig, items: Optional[Iterable[Any]] = None, progress: Progress = None,
            codec: Any = None) -> PrepareResult:
    """Validate, separate and tokenize songs into the cache; see the module doc."""
    t0 = time.time()
    limits = model_limits(cfg)
    if codec is None:
        from core.codec import get_codec
        codec = get_codec(cfg)
    _check_frame_rate(cfg, codec, limits)
    songs = collect_inputs(cfg, items)
    sep = plan_separation(cfg, codec, limits)
    prepared_dir = cfg.prepared_dir()
    songs_dir = prepared_dir / ".songs"
    static_key = _static_key(cfg, codec, limits)
    counters = {"encoded": 0, "cached": 0}
    report: list[dict] = []
    items_out: list[dict] = []
    seen: dict[str, str] = {}
    total = len(songs)
    for i, song in enumerate(songs):
        if progress:
            progress(i, total, f"{song.idx}")
        if song.idx in seen:
            report.append(_duplicate_entry(song, seen[song.idx]))
            continue
        seen[song.idx] = song.source.split(" ", 1)[0] or song.idx
        try:
            entry, item = _process_song(song, cfg=cfg, codec=codec, limits=limits, plan=sep, songs_dir=songs_dir,
                                        static_key=static_key, counters=counters)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a bug or an odd file must not stop the other songs
            entry, item = {"idx": song.idx, "source": song.source, "status": "rejected", "audio": song.audio,
                           "reasons": [f"unexpected error while preparing this song: {type(err).__name__}: {err}"],
                           "findings": []}, None
        report.append(entry)
        if item is not None:
            items_out.append(item)
    if progress:
        progress(total, total, "writing the dataset")

    counts = {s: sum(1 for e in report if e["status"] == s) for s in ("ok", "fixed", "warning", "rejected")}
    summary: dict[str, Any] = {
        "total": total, **counts, "prepared": len(items_out), "encoded": counters["encoded"],
        "cached": counters["cached"], "audio_seconds": round(sum(it["duration_s"] for it in items_out), 3),
        "codec": getattr(codec, "id", "?"), "codec_is_demo": bool(getattr(codec, "is_demo", False)),
        "separation": sep.label, "model": limits.to_dict(),
    }
    dataset_dir = None
    if items_out:
        val = split_items([it["idx"] for it in items_out], cfg.data.val_fraction, cfg.data.seed)
        ds_hash = _hash_json({"schema": SCHEMA_VERSION, "items": [[it["idx"], it["key"]] for it in items_out],
                              "val": sorted(val)})[:16]
        dataset_dir = prepared_dir / ds_hash
        for e in report:
            if e["status"] != "rejected":
                e["split"] = "validation" if e["idx"] in val else "train"
        summary["train"] = len(items_out) - len(val)
        summary["validation"] = len(val)
        if not (dataset_dir / "dataset_dict.json").is_file():
            manifest = [{"path": it["audio"], "gt_lyric": it["lyrics"], "descriptions": it["description"],
                         "idx": it["idx"], "split": "validation" if it["idx"] in val else "train",
                         "num_frames": it["num_frames"], "duration_s": it["duration_s"], "key": it["key"]}
                        for it in items_out]
            _write_dataset(items_out, val, dataset_dir, manifest)
    summary["elapsed_s"] = round(time.time() - t0, 3)
    doc = {"dataset_dir": str(dataset_dir) if dataset_dir else None, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "summary": summary, "songs": report}
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    report_path = None
    if dataset_dir is not None:
        report_path = dataset_dir / "report.json"
        _atomic_write_text(report_path, text)
        _atomic_write_text(prepared_dir / "latest.json", json.dumps({"dataset_dir": str(dataset_dir)}, indent=2))
    _atomic_write_text(prepared_dir / "last-report.json", text)
    if report_path is None:
        report_path = prepared_dir / "last-report.json"
    if progress:
        progress(total, total, "done")
    return PrepareResult(dataset_dir, report, summary, report_path)


def load_prepared(dataset_dir: str | Path):
    """The DatasetDict ("train", "validation"); codes/prompt come back as int64 torch tensors [3, T] / [3, P]."""
    import datasets
    p = Path(dataset_dir)
    if not (p / "dataset_dict.json").is_file():
        raise DataError(f"{p} is not a prepared dataset (no dataset_dict.json); run `python -m core prepare` first")
    dd = datasets.load_from_disk(str(p))
    dd.set_format("torch", columns=["codes", "prompt"], output_all_columns=True)
    return dd


def read_report(dataset_dir: str | Path) -> dict:
    return json.loads((Path(dataset_dir) / "report.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
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
                 f"rejected: {s['rejected']}  |  prepared: {s['prepared']} (train {s.get('train', 0)}, "
                 f"validation {s.get('validation', 0)}), encoded {s['encoded']}, from cache {s['cached']}, "
                 f"{s['audio_seconds']:.0f} s of audio in {s['elapsed_s']:.1f} s")
    codec_label = s["codec"] + (" (DEMO codec, not SongGeneration's tokenizer)" if s["codec_is_demo"] else "")
    lines.append(f"codec: {codec_label}  |  separation: {s['separation']}")
    if result.dataset_dir:
        lines.append(f"dataset: {result.dataset_dir}")
    lines.append(f"report: {result.report_path}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    from core.config import ConfigError, load_config, parse_override
    ap = argparse.ArgumentParser(prog="python -m core prepare",
                                 description="validate songs, separate vocals/accompaniment, tokenize into the datasets cache")
    ap.add_argument("--config", help="YAML config (paths.metadata_path or paths.raw_data_dir, data.*)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        overrides = dict(parse_override(o) for o in args.set)
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bar = None

    def progress(done: int, total: int, message: str) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="song", desc="prepare", file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(message[:30])
        bar.refresh()

    try:
        result = prepare(cfg, progress=progress)
    except (DataError, ValueError, OSError) as err:
        if bar is not None:
            bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    print(format_summary(result))
    if not result.ok:
        print("error: no song could be prepared; see the reasons above and in "
              f"{result.report_path}", file=sys.stderr)
        return 1
    return 0
