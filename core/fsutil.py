"""Small filesystem helpers used across core and studio: atomic writes, safe names, checkpoint folders.

An atomic write goes to a temporary file in the same folder and is renamed over the target, so a
reader (the studio polling a run, a resume after a crash) never sees half a file.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda t: t.write_bytes(data))


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    import torch

    return _atomic(path, lambda t: torch.save(obj, t))


def slugify(text: str, fallback: str = "item", max_len: int = 60, sep: str = "-") -> str:
    """A name safe in any filesystem and URL: letters, digits, '.', '_' and '-'; other runs of
    characters become `sep` (song ids use "_", which users already have in their workspaces)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", sep, str(text).strip()).strip("-._")
    return s[:max_len] or fallback


_STEP = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(root: str | os.PathLike) -> list[Path]:
    """`step-N` folders under `root` (a run's checkpoints/ folder), oldest first; symlinks are skipped.

    Here rather than in core.training.safe_state so that core.runs.store (and the studio) can list checkpoints
    without importing torch."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()
             and not p.is_symlink()]
    return [p for _, p in sorted(found)]
