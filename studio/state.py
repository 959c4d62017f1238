"""What the studio remembers lives in the workspace, never only in memory.

- ``uploads/songs/<idx>/song.json`` (+ the audio copy): one folder per song the user added.
- ``uploads/metadata.jsonl``: the seed-format list built from those folders, the input of prepare.
- ``studio.json``: small pointers (last prepared dataset, last base model choice).

Runs are found from ``runs/`` through ``core.runs.store``; a page reload rebuilds everything from here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from core.fsutil import atomic_write_text, slugify
from studio.i18n import said
from core.errors import StudioError

from core.audio.io import AUDIO_EXTENSIONS as AUDIO_EXT  # what prepare reads; no .m4a (libsndfile cannot)


@dataclass(frozen=True)
class Quota:
    """What one public-Space visitor may make the server hold or do (studio.sandbox). `compute_seconds`: the
    wall time of every tokenize and generation job (single, A/B, sweep, candidates) together; wall time,
    because one server process serves every visitor and a job's own CPU time cannot be told apart."""
    upload_bytes: int
    songs: int
    compute_seconds: float
    # an anonymous visitor's sandboxes (one per page load) share one count of compute seconds used, kept in
    # this file per client address, so a reload does not bring a fresh quota; forgotten after `ledger_ttl_s`
    # without a job (the idle time after which an anonymous sandbox is deleted)
    ledger: Optional[str] = None
    ledger_ttl_s: float = 2 * 3600.0


class QuotaExceeded(StudioError, ValueError):
    """A visitor's sandbox is full (songs or bytes); worded by code like core's refusals."""

    code = "quota"


