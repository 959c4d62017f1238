"""Where the tests find things: the one definition of ../shared (fixtures and sample data), found
relative to this repository so a clone anywhere works. conftest.py fails the session when it is missing."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"
SAMPLE_WAV = DATA / "sample_prompt_audio.wav"
TINY_FIXTURE = FIXTURES / "songgen-tiny-v2"
TINY_CKPT = TINY_FIXTURE / "ckpt" / "songgen_tiny_v2"
CODEC_FIXTURE = FIXTURES / "songgen-codec-tiny"

# what the suite cannot run without; checked once at session start
REQUIRED = (SAMPLE_WAV, TINY_CKPT / "model.pt", CODEC_FIXTURE / "cases.pt")


def bench_script(name: str) -> ModuleType:
    """A script of bench/ (not a package: each runs as `python bench/<name>.py`) imported by its path."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
