"""A loopback stand-in for the parts of the Hugging Face Hub HTTP API that huggingface_hub's HfApi (and
datasets' `DatasetDict.push_to_hub` through it and HfFileSystem) calls when pushing: whoami-v2,
repos/create, validate-yaml, repo info, tree listing, paths-info, file download (resolve, with Range),
preupload (".parquet" files "lfs", every other
file "regular"), the LFS batch API with basic PUT transfer (Xet must be off in the client: the test sets
`constants.HF_HUB_DISABLE_XET`), and the ndjson commit with base64 file contents and
deletions. Binds 127.0.0.1 only; never forwards anything."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from urllib.parse import parse_qs, unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


LFS_SUFFIXES = (".parquet",)


class FakeHub:
    def __init__(self, token: str, user: str = "alice", orgs: tuple[str, ...] = ("alice-lab",)):
        self.token = token
        self.user = user
        self.orgs = list(orgs)
        self.repos: dict[tuple[str, str], dict[str, Any]] = {}   # (type, repo_id) -> {"private", "files", "owner"}
        self.requests: list[dict[str, Any]] = []
        self.commits: list[dict[str, Any]] = []
        self.lfs_blobs: dict[str, bytes] = {}   # sha256 -> content, PUT to a presigned-style URL
        self._lfs_secret = hashlib.sha1(token.encode() + b"lfs").hexdigest()
        self.server: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    # -- lifecycle
    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_PUT(self):
                hub._handle_lfs_put(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.url

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def add_repo(self, repo_id: str, repo_type: str = "model", owner: Optional[str] = None, private: bool = True):
        self.repos[(repo_type, repo_id)] = {"private": private, "files": {}, "owner": owner or repo_id.split("/")[0],
                                            "sha": hashlib.sha1(repo_id.encode()).hexdigest()}

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        return self.repos[(repo_type, repo_id)]["files"]

    # -- HTTP
    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        path = h.path.split("?")[0]
        self.requests.append({"method": method, "path": path, "auth": h.headers.get("Authorization")})
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._reply(h, 401, {"error": "Invalid credentials in Authorization header"},
                               {"X-Error-Message": "Invalid credentials in Authorization header"})
        if method == "GET" and path == "/api/whoami-v2":
            return self._reply(h, 200, {"type": "user", "name": self.user,
                                        "orgs": [{"name": o, "type": "org"} for o in self.orgs],
                                        "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if method == "POST" and path == "/api/validate-yaml":
            return self._reply(h, 200, {"errors": [], "warnings": []})
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(raw or b"{}")
            ns = body.get("organization") or self.user
            repo_id = f"{ns}/{body['name']}"
            rtype = body.get("type") or "model"
            if ns not in [self.user] + self.orgs:
                return self._reply(h, 403, {"error": "You don't have the rights to create a repo under this namespace"})
            if (rtype, repo_id) in self.repos:
                return self._reply(h, 409, {"error": "You already created this repo", "url": f"{self.url}/{repo_id}"})
            private = body.get("visibility") == "private" or bool(body.get("private"))
            self.add_repo(repo_id, rtype, owner=ns, private=private)
            prefix = "" if rtype == "model" else f"{rtype}s/"
            return self._reply(h, 200, {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id})
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and m:
            body = json.loads(raw)
            return self._reply(h, 200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"], "authenticated": True,
                 "actions": {"upload": {"href": f"{self.url}/lfs-upload/{self._lfs_secret}/{o['oid']}"}}}
                for o in body["objects"]]})
        if method in ("GET", "HEAD", "POST"):
            served = self._serve_read(h, method, path, raw)
            if served is not None:
                return served
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if method == "POST" and m:
            rtype, repo_id, action = m.group(1)[:-1], m.group(2), m.group(3)
            repo = self.repos.get((rtype, repo_id))
            if repo is None:
                return self._reply(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            if repo["owner"] not in [self.user] + self.orgs:
                return self._reply(h, 403, {"error": "forbidden"})
            if action == "preupload":
                files = json.loads(raw)["files"]
                return self._reply(h, 200, {"files": [{"path": f["path"], "shouldIgnore": False, "oid": None,
                                                       "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES)
                                                       else "regular"} for f in files]})
            lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            added, deleted = {}, []
            for x in lines:
                if x["key"] == "file":
                    assert x["value"]["encoding"] == "base64"
                    added[x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                elif x["key"] == "lfsFile":
                    blob = self.lfs_blobs.get(x["value"]["oid"])
                    if blob is None:
                        return self._reply(h, 422, {"error": f"LFS object {x['value']['oid']} was never uploaded"})
                    added[x["value"]["path"]] = blob
                elif x["key"] == "deletedFile":
                    deleted.append(x["value"]["path"])
                elif x["key"] != "header":
                    return self._reply(h, 400, {"error": f"unsupported commit operation {x['key']}"})
            for name in deleted:
                repo["files"].pop(name, None)
            repo["files"].update(added)
            oid = hashlib.sha1(raw).hexdigest()
            repo["sha"] = oid
            self.commits.append({"repo": repo_id, "type": rtype, "summary": header.get("summary"),
                                 "files": sorted(added), "deleted": sorted(deleted)})
            prefix = "" if rtype == "model" else f"{rtype}s/"
            return self._reply(h, 200, {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid,
                                        "success": True})
        return self._reply(h, 404, {"error": f"not implemented in the fake hub: {method} {path}"})

    def _handle_lfs_put(self, h: BaseHTTPRequestHandler) -> None:
        """The basic LFS transfer: an unauthenticated PUT to the URL the batch answer gave (like a presigned
        storage URL, it carries its own secret), checked against the announced sha256."""
        length = int(h.headers.get("Content-Length") or 0)
        data = h.rfile.read(length) if length else b""
        m = re.fullmatch(r"/lfs-upload/([0-9a-f]+)/([0-9a-f]{64})", h.path)
        if not m or m.group(1) != self._lfs_secret or hashlib.sha256(data).hexdigest() != m.group(2):
            return self._reply(h, 403, {"error": "bad LFS upload"})
        self.lfs_blobs[m.group(2)] = data
        h.send_response(200)
        h.send_header("Content-Length", "0")
        h.end_headers()

    # -- reads: repo info, tree, paths-info, resolve (the revision may be a branch or a commit sha: there is
    # only one, the latest)
    @staticmethod
    def _blob_oid(data: bytes) -> str:
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def _entries(self, files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict[str, Any]]:
        out, dirs = [], set()
        base = prefix.rstrip("/") + "/" if prefix else ""
        for name in sorted(files):
            if not name.startswith(base):
                continue
            rest = name[len(base):]
            if "/" in rest and not recursive:
                dirs.add(base + rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                dirs.update(base + "/".join(parts[:i + 1]) for i in range(len(parts)))
            out.append(self._file_entry(name, files[name]))
        return [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)] + out

    def _file_entry(self, name: str, data: bytes) -> dict[str, Any]:
        return {"type": "file", "path": name, "size": len(data), "oid": self._blob_oid(data)}

    def _serve_read(self, h: BaseHTTPRequestHandler, method: str, path: str, raw: bytes):
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+?)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?",
                         path)
        r = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and not (method == "POST" and m.group(3) != "paths-info"):
            rtype, repo_id, kind, sub = m.group(1)[:-1], m.group(2), m.group(3), unquote((m.group(5) or "").lstrip("/"))
        elif r and method in ("GET", "HEAD"):
            rtype, repo_id, kind, sub = (r.group(1) or "models/")[:-2], r.group(2), "resolve", unquote(r.group(4))
        else:
            return None
        repo = self.repos.get((rtype, repo_id))
        if repo is None:
            return self._reply(h, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        files = repo["files"]
        if kind in (None, "revision"):
            return self._reply(h, 200, {"id": repo_id, "sha": repo["sha"], "private": repo["private"],
                                        "siblings": [{"rfilename": n} for n in sorted(files)]})
        if kind == "tree":
            query = parse_qs(h.path.partition("?")[2])
            recursive = (query.get("recursive") or ["False"])[0].lower() == "true"
            if sub and sub not in files and not any(n.startswith(sub + "/") for n in files):
                return self._reply(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            return self._reply(h, 200, self._entries(files, sub, recursive))
        if kind == "paths-info":
            form = parse_qs(raw.decode())
            out = []
            for name in form.get("paths", []):
                if name in files:
                    out.append(self._file_entry(name, files[name]))
                elif any(n.startswith(name.rstrip("/") + "/") for n in files):
                    out.append({"type": "directory", "path": name, "oid": hashlib.sha1(name.encode()).hexdigest()})
            return self._reply(h, 200, out)
        if sub not in files:
            return self._reply(h, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        data = files[sub]
        status, body = 200, data
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        if rng:
            start, end = int(rng.group(1)), int(rng.group(2) or len(data) - 1)
            status, body = 206, data[start:end + 1]
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", f'"{self._blob_oid(data)}"')
        h.send_header("X-Repo-Commit", repo["sha"])
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)
        return True
