"""Song inputs from the three sources (upload rows, metadata.jsonl, a folder), each a `SongInput`.

A problem found while reading (missing file, broken line, bad encoding) becomes a `problem` of that
song, which rejects it with that reason; only a source that cannot be read at all raises DataError.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from core.audio import io as audio_mod
from core.text import fields
from core.text.lyrics import Note, note
from core.text.fields import TextFileError, read_text_file
from core.timing.sections import as_note
from core.config import StudioConfig
from core.data.limits import DataError
from core.text.description import MUSICALITY_TIERS, parse_musicality

# what each file named in a song's inputs is, as messages call it (a coded value: worded in the reader's language)
FILE_LABELS = {"audio": note("file_audio", "audio file"), "lrc": note("file_lrc", "LRC file"),
               "vocal": note("file_vocal", "vocal stem"), "bgm": note("file_bgm", "bgm stem")}

STEM_SUFFIXES = {"vocal": ("vocal", "vocals"), "bgm": ("bgm", "accompaniment", "instrumental")}
DESC_SUFFIXES = ("desc", "description")


def is_audio_name(name: str) -> bool:
    """A file prepare reads as a song's audio (libsndfile's formats; .m4a / .aac are not among them)."""
    return Path(name).suffix.lower() in audio_mod.AUDIO_EXTENSIONS


def sidecar_names(stem: str) -> dict[str, Any]:
    """The files that go with song NAME (the one naming rule of a folder and of the studio's bulk import):
    NAME.txt lyrics, NAME.lrc timed lyrics, NAME.desc.txt (or NAME.description.txt) description."""
    return {"lyrics": f"{stem}.txt", "lrc": f"{stem}.lrc", "desc": [f"{stem}.{s}.txt" for s in DESC_SUFFIXES]}


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
    lrc: Optional[str] = None            # timed lyrics (LRC file): section timing, and lyrics when absent
    timing: Optional[dict] = None        # section starts saved in the studio ({source, sections})
    source: str = ""
    problems: list[str] = field(default_factory=list)   # found while reading (coded notes): song is rejected
    musicality: Optional[str] = None    # v2 musicality tier ("medium"); None = the model's default (very-high)
    # the files' names as the user gave them (the studio keeps copies named audio.wav / lyrics.lrc): messages
    # about the song name these; metadata.jsonl keys "source_name" / "lrc_name", optional
    audio_name: Optional[str] = None
    lrc_name: Optional[str] = None

    @property
    def shown_name(self) -> str:
        """The audio file's name as the user knows it."""
        return self.audio_name or (Path(self.audio).name if self.audio else str(self.idx))


def _first(d: dict, *keys: str) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def _musicality_or_none(v: Any, problems: list[str]) -> Optional[str]:
    """The `musicality` key validated against the official tiers (a bad value rejects the song, named)."""
    try:
        return parse_musicality(v)
    except ValueError:
        problems.append(note("musicality_bad", "musicality {value} is not one of the official tiers: {tiers}; leave "
                             "it empty for the default (very-high)", value=repr(v), tiers=", ".join(MUSICALITY_TIERS)))
        return None


def _float_or_none(v: Any, name: str, problems: list[str]) -> Optional[float]:
    value, err = fields.number_field(v, name, note("where_this_song", "this song"))
    if err:
        problems.append(err)
    return value


def _text_fields(d: dict, where: str, problems: list[str], lyric_keys=("gt_lyric",),
                 desc_keys=("descriptions", "description")) -> tuple[Optional[str], Optional[str]]:
    """Lyrics and description of one entry, type-checked (core.text.fields): a wrong type is a reason, never str()."""
    lyrics, err = fields.lyric_field(_first(d, *lyric_keys), where)
    if err:
        problems.append(err)
    desc, err = fields.description_field(_first(d, *desc_keys), where)
    if err:
        problems.append(err)
    return lyrics, desc



def _timing_dict(v: Any, problems: list[str]) -> Optional[dict]:
    """A saved `timing` ({"source": "edited"|"proposed", "sections": [{"tag", "start_s"}, ...]})."""
    if v is None or v == "":
        return None
    if not isinstance(v, dict) or not isinstance(v.get("sections"), list) or not all(
            isinstance(s, dict) and "tag" in s and "start_s" in s for s in v["sections"]):
        problems.append(note("timing_shape", "'timing' must be {\"source\": \"edited\", \"sections\": "
                             "[{\"tag\": \"[verse]\", \"start_s\": 12.3}, ...]}"))
        return None
    return v


def outside_roots(path: Path, roots: list[Path]) -> Optional[Note]:
    """Why `path` may not be read (None when it may): local data is read only inside the data folders the
    user named -- a link or a path leading out of them is refused, never followed (a downloaded dataset
    must not make prepare read ~/.cache/huggingface/token or /proc/self/environ)."""
    real = Path(os.path.realpath(path))
    if any(real == r or r in real.parents for r in roots):
        return None
    where = " or ".join(str(r) for r in roots)
    if path.is_symlink():
        return note("link_outside", "{name} is a link to a file outside {where}; links leaving the data folder are "
                    "not followed: copy the file in", name=path.name, where=where)
    return note("path_outside", "'{path}' is outside {where}; files are read only inside the data folder: copy it "
                "there", path=str(path), where=where)


def _resolve_audio(p: str, bases: list[Path], roots: Optional[list[Path]] = None
                   ) -> tuple[Optional[Path], list[Path], Optional[Note]]:
    """A file named in metadata.jsonl -> (the file, where it was looked for, why it is refused or None)."""
    path = Path(p).expanduser()
    tried = [path] if path.is_absolute() else [b / path for b in bases]
    found = next((c for c in tried if c.is_file()), None)
    refused = outside_roots(found, roots) if found is not None and roots is not None else None
    return (None if refused else found), tried, refused


def _find(kind: str, value: str, bases: list[Path], roots: list[Path], problems: list[str]) -> Optional[str]:
    """A file named in metadata.jsonl (audio, stem, LRC: `kind`, a FILE_LABELS key), looked up and checked the
    same way for each; None when it is refused (nothing may open it later), the name as given when it is missing."""
    found, tried, refused = _resolve_audio(value, bases, roots)
    if refused:
        problems.append(note("file_refused", "{label} '{value}': {why}", label=FILE_LABELS[kind], value=value,
                             why=refused))
        return None
    if found is None:
        problems.append(note("file_not_found", "{label} '{value}' not found (looked in: {tried})",
                             label=FILE_LABELS[kind], value=value, tried=", ".join(str(t) for t in tried)))
    return str(found or value)


def metadata_rows(text: str) -> Iterator[tuple[int, str, Optional[dict], str]]:
    """The non-blank lines of a metadata.jsonl: (line number, line, its object, "") or (line number, line,
    None, why it is not one JSON object). The one reader of the format for prepare and the studio's import."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as err:
            yield n, line, None, str(err)
            continue
        except RecursionError:
            yield n, line, None, "nested too deeply"
            continue
        yield (n, line, d, "") if isinstance(d, dict) else (n, line, None, "not a JSON object")


def load_metadata(path: str | Path, raw_data_dir: Optional[str | Path] = None) -> list[SongInput]:
    """Seed-format metadata.jsonl -> songs. Broken lines, missing fields and missing files become
    songs with `problems` (rejected with that reason); duplicates are caught later by idx."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"paths.metadata_path: {path} does not exist; point it at your metadata.jsonl",
                        code="data_metadata_missing", path=str(path))
    roots = [path.parent.resolve()] + ([Path(raw_data_dir).expanduser().resolve()] if raw_data_dir else [])
    bases = roots + [Path.cwd()]  # a path relative to the working folder is found, and refused outside the roots
    out: list[SongInput] = []
    try:
        text = read_text_file(path)
    except TextFileError as err:
        raise DataError(f"paths.metadata_path: {err}", code="data_metadata_unreadable", why=as_note(err)) from None
    for n, line, d, err in metadata_rows(text):
        src = f"{path.name}:{n}"
        if d is None:
            out.append(SongInput(f"line-{n}", None, source=src, problems=[note(
                "line_not_json", "line {n} of {file} is not valid JSON ({why}); each line must be one object like "
                '{example}', n=n, file=path.name, why=err[:80],
                example='{"path": ..., "gt_lyric": ..., "descriptions": ..., "idx": ...}')]))
            continue
        problems: list[str] = []
        idx = d.get("idx")
        if idx is None or str(idx).strip() == "":
            problems.append(note("line_no_idx", "line {n} has no 'idx' (a unique name for the song)", n=n))
            idx = f"line-{n}"
        elif isinstance(idx, bool) or not isinstance(idx, (str, int)):
            problems.append(note("line_idx_type", "line {n}: 'idx' must be a name (text), got {got}", n=n,
                                 got=repr(str(idx)[:60])))
            idx = f"line-{n}"
        raw_path = d.get("path")
        audio = None
        if raw_path is not None and not isinstance(raw_path, str):
            problems.append(note("line_path_type", "line {n}: 'path' must be a file path (text), got {got}", n=n,
                                 got=repr(str(raw_path)[:60])))
        elif not raw_path:
            problems.append(note("line_no_path", "line {n} has no 'path' (the audio file)", n=n))
        else:
            audio = _find("audio", raw_path, bases, roots, problems)
        lrc = None
        if d.get("lrc"):  # timed lyrics, found and checked like `path`
            if isinstance(d["lrc"], str):
                lrc = _find("lrc", d["lrc"], bases, roots, problems)
            else:
                problems.append(note("line_lrc_type", "line {n}: 'lrc' must be a file path (text)", n=n))
        if ("gt_lyric" not in d or d.get("gt_lyric") is None) and not lrc:
            problems.append(note("line_no_lyrics", "line {n} has no 'gt_lyric' (the lyrics) and no 'lrc' (timed "
                                 "lyrics)", n=n))
        stems: dict[str, Optional[str]] = {}
        for key, names in (("vocal", ("vocal", "vocal_path")), ("bgm", ("bgm", "bgm_path", "accompaniment"))):
            v = _first(d, *names)
            if v and (found := _find(key, str(v), bases, roots, problems)) is not None:
                stems[key] = found
        lyrics, desc = _text_fields(d, note("where_line", "line {n}", n=n), problems)
        out.append(SongInput(
            str(idx), audio, lyrics, desc,
            stems.get("vocal"), stems.get("bgm"),
            _float_or_none(d.get("prompt_start_s"), "prompt_start_s", problems),
            _float_or_none(d.get("chorus_start_s"), "chorus_start_s", problems),
            lrc=lrc, timing=_timing_dict(d.get("timing"), problems),
            source=f"{src} {line.strip()[:300]}", problems=problems,
            musicality=_musicality_or_none(d.get("musicality"), problems), **_given_names(d)))
    return out


