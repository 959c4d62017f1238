"""Public Space mode: every visitor works in a sandbox of their own.

On a public Space one server process serves everyone, so the studio's workspace is split:

- a visitor's sandbox is ``<workspace>/sandboxes/<id>/`` (an ordinary studio Workspace inside). The id
  is an HMAC of the signed-in Hugging Face user name (kept across visits) or, for an anonymous visitor,
  of Gradio's session hash (one page load) -- keyed with a server secret, so an id can neither be
  guessed from a user name nor chosen by a visitor;
- every event handler finds its sandbox from the request Gradio is serving (``gr.Request``:
  ``session_hash``, and the OAuth session a "Sign in with Hugging Face" button fills), never from a
  value the browser sends, so there is no way to name another visitor's songs, runs or checkpoints;
- quotas bound what one visitor can make the server hold or do: uploaded bytes, songs, and compute seconds
  (the wall time of tokenize and every generation job together, stopped at the quota while a job runs);
- sandboxes idle for longer than the idle limit are deleted (anonymous ones sooner than signed-in ones);
  one with a live training process is kept.

Outside an event (the page being built) there is no visitor: a blank, never-written workspace is used,
so the page every visitor first receives shows nobody's data.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

from studio.feedback import UserError
from studio.state import Quota, Workspace

LAST_SEEN = ".last_seen"
OWNER = ".owner.json"
JOB_LOCK = ".job.lock"
COMPUTE = ".compute"  # per client address: compute seconds its anonymous sandboxes used (Quota.ledger)


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = 200 * 2**20
    songs: int = 20
    compute_seconds: float = 900.0  # tokenize + generation (single, A/B, sweep, candidates), wall time
    idle_anonymous_s: float = 2 * 3600.0
    idle_user_s: float = 7 * 24 * 3600.0
    new_sandboxes: int = 10  # per client address and window: each anonymous page load makes one
    new_sandbox_window_s: float = 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Limits":
        env = os.environ if env is None else env

        def num(key: str, default: float) -> float:
            raw = env.get(key)
            if raw is None or not raw.strip():
                return default
            val = float(raw)
            if not (val > 0 and val != float("inf")):
                raise ValueError(f"{key}={raw!r}: expected a positive finite number")
            return val

        d = cls()
        return cls(upload_bytes=int(num("STUDIO_QUOTA_UPLOAD_MB", d.upload_bytes / 2**20) * 2**20),
                   songs=int(num("STUDIO_QUOTA_SONGS", d.songs)),
                   # STUDIO_QUOTA_TOKENIZE_S: the name this quota had when it counted tokenizing alone
                   compute_seconds=num("STUDIO_QUOTA_COMPUTE_S", num("STUDIO_QUOTA_TOKENIZE_S", d.compute_seconds)),
                   idle_anonymous_s=num("STUDIO_SANDBOX_IDLE_S", d.idle_anonymous_s),
                   idle_user_s=num("STUDIO_SANDBOX_USER_IDLE_S", d.idle_user_s),
                   new_sandboxes=int(num("STUDIO_NEW_SANDBOXES_PER_HOUR", d.new_sandboxes)))

    def quota(self, ledger: Optional[Path] = None) -> Quota:
        return Quota(upload_bytes=self.upload_bytes, songs=self.songs, compute_seconds=self.compute_seconds,
                     ledger=str(ledger) if ledger else None, ledger_ttl_s=self.idle_anonymous_s)


# ---- settings a visitor may not choose ---------------------------------------------------------------
def public_models() -> set[str]:
    """Base models a public-Space visitor may pick besides the demo: local folders the Space owner
    listed in STUDIO_PUBLIC_MODELS (comma-separated). Hub ids are never accepted from visitors."""
    return {p.strip() for p in os.environ.get("STUDIO_PUBLIC_MODELS", "").split(",") if p.strip()}


def check_visitor_choice(ws, base_kind: Optional[str] = None, base_path: Optional[str] = None,
                         runtime_path: Optional[str] = None) -> None:
    """In a sandbox (public Space), refuse choices that would reach outside it: a Hub id (a download for
    everyone), a server folder as base model or runtime root. No effect on a local or private studio."""
    if getattr(ws, "quota", None) is None:
        return
    if base_kind is not None and base_kind != "demo" and (base_path or "").strip() not in public_models():
        raise UserError("public_model_only")  # worded in the visitor's language (studio.feedback)
    if (runtime_path or "").strip():
        raise UserError("public_no_runtime")


# a sandbox's job that was answered for at its time bound while still inside one call: busy until it ends
_LEFT_BEHIND: dict[str, threading.Thread] = {}


@contextlib.contextmanager
def one_job(ws) -> Iterator[None]:
    """One job at a time per visitor (tokenize, SFT, DPO, generation): a second one -- another tab, a
    script calling the API in parallel -- is refused while the first runs or a training of the sandbox
    is active. No effect on a local or private studio."""
    if getattr(ws, "quota", None) is None:
        yield
        return
    from core.runs import store as runs

    with open(ws.root / JOB_LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError("job_busy") from None
        try:
            behind = _LEFT_BEHIND.get(str(ws.root))
            if runs.active_run(ws.root) is not None or (behind is not None and behind.is_alive()):
                raise UserError("job_busy")
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def compute_job(ws) -> Iterator[Optional[float]]:
    """one_job, for a job that spends the visitor's compute quota (tokenize, any generation): refused when the
    quota is spent; yields the seconds left (None on a local or private studio), which the job's
    core.runs.budget checks at every step; the job's wall time is charged when it ends, however it ends."""
    from core.runs import budget

    with one_job(ws):
        left = ws.compute_seconds_left()
        if left is not None and left <= 0:
            raise UserError("compute_quota", secs=f"{ws.quota.compute_seconds:.0f}")
        t0 = budget.now()
        try:
            yield left
        finally:
            if left is not None:
                ws.add_compute_seconds(budget.now() - t0)


