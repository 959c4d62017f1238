"""A loopback stand-in for the parts of the Hugging Face Hub HTTP API that huggingface_hub's HfApi calls
when pushing: whoami-v2, repos/create, validate-yaml, preupload (every file "regular", so no LFS/Xet),
and the ndjson commit with base64 file contents. Binds 127.0.0.1 only; never forwards anything."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional


class FakeHub:
    def __init__(self, token: str, user: str = "alice", orgs: tuple[str, ...] = ("alice-lab",)):
        self.token = token
        self.user = user
        self.orgs = list(orgs)
        self.repos: dict[tuple[str, str], dict[str, Any]] = {}   # (type, repo_id) -> {"private", "files", "owner"}
        self.requests: list[dict[str, Any]] = []
        self.commits: list[dict[str, Any]] = []
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
        self.repos[(repo_type, repo_id)] = {"private": private, "files": {}, "owner": owner or repo_id.split("/")[0]}

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
                return self._reply(h, 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                       "oid": None} for f in files]})
            lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            added = {}
            for x in lines:
                if x["key"] == "file":
                    assert x["value"]["encoding"] == "base64"
                    added[x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                elif x["key"] != "header":
                    return self._reply(h, 400, {"error": f"unsupported commit operation {x['key']}"})
            repo["files"].update(added)
            oid = hashlib.sha1(raw).hexdigest()
            self.commits.append({"repo": repo_id, "type": rtype, "summary": header.get("summary"),
                                 "files": sorted(added)})
            prefix = "" if rtype == "model" else f"{rtype}s/"
            return self._reply(h, 200, {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid,
                                        "success": True})
        return self._reply(h, 404, {"error": f"not implemented in the fake hub: {method} {path}"})