def _given_names(d: dict) -> dict[str, Optional[str]]:
    """The audio's and the LRC's names as the user gave them (a studio song's "source_name" / "lrc_name"):
    plain file names only, anything else is ignored (they are only shown in messages)."""
    out: dict[str, Optional[str]] = {}
    for key, names in (("audio_name", ("source_name", "audio_name")), ("lrc_name", ("lrc_name",))):
        v = _first(d, *names)
        out[key] = Path(v).name[:200] if isinstance(v, str) and v.strip() else None
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
    """A folder of songs: NAME.wav (any libsndfile format) + NAME.txt lyrics, optional NAME.desc.txt,
    NAME.lrc timed lyrics (section timing; its lines are the lyrics when NAME.txt is absent) and
    NAME.vocal.wav / NAME.bgm.wav stems. Subfolders are searched too."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"paths.raw_data_dir: {root} is not a folder; point it at the folder holding your songs",
                        code="data_not_a_folder", path=str(root))
    roots = [root.resolve()]
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_audio_name(p.name))
    songs: dict[Path, SongInput] = {}
    stems: list[tuple[Path, str, str, list[str]]] = []
    for p in files:
        base, kind = _split_name(p)
        # every file of the song (audio, lyrics, LRC, description, stems) is checked before it is opened
        names = sidecar_names(p.stem)
        refused = [why for f in (p, p.parent / names["lyrics"], p.parent / names["lrc"],
                                 *(p.parent / d for d in names["desc"]))
                   if (f == p or f.is_file()) and (why := outside_roots(f, roots))]
        if kind:
            stems.append((p.parent / base, kind, str(p), refused))
            continue
        if refused:
            songs[p.parent / p.stem] = SongInput(p.stem, None, source=str(p), problems=refused)
            continue
        problems: list[str] = []
        lyrics = desc = None
        lyr_path = p.parent / names["lyrics"]
        lrc_path = p.parent / names["lrc"]
        lrc = str(lrc_path) if lrc_path.is_file() else None
        if not lyr_path.is_file():
            if lrc is None:
                problems.append(note("no_lyrics_file", "no lyrics file {lyrics} (or timed lyrics {lrc}) next to "
                                     "{audio}; write the lyrics into it (for an instrumental: [intro-short] ; "
                                     "[inst-long] ; [outro-short])", lyrics=lyr_path.name, lrc=lrc_path.name,
                                     audio=p.name))
        else:
            try:
                lyrics, err = fields.lyric_field(read_text_file(lyr_path), lyr_path.name)
                if err:
                    problems.append(err)
            except TextFileError as err:
                problems.append(as_note(err))
        for dname in names["desc"]:
            dp = p.parent / dname
            if dp.is_file():
                try:
                    desc = read_text_file(dp).strip()
                except TextFileError as err:
                    problems.append(as_note(err))
                break
        songs[p.parent / p.stem] = SongInput(p.stem, str(p), lyrics, desc, lrc=lrc, source=str(p), problems=problems)
    for key, kind, sp, refused in stems:
        if key in songs:  # a refused stem rejects its song and is never opened
            songs[key].problems.extend(refused)
            setattr(songs[key], kind, None if refused else sp)
    return list(songs.values())


def _missing(kind: str, value: Any) -> Note:
    return note("file_missing", "{label} '{value}' not found", label=FILE_LABELS[kind], value=str(value))


def coerce_items(items: Iterable[Any]) -> list[SongInput]:
    """The studio's upload form: dicts or objects with audio/lyrics/description (+ idx, vocal, bgm, lrc, timing)."""
    out: list[SongInput] = []
    for i, it in enumerate(items):
        if isinstance(it, SongInput):
            out.append(it)
            continue
        d = it if isinstance(it, dict) else {k: getattr(it, k) for k in dir(it) if not k.startswith("_")}
        problems: list[str] = []
        audio = _first(d, "audio", "path", "audio_path")
        if audio is None:
            problems.append(note("item_no_audio", "song #{n} has no audio file", n=i + 1))
        elif not Path(str(audio)).expanduser().is_file():
            problems.append(_missing("audio", audio))
        idx = _first(d, "idx", "name")
        if idx is None and audio is not None:
            idx = Path(str(audio)).stem
        lyrics, desc = _text_fields(d, note("where_song", "song #{n}", n=i + 1), problems, ("lyrics", "gt_lyric"),
                                    ("description", "descriptions"))
        stems = {}
        for key, names in (("vocal", ("vocal", "vocal_path")), ("bgm", ("bgm", "bgm_path", "accompaniment"))):
            v = _first(d, *names)
            if v:
                if not Path(str(v)).expanduser().is_file():
                    problems.append(_missing(key, v))
                stems[key] = str(Path(str(v)).expanduser())
        lrc = _first(d, "lrc", "lrc_path")
        if lrc and not Path(str(lrc)).expanduser().is_file():
            problems.append(_missing("lrc", lrc))
        out.append(SongInput(
            str(idx if idx is not None else f"song-{i + 1}"), str(Path(str(audio)).expanduser()) if audio else None,
            lyrics, desc, stems.get("vocal"), stems.get("bgm"),
            _float_or_none(d.get("prompt_start_s"), "prompt_start_s", problems),
            _float_or_none(d.get("chorus_start_s"), "chorus_start_s", problems),
            lrc=str(Path(str(lrc)).expanduser()) if lrc else None, timing=_timing_dict(d.get("timing"), problems),
            source=str(audio) if audio else f"item #{i + 1}", problems=problems,
            musicality=_musicality_or_none(d.get("musicality"), problems), **_given_names(d)))
    return out


def collect_inputs(cfg: StudioConfig, items: Optional[Iterable[Any]] = None) -> list[SongInput]:
    if items is not None:
        return coerce_items(items)
    if cfg.paths.metadata_path:
        return load_metadata(cfg.paths.metadata_path, cfg.paths.raw_data_dir)
    if cfg.paths.raw_data_dir:
        return scan_folder(cfg.paths.raw_data_dir)
    raise DataError("nothing to prepare: set paths.metadata_path (a metadata.jsonl) or paths.raw_data_dir "
                    "(a folder of songs with same-named .txt lyrics), or upload songs in the studio",
                    code="data_nothing_to_prepare")