def hold_while_running(ws, worker: Optional[threading.Thread]) -> None:
    """A job answered for at its time bound whose thread still runs (core.runs.budget.run_watched): the
    visitor's sandbox stays busy for one_job until it ends. No effect on a local or private studio."""
    if getattr(ws, "quota", None) is not None and worker is not None and worker.is_alive():
        _LEFT_BEHIND[str(ws.root)] = worker


def check_processes(ws, cfg) -> None:
    """In a sandbox, training.num_processes may not exceed what this one machine runs (core decides)."""
    if getattr(ws, "quota", None) is not None:
        from core.runs.launch import check_one_machine

        check_one_machine(cfg)


def hide_paths(ws, text: str) -> str:
    """Text shown to a visitor without the server's folders: the sandbox reads as `~`, the workspace
    (the shared demo model) as `(studio)`. Unchanged on a local or private studio."""
    if getattr(ws, "quota", None) is None or not isinstance(text, str):
        return text
    return text.replace(str(ws.root), "~").replace(str(ws.root.parent.parent), "(studio)")


class NoVisitor(RuntimeError):
    """An event arrived without a Gradio request (no session): nothing may be read or written."""


def signed_in_user(request: Any) -> Optional[str]:
    """The Hugging Face user name of a request signed in with gr.LoginButton, else None.

    Gradio keeps the OAuth result in the Starlette session (``oauth_info``; gradio.oauth), which
    exists only when the Space has ``hf_oauth: true``; ``request.username`` is set by gradio's own auth.
    """
    name = getattr(request, "username", None)
    if name:
        return str(name)
    try:
        from gradio.helpers import _session_from_request
        from gradio.oauth import _get_valid_oauth_info_from_session

        info = _get_valid_oauth_info_from_session(_session_from_request(request))
    except Exception:
        return None
    user = (info or {}).get("userinfo") or {}
    return str(user["preferred_username"]) if user.get("preferred_username") else None


def client_address(request: Any) -> str:
    """The visitor's address: on a Space, the hop its proxy added last to X-Forwarded-For (earlier entries
    are whatever the client sent); elsewhere the socket's peer (a header there is the client's own word)."""
    headers = getattr(request, "headers", None) or {}
    forwarded = [h.strip() for h in str(headers.get("x-forwarded-for", "")).split(",") if h.strip()]
    if forwarded and os.environ.get("SPACE_ID"):
        return forwarded[-1]
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


