"""What the studio's HTTP server hands out, and to whom.

Gradio's file route (``/gradio_api/file=<path>``) serves every file under ``allowed_paths``, the static
paths, its upload folder and its cache folder to anyone who can name it. The workspace holds run
configs, metrics, every visitor's sandbox and studio bookkeeping, and its root is no secret. So:

- the workspace and the key folder are never allowed paths; they are Gradio's ``blocked_paths`` (neither
  served nor copied into Gradio's cache, even where they lie under the current or temp folder) and
  ``FileGuard`` answers 403 for them before Gradio looks at the path (defence in depth);
- a file an event returns (a song, a clip, a sample, a plot, a download) is handed to Gradio from a
  private staging folder under the system temp folder (``publish``; Gradio copies from there into its
  cache, whose folder name is a seeded hash of the file's content: a path only the visitor who was sent
  it can name). Staged files are deleted once they are ``STAGE_TTL_S`` old;
- uploads are capped at the sandbox's upload quota (``max_file_size``); Gradio's temporary copy of an
  upload is deleted once a handler has copied it into the sandbox (``discard_uploads``), and abandoned
  uploads and old cache copies once they are ``UPLOAD_CACHE_S`` old (``delete_cache``).
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import unquote

import gradio as gr
from gradio.utils import get_upload_folder

UPLOAD_CACHE_S = 600  # Gradio's temporary upload/output copies older than this are deleted (every 10 min)
STAGE_TTL_S = 300  # Gradio copies a staged file into its cache as the event ends (a kept refusal: within 2 min)

# output components whose value is a file Gradio copies into its cache
FILE_OUTPUTS = (gr.Audio, gr.File, gr.Image, gr.Video, gr.Gallery, gr.DownloadButton, gr.Model3D)


def _inside(path: str, roots: Iterable[Path]) -> bool:
    # both the path as written and the file it names (a symlink in the cache pointing back in)
    candidates = {Path(os.path.abspath(path))}
    try:
        candidates.add(Path(os.path.realpath(path)))
    except (OSError, ValueError):
        pass
    return any(c == r or r in c.parents for c in candidates for r in roots)


class FileGuard:
    """ASGI middleware: refuses the file route for any path inside `protected` folders."""

    def __init__(self, app, protected: Iterable[str | os.PathLike]):
        self.app = app
        self.roots = tuple(Path(os.path.realpath(p)) for p in protected)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope.get("path", "")
            at = path.find("/file=")
            if at >= 0 and _inside(unquote(path[at + len("/file="):]), self.roots):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"File not allowed."})
                return
        await self.app(scope, receive, send)


def launch_limits(protected: Iterable[str | os.PathLike], max_upload_bytes: Optional[int]) -> dict:
    """Keyword arguments for Blocks.launch: the protected folders blocked (no allowed path at all) and
    guarded; uploads capped in a public studio."""
    from starlette.middleware import Middleware

    roots = [str(p) for p in protected]
    kw: dict = {"blocked_paths": roots, "middleware": Middleware(FileGuard, protected=roots)}
    if max_upload_bytes:
        kw["max_file_size"] = int(max_upload_bytes)
    return kw


# ---- files an event returns ----------------------------------------------------------------------
class _Stage:
    """A private folder (0700, random name) under the system temp folder, made on first use."""

    def __init__(self):
        self._dir: Optional[Path] = None
        self._lock = threading.Lock()

    def folder(self) -> Path:
        with self._lock:
            if self._dir is None or not self._dir.is_dir():
                self._dir = Path(tempfile.mkdtemp(prefix="songgen-stage-"))
                atexit.register(shutil.rmtree, self._dir, True)
            return self._dir

    def sweep(self, now: float) -> None:
        for entry in self.folder().iterdir():
            try:
                if entry.stat().st_mtime < now - STAGE_TTL_S:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:  # swept by a concurrent event
                pass


_STAGE = _Stage()


def publish(path: str | os.PathLike) -> str:
    """A copy of the file at `path` that Gradio may take into its cache: a hard link (a copy across file
    systems) under a new random folder of the staging folder, keeping the file's name (a download's name)."""
    src = Path(path)
    now = time.time()
    _STAGE.sweep(now)
    folder = _STAGE.folder() / secrets.token_hex(16)
    folder.mkdir()
    dst = folder / src.name
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return str(dst)


def _published(value: Any) -> Any:
    """`value` of a file output with every local file it names published: a path, an update's value, a
    list of either (a gallery's (path, caption) pairs too)."""
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if text and Path(text).is_file() and not _inside(text, (Path(os.path.realpath(get_upload_folder())),)):
            return publish(text)
        return value
    if isinstance(value, dict) and value.get("__type__") == "update" and "value" in value:
        return {**value, "value": _published(value["value"])}
    if isinstance(value, (list, tuple)):
        return type(value)(_published(v) for v in value)
    return value


def publish_outputs(out: Any, outputs: list) -> Any:
    """An event's return value with the files of its file outputs published (the rest untouched)."""
    if not any(isinstance(o, FILE_OUTPUTS) for o in outputs):
        return out
    if isinstance(out, dict) and out.get("__type__") is None:  # {component: value}
        return {c: _published(v) if isinstance(c, FILE_OUTPUTS) else v for c, v in out.items()}
    if len(outputs) == 1:
        return _published(out)
    if isinstance(out, (list, tuple)) and len(out) == len(outputs):
        return type(out)(_published(v) if isinstance(c, FILE_OUTPUTS) else v for c, v in zip(outputs, out))
    return out


# ---- uploads -------------------------------------------------------------------------------------
def _upload_root() -> Path:
    return Path(os.path.realpath(get_upload_folder()))


def _uploads(values: Iterable[Any]) -> list[str]:
    """The paths inside Gradio's upload folder among handler arguments (a path, a list of paths)."""
    root, found = _upload_root(), []
    for v in values:
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            text = os.fspath(item) if isinstance(item, (str, os.PathLike)) else getattr(item, "name", None)
            # an upload reaches a handler as an absolute path: text fields (lyrics) are not paths to look up
            if isinstance(text, str) and os.path.isabs(text) and "\n" not in text and _inside(text, (root,)):
                found.append(text)
    return found


def check_uploads(args: Iterable[Any]) -> None:
    """Refuse an event whose upload is gone from the server (used once, or abandoned too long)."""
    from studio.feedback import UserError

    for path in _uploads(args):
        if not os.path.isfile(path):
            raise UserError("upload_gone", name=Path(path).name)


def discard_uploads(*values: Any) -> None:
    """Delete Gradio's temporary copy of uploads a handler has copied into the sandbox; only files in
    Gradio's upload folder (never a user's own path), and their folder once empty."""
    root = _upload_root()
    for path in _uploads(values):
        p = Path(path)
        if p.is_symlink() or not p.is_file():
            continue
        try:
            p.unlink()
            if Path(os.path.realpath(p.parent)) != root:
                p.parent.rmdir()  # Gradio keeps each upload in a folder of its own
        except OSError:  # already gone, or the folder holds another upload
            pass
