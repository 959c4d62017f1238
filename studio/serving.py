"""What the studio's HTTP server hands out, and to whom.

Gradio's file route (``/gradio_api/file=<path>``) serves every file under ``allowed_paths`` to anyone
who can name it. The workspace has to be an allowed path -- Gradio only copies a file an event returns
(a song, a sample, a plot) into its cache when it lies in one -- but the workspace also holds run
configs, metrics, every visitor's sandbox and studio bookkeeping, and its root is no secret. So:

- the file route never serves a file inside the workspace (or the key folder): ``FileGuard`` answers 403
  before Gradio looks at the path. A visitor gets their media from Gradio's cache, where the folder name
  is a seeded hash of the file's content: a path only the visitor who was sent it can name;
- uploads are capped at the sandbox's upload quota (``max_file_size``) and Gradio's temporary copies are
  deleted once they are an hour old (``delete_cache``): a song is copied into the sandbox when added.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote

UPLOAD_CACHE_S = 3600  # Gradio's temporary upload/output copies older than this are deleted (hourly)


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
    """Keyword arguments for Blocks.launch: the workspace is allowed (for Gradio's cache copy) and guarded
    (never served by path); uploads capped in a public studio."""
    from starlette.middleware import Middleware

    roots = [str(p) for p in protected]
    kw: dict = {"allowed_paths": roots[:1], "middleware": Middleware(FileGuard, protected=roots)}
    if max_upload_bytes:
        kw["max_file_size"] = int(max_upload_bytes)
    return kw