class Workspace:
    def __init__(self, root: str | os.PathLike, import_roots: Iterable[str | os.PathLike] = (),
                 quota: Optional[Quota] = None):
        self.quota = quota
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # folders a local studio may read files from by path (named by the user with --import-root)
        self.import_roots = tuple(Path(r).expanduser().resolve() for r in import_roots)

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

    # ---- quota (public Space sandboxes) ---------------------------------------------------------
    def upload_bytes(self) -> int:
        """Bytes this workspace holds, every kind of file (songs, LRC, pairs, datasets, runs); a link (the
        shared demo model) costs nothing."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())

    def check_bytes(self, new_bytes: int) -> None:
        """Raise QuotaExceeded when `new_bytes` more would pass the sandbox's byte quota."""
        q = self.quota
        if q is None:
            return
        used = self.upload_bytes()
        if used + new_bytes > q.upload_bytes:
            p = {"used_mb": f"{used / 2**20:.1f}", "new_mb": f"{new_bytes / 2**20:.1f}",
                 "limit_mb": f"{q.upload_bytes / 2**20:.0f}"}
            raise QuotaExceeded(f"upload limit reached: {p['used_mb']} MiB used + {p['new_mb']} MiB new > "
                                f"{p['limit_mb']} MiB; remove songs first, or duplicate the Space to work without "
                                "limits", code="quota_bytes", **p)

    def check_room(self, new_bytes: int) -> None:
        """Raise QuotaExceeded when one more song of `new_bytes` would pass the sandbox's quota."""
        q = self.quota
        if q is None:
            return
        n = len(list(self.songs_dir.glob("*/song.json"))) if self.songs_dir.is_dir() else 0
        if n + 1 > q.songs:
            raise QuotaExceeded(f"song limit reached: this sandbox holds {n} songs (limit {q.songs}); "
                                "remove songs first, or duplicate the Space to work without limits",
                                code="quota_songs", n=n, limit=q.songs)
        self.check_bytes(new_bytes)

    def compute_seconds_used(self) -> float:
        q = self.quota
        if q is not None and q.ledger:
            path = Path(q.ledger)
            try:
                if time.time() - path.stat().st_mtime > q.ledger_ttl_s:
                    return 0.0
                return float(json.loads(path.read_text(encoding="utf-8"))["used"])
            except (OSError, ValueError, KeyError, TypeError):
                return 0.0
        st = self.get_state()  # a sandbox from before the compute quota counted its tokenize seconds alone
        return float(st.get("compute_seconds_used", st.get("tokenize_seconds_used", 0.0)))

    def compute_seconds_left(self) -> Optional[float]:
        """Seconds of tokenize and generation this sandbox may still spend; None: no quota (local studio)."""
        if self.quota is None:
            return None
        return max(0.0, self.quota.compute_seconds - self.compute_seconds_used())

    def add_compute_seconds(self, seconds: float) -> None:
        if self.quota is None:
            return
        used = round(self.compute_seconds_used() + max(0.0, float(seconds)), 3)
        if self.quota.ledger:  # one job at a time per sandbox; two tabs of one address may race by one job
            Path(self.quota.ledger).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(self.quota.ledger), json.dumps({"used": used}))
        else:
            self.set_state(compute_seconds_used=used)

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
        self.check_room(src.stat().st_size + sum(Path(v).stat().st_size for v in (stems or {}).values() if v))
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

    def _song_folder(self, idx: Any) -> Path | None:
        """The folder of song `idx`; None for anything that is not a song name this workspace made
        (a name with '/' or '..' would reach outside uploads/songs)."""
        idx = str(idx)
        return self.songs_dir / idx if re.fullmatch(r"[A-Za-z0-9._\-]+", idx) and idx not in (".", "..") else None

    def song(self, idx: str) -> dict[str, Any] | None:
        folder = self._song_folder(idx)
        if folder is None:
            return None
        f = folder / "song.json"
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
        folder = self._song_folder(idx)
        if folder is None or not folder.is_dir():
            raise KeyError(f"no song {idx!r}")
        dst = folder / "lyrics.lrc"
        self.check_bytes(Path(lrc_file).stat().st_size)
        shutil.copyfile(lrc_file, dst)
        return self.update_song(idx, lrc_path=str(dst), lrc_name=Path(lrc_file).name)

    def remove_song(self, idx: str) -> None:
        folder = self._song_folder(idx)
        if folder is not None and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
        self.write_metadata()

    def write_metadata(self) -> Path:
        """The seed-format metadata.jsonl that `core.data.prepare` reads."""
        lines = []
        for s in self.songs():
            row = {"idx": s["idx"], "path": s["path"], "gt_lyric": s.get("gt_lyric", ""),
                   "descriptions": s.get("descriptions", "")}
            for k in ("vocal_path", "bgm_path", "musicality", "source_name", "lrc_name"):  # names as given: messages
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
    def _server_file(self, p: str) -> tuple[Path | None, str]:
        """A path named inside an uploaded metadata.jsonl that was not itself uploaded: readable only on a
        local studio, inside a folder the user named (--import-root), never through '..' or a link out."""
        why_upload = "was not uploaded (upload the audio files together with metadata.jsonl)"
        if not self.import_roots:
            return None, why_upload + "; a path in an uploaded file is never read from the server"
        path = Path(p).expanduser()
        if ".." in path.parts:
            return None, why_upload + "; a path with '..' is refused"
        cands = [path] if path.is_absolute() else [r / path for r in self.import_roots]
        for cand in cands:
            real = cand.resolve()
            if any(real.is_relative_to(r) for r in self.import_roots) and real.is_file():
                return real, ""
        roots = ", ".join(str(r) for r in self.import_roots)
        return None, f"{why_upload}; on this studio only files inside {roots} are read"

    def _import_row(self, row: Optional[dict], fname: str, n: int, by_name: dict[str, Path],
                    problems: list[str]) -> Optional[tuple[str, str]]:
        """One line of an uploaded metadata.jsonl -> (the song added, its audio file name), or None with the
        reason in `problems`; QuotaExceeded passes up (no further song fits)."""
        from core.data.inputs import is_audio_name
        from core.text.fields import description_field, lyric_field

        where = f"{fname} line {n}"
        if row is None:
            problems.append(said("imp_bad_json", file=fname, line=n))
            return None
        p = row.get("path")
        if not isinstance(p, str) or not p.strip():
            problems.append(said("imp_no_path", file=fname, line=n))
            return None
        audio, why = by_name.get(Path(p).name), ""
        if audio is None:
            audio, why = self._server_file(p)
        if audio is None:
            problems.append(f"{where}: audio {p!r} {why}; skipped")
            return None
        if not is_audio_name(audio.name):
            problems.append(said("imp_not_audio", file=fname, line=n, name=audio.name,
                                 exts=", ".join(sorted(AUDIO_EXT))))
            return None
        lyric, err_l = lyric_field(row.get("gt_lyric"), where)
        desc, err_d = description_field(row.get("descriptions", row.get("description")), where)
        if err_l or err_d:
            problems += [e + "; skipped" for e in (err_l, err_d) if e]
            return None
        idx = row.get("idx")
        idx = self.add_song(audio, lyric or "", desc or "",
                            idx=str(idx) if isinstance(idx, (str, int)) and str(idx).strip() else None)
        if row.get("musicality"):  # kept as given; the song check names a value outside the tiers
            self.update_song(idx, musicality=str(row["musicality"]))
        lrc = row.get("lrc")
        if lrc:  # matched like the audio: an uploaded file of that name, or a file under an import root
            lrc_f, why = (by_name.get(Path(str(lrc)).name), "was not uploaded") if isinstance(lrc, str) \
                else (None, "is not a file name")
            if lrc_f is None and isinstance(lrc, str):
                lrc_f, why = self._server_file(lrc)
            if lrc_f is None:
                problems.append(f"{where}: LRC {lrc!r} {why}; song added without timing")
            else:
                self.attach_lrc(idx, lrc_f)
        return idx, audio.name

    def import_files(self, paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
        """Audio files paired with their sidecars by core's naming rule (core.data.inputs.sidecar_names: NAME.txt
        lyrics, NAME.lrc, NAME.desc.txt description), as a folder given to prepare pairs them,
        plus any metadata.jsonl whose `path` entries are matched by file name among the uploads.
        Returns (added idx list, problems as plain sentences).

        Only the uploaded files are read: a jsonl `path` is matched by its file name among them (the
        seed format holds paths of the machine that wrote it); anything else is refused with a reason,
        except, on a local studio, files inside the folders named with --import-root.
        """
        from core.data.inputs import is_audio_name, metadata_rows, sidecar_names
        from core.text.fields import decode_text, lyric_field

        problems: list[str] = []
        files: list[Path] = []
        for p in paths:
            if not p:
                continue
            f = Path(p)
            if f.is_symlink() or not f.is_file():
                problems.append(said("imp_not_uploaded", name=f.name))
                continue
            files.append(f)
        by_name = {f.name: f for f in files}

        def read_text(f: Path) -> str | None:
            text, err = decode_text(f.read_bytes(), f.name)
            if err:
                problems.append(err + "; skipped that file")
            return text

        added: list[str] = []
        used: set[str] = set()
        for f in files:
            if f.suffix.lower() != ".jsonl":
                continue
            for n, _, row, _ in metadata_rows(read_text(f) or ""):
                try:
                    got = self._import_row(row, f.name, n, by_name, problems)
                except QuotaExceeded as err:
                    problems.append(f"{f.name} line {n}: {err}")
                    return added, problems
                if got is not None:
                    added.append(got[0])
                    used.add(got[1])
        for f in files:
            if not is_audio_name(f.name) or f.name in used:
                continue
            names = sidecar_names(f.stem)
            lyric_f = by_name.get(names["lyrics"])
            desc_f = next((by_name[n] for n in names["desc"] if n in by_name), None)
            lyric = read_text(lyric_f) if lyric_f else ""
            desc = read_text(desc_f) if desc_f else ""
            if lyric is None or desc is None:
                problems.append(said("imp_text_unreadable", name=f.name))
                continue
            lyric, err_l = lyric_field(lyric.strip(), lyric_f.name if lyric_f else f.name)
            if err_l:
                problems.append(err_l + f"; {f.name} not added")
                continue
            lrc_f = by_name.get(names["lrc"])
            if not lyric_f and not lrc_f:
                problems.append(said("imp_no_lyrics", name=f.name, stem=f.stem))
            try:
                added.append(self.add_song(f, lyric or "", desc.strip()))
            except QuotaExceeded as err:
                problems.append(f"{f.name}: {err}")
                break
            if lrc_f:
                self.attach_lrc(added[-1], lrc_f)
        return added, problems