class Sandboxes:
    def __init__(self, root: str | os.PathLike, limits: Limits | None = None):
        workspace = Path(root).expanduser().resolve()
        self.root = workspace / "sandboxes"
        self.root.mkdir(parents=True, exist_ok=True)
        # the key lives beside the workspace, never inside it (the workspace is an allowed path of the
        # server, studio.serving); STUDIO_KEY_DIR moves it elsewhere
        self.key_dir = Path(os.environ.get("STUDIO_KEY_DIR") or f"{workspace}.keys").expanduser().resolve()
        self.limits = limits or Limits()
        self._secret = self._load_secret()
        self._lock = threading.Lock()
        self._created: dict[str, list[float]] = {}  # client address -> times it made a new sandbox
        self.shared_demo = workspace / "models" / "demo"
        self.blank = Workspace(self.root / ".blank")
        self.sweep()  # what idled out while the server was down
        self._last_sweep = time.time()

    def _load_secret(self) -> bytes:
        path = self.key_dir / "sandbox.key"
        old = self.root / ".secret"  # where earlier versions kept it: moved out, so sandboxes keep their ids
        if old.is_file() and not path.exists():
            self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(old, path)
        old.unlink(missing_ok=True)
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            pass
        key = secrets.token_bytes(32)
        self.key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        return key

    def sandbox_id(self, kind: str, name: str) -> str:
        return hmac.new(self._secret, f"{kind}:{name}".encode(), hashlib.sha256).hexdigest()[:32]

    def for_request(self, request: Any) -> Workspace:
        user = signed_in_user(request)
        session = getattr(request, "session_hash", None)
        if user:
            kind, name = "user", user
        elif session:
            kind, name = "session", str(session)
        else:
            raise NoVisitor("this request carries no Gradio session; reload the page")
        sid = self.sandbox_id(kind, name)
        folder = self.root / sid
        fresh = not folder.is_dir()
        address = client_address(request)
        if fresh:
            self._count_new(address)
        # a signed-in user's sandbox keeps its compute count; anonymous ones (a new one per page load) share
        # their address's count, so a reload does not bring a fresh quota
        ledger = None if kind == "user" else self.root / COMPUTE / f"{self.sandbox_id('address', address)}.json"
        ws = Workspace(folder, quota=self.limits.quota(ledger))
        if fresh:
            (folder / OWNER).write_text(json.dumps({"kind": kind, "created": time.time()}), encoding="utf-8")
            self._link_demo(folder)
        (folder / LAST_SEEN).touch()
        self.maybe_sweep()
        return ws

    def _count_new(self, address: str) -> None:
        """At most `limits.new_sandboxes` new sandboxes per client address per `limits.new_sandbox_window_s`
        (every page load of an anonymous visitor is one: a script reloading costs disk otherwise)."""
        now = time.time()
        with self._lock:
            recent = [t for t in self._created.get(address, []) if now - t < self.limits.new_sandbox_window_s]
            if len(recent) >= self.limits.new_sandboxes:
                self._created[address] = recent
                raise UserError("sandbox_rate", n=self.limits.new_sandboxes,
                                minutes=f"{self.limits.new_sandbox_window_s / 60:.0f}")
            self._created[address] = recent + [now]

    def _link_demo(self, folder: Path) -> None:
        """The demo model is shared by every sandbox (built once in the workspace, read only): the
        sandbox's models/demo is a link to it, so a visitor costs no copy of it."""
        from core.model.demo import ensure_demo_runtime

        ensure_demo_runtime(self.shared_demo.parent.parent)
        (folder / "models").mkdir(exist_ok=True)
        link = folder / "models" / "demo"
        try:
            link.symlink_to(self.shared_demo, target_is_directory=True)
        except FileExistsError:  # a fresh page's load events create its sandbox at the same time
            if not (link.is_symlink() and link.resolve() == self.shared_demo.resolve()):
                raise

    def current(self) -> Workspace:
        """The sandbox of the visitor whose event is being served; the blank workspace while building."""
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
        if request is None:
            if LocalContext.in_event_listener.get(False):
                raise NoVisitor("this event carries no Gradio session; reload the page")
            return self.blank
        return self.for_request(request)

    # ---- cleanup ------------------------------------------------------------------------------
    def maybe_sweep(self, every_s: float = 60.0) -> None:
        now = time.time()
        if now - self._last_sweep < every_s:
            return
        self._last_sweep = now
        threading.Thread(target=self.sweep, daemon=True, name="sandbox-sweep").start()

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete sandboxes idle past their limit (none with a live run); returns the removed ids."""
        from core.runs import store as runs

        now = time.time() if now is None else now
        removed = []
        with self._lock:
            for folder in self.root.iterdir():
                if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
                    continue
                try:
                    owner = json.loads((folder / OWNER).read_text(encoding="utf-8")).get("kind")
                except (OSError, ValueError):
                    owner = "session"
                idle = self.limits.idle_user_s if owner == "user" else self.limits.idle_anonymous_s
                seen = folder / LAST_SEEN
                last = seen.stat().st_mtime if seen.exists() else folder.stat().st_mtime
                if now - last < idle:
                    continue
                if any(runs.run_status(r["run_dir"]).get("alive") for r in runs.list_runs(folder)):
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
            for ledger in (self.root / COMPUTE).glob("*.json"):  # addresses whose count is forgotten
                if now - ledger.stat().st_mtime > self.limits.idle_anonymous_s:
                    ledger.unlink(missing_ok=True)
        return removed
