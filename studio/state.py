"""What the studio remembers lives in the workspace, never only in memory.

- ``uploads/songs/<idx>/song.json`` (+ the audio copy): one folder per song the user added.
- ``uploads/metadata.jsonl``: the seed-format list built from those folders, the input of prepare.
- ``studio.json``: small pointers (last prepared dataset, last base model choice).

Runs are found from ``runs/`` through ``core.runs``; a page reload rebuilds everything from here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from core.fsutil import atomic_write_text, slugify

AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".m4a"}


class Workspace:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # ---- layout ----------------------------------------------------------------------------
    @property
    def songs_dir(self) -> Path:
        return self.root / "uploads" / "songs"

    @property
    def metadata_path(self) -> Path:
        return self.root / "uploads" / "metadata.jsonl"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def state_path(self) -> Path:
        return self.root / "studio.json"

    # ---- small persistent pointers ----------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def set_state(self, **kv: Any) -> dict[str, Any]:
        st = self.get_state()
        st.update(kv)
        atomic_write_text(self.state_path, json.dumps(st, indent=2, ensure_ascii=False))
        return st

    # ---- songs ------------------------------------------------------------------------------
    def _unique_idx(self, wanted: str) -> str:
        base = slugify(wanted, "song", sep="_")
        idx, n = base, 2
        while (self.songs_dir / idx).exists():
            idx, n = f"{base}_{n}", n + 1
        return idx

    def add_song(self, audio_path: str | os.PathLike, lyric: str = "", descriptions: str = "",
                 idx: str | None = None, stems: dict[str, str] | None = None) -> str:
        src = Path(audio_path)
        if not src.is_file():
            raise FileNotFoundError(f"audio file not found: {src}")
        idx = self._unique_idx(idx or src.stem)
        folder = self.songs_dir / idx
        folder.mkdir(parents=True)
        dst = folder / ("audio" + src.suffix.lower())
        shutil.copyfile(src, dst)
        song = {"idx": idx, "path": str(dst), "source_name": src.name, "gt_lyric": lyric or "",
                "original_lyric": lyric or "", "descriptions": descriptions or ""}
        for k, v in (stems or {}).items():
            if v:
                sp = Path(v)
                d = folder / f"{k}{sp.suffix.lower()}"
                shutil.copyfile(sp, d)
                song[f"{k}_path"] = str(d)
        atomic_write_text(folder / "song.json", json.dumps(song, indent=2, ensure_ascii=False))
        self.write_metadata()
        return idx

    def songs(self) -> list[dict[str, Any]]:
        out = []
        if self.songs_dir.is_dir():
            for f in sorted(self.songs_dir.glob("*/song.json")):
                try:
                    out.append(json.loads(f.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue
        return out

    def song(self, idx: str) -> dict[str, Any] | None:
        f = self.songs_dir / str(idx) / "song.json"
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def update_song(self, idx: str, **fields: Any) -> dict[str, Any]:
        song = self.song(idx)
        if song is None:
            raise KeyError(idx)
        song.update(fields)
        atomic_write_text(self.songs_dir / idx / "song.json", json.dumps(song, indent=2, ensure_ascii=False))
        self.write_metadata()
        return song

    def attach_lrc(self, idx: str, lrc_file: str | os.PathLike) -> dict[str, Any]:
        """Keep a copy of a song's timed lyrics (LRC) with it; prepare reads its section timing."""
        dst = self.songs_dir / idx / "lyrics.lrc"
        shutil.copyfile(lrc_file, dst)
        return self.update_song(idx, lrc_path=str(dst), lrc_name=Path(lrc_file).name)

    def remove_song(self, idx: str) -> None:
        folder = self.songs_dir / str(idx)
        if folder.is_dir() and folder.parent == self.songs_dir:
            shutil.rmtree(folder)
        self.write_metadata()

    def write_metadata(self) -> Path:
        """The seed-format metadata.jsonl that `core.data.prepare` reads."""
        lines = []
        for s in self.songs():
            row = {"idx": s["idx"], "path": s["path"], "gt_lyric": s.get("gt_lyric", ""),
                   "descriptions": s.get("descriptions", "")}
            for k in ("vocal_path", "bgm_path"):
                if s.get(k):
                    row[k] = s[k]
            if s.get("lrc_path"):
                row["lrc"] = s["lrc_path"]
            if s.get("timing"):  # starts the user saved or accepted in the Timing editor
                row["timing"] = s["timing"]
            lines.append(json.dumps(row, ensure_ascii=False))
        atomic_write_text(self.metadata_path, "\n".join(lines) + ("\n" if lines else ""))
        return self.metadata_path

    # ---- bulk import --------------------------------------------------------------------------
    def import_files(self, paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
        """Audio files paired with same-named .txt lyrics (and .desc.txt / _desc.txt descriptions),
        plus any metadata.jsonl whose `path` entries are matched by file name among the uploads.
        Returns (added idx list, problems as plain sentences)."""
        files = [Path(p) for p in paths if p]
        by_name = {f.name: f for f in files}
        texts = {f.name[:-4]: f for f in files if f.suffix.lower() == ".txt"}
        added, problems, used = [], [], set()
        for f in files:
            if f.suffix.lower() != ".jsonl":
                continue
            for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    problems.append(f"{f.name} line {n}: not valid JSON, skipped")
                    continue
                p = str(row.get("path") or "")
                audio = Path(p) if Path(p).is_absolute() and Path(p).is_file() else by_name.get(Path(p).name)
                if audio is None:
                    problems.append(f"{f.name} line {n}: audio {p!r} was not uploaded, skipped")
                    continue
                desc = row.get("descriptions") or ""
                if isinstance(desc, list):
                    desc = ", ".join(map(str, desc))
                added.append(self.add_song(audio, str(row.get("gt_lyric") or ""), str(desc),
                                           idx=str(row.get("idx") or audio.stem)))
                lrc_f = by_name.get(Path(str(row.get("lrc") or "")).name) if row.get("lrc") else None
                if row.get("lrc") and lrc_f is None:
                    problems.append(f"{f.name} line {n}: LRC {row['lrc']!r} was not uploaded; song added without timing")
                elif lrc_f is not None:
                    self.attach_lrc(added[-1], lrc_f)
                used.add(audio.name)
        for f in files:
            if f.suffix.lower() not in AUDIO_EXT or f.name in used:
                continue
            lyric_f = texts.get(f.stem)
            desc_f = texts.get(f.stem + ".desc") or texts.get(f.stem + "_desc")
            lyric = lyric_f.read_text(encoding="utf-8", errors="replace").strip() if lyric_f else ""
            desc = desc_f.read_text(encoding="utf-8", errors="replace").strip() if desc_f else ""
            lrc_f = by_name.get(f.stem + ".lrc")
            if not lyric_f and not lrc_f:
                problems.append(f"{f.name}: no {f.stem}.txt lyrics uploaded; added with empty lyrics (edit them below)")
            added.append(self.add_song(f, lyric, desc))
            if lrc_f:
                self.attach_lrc(added[-1], lrc_f)
        return added, problems
