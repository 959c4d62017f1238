"""Where the studio runs: a laptop, a private Hugging Face Space, or a public demo Space.

Decision (documented in the UI and the report): on a Space (``SPACE_ID`` is set) the studio
starts in *demo mode* -- Train and Push are disabled, everything else works -- because a public
Space is shared by everyone who opens it and its GPU bill belongs to its owner. The owner of a
duplicated Space turns training on by setting the Space variable ``STUDIO_ALLOW_TRAINING=1``.
``STUDIO_DEMO_MODE=1`` forces demo mode anywhere (used by the tests); ``STUDIO_DEMO_MODE=0``
turns it off. A Space is *public* (one sandbox per visitor, see ``studio.sandbox``) unless its owner
sets ``STUDIO_PUBLIC=0``; ``STUDIO_PUBLIC=1`` turns sandboxes on anywhere.

The workspace is ``--workspace`` > ``$STUDIO_HOME`` > ``/data/songgen-studio`` on a Space with
persistent storage (``/data`` exists) > ``./workspace``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional


def _truthy(v: Optional[str]) -> Optional[bool]:
    if v is None or v.strip() == "":
        return None
    return v.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SpaceInfo:
    on_space: bool
    space_id: Optional[str]
    demo_mode: bool  # training and pushing disabled
    persistent_data: bool  # /data exists (Space persistent storage)
    oauth: bool = False  # "Sign in with Hugging Face" is configured (README: hf_oauth: true)
    public: bool = False  # one sandbox per visitor (studio.sandbox); server-wide settings locked

    @property
    def duplicate_url(self) -> Optional[str]:
        if not self.space_id:
            return None
        return f"https://huggingface.co/spaces/{self.space_id}?duplicate=true"


def detect(env: Mapping[str, str] | None = None, data_root: str | os.PathLike = "/data") -> SpaceInfo:
    env = os.environ if env is None else env
    space_id = env.get("SPACE_ID") or None
    on_space = space_id is not None
    forced = _truthy(env.get("STUDIO_DEMO_MODE"))
    allow = _truthy(env.get("STUDIO_ALLOW_TRAINING"))
    if forced is not None:
        demo = forced
    else:
        demo = on_space and not allow
    # A Space is public unless its owner says otherwise (STUDIO_PUBLIC=0 on a private duplicate):
    # training being allowed does not make a Space private.
    public = _truthy(env.get("STUDIO_PUBLIC"))
    return SpaceInfo(on_space=on_space, space_id=space_id, demo_mode=demo,
                     persistent_data=on_space and Path(data_root).is_dir(),
                     oauth=on_space and bool(env.get("OAUTH_CLIENT_ID")),
                     public=on_space if public is None else public)


def default_workspace(info: SpaceInfo, flag: str | None = None, env: Mapping[str, str] | None = None,
                      data_root: str | os.PathLike = "/data") -> Path:
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser()
    if env.get("STUDIO_HOME"):
        return Path(env["STUDIO_HOME"]).expanduser()
    if info.persistent_data:
        return Path(data_root) / "songgen-studio"
    return Path("workspace")
