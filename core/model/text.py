"""Text tokenization for the two text conditioners.

SongGeneration uses only Qwen2's *tokenizer* (no text encoder): lyrics and style descriptions
become ids that index LeLM's own embedding tables. The lyric tokenizer adds the 13 structure tags
of `conf/vocab.yaml` (v2 also registers "." as special so it is always its own token); the
description tokenizer adds, for v2 only, the musicality / pure-music tags and ".".
The pad id and the structure-id offset are read from the tokenizer, so a smaller tokenizer (the
demo model's) works with the same code.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch

from core.text.description import MUSICALITY_TAGS

IM_START = "<|im_start|>"
PAD_TOKEN = "<|endoftext|>"
V2_DESCRIPTION_TAGS = list(MUSICALITY_TAGS)  # the v2 tokenizer's added tokens, in the official order
NUM_STRUCTURE_EMBEDDINGS = 200  # size of the official structure table
# SongGeneration's Qwen2 tokenizer files (Apache-2.0), bundled gzip-compressed: see its README.md
OFFICIAL_TOKENIZER_ASSETS = Path(__file__).resolve().parents[2] / "assets" / "qwen2-tokenizer"


@lru_cache(maxsize=8)
def _load_tokenizer(token_dir: str, added: tuple[str, ...]):
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer.from_pretrained(token_dir)
    if added:
        tok.add_special_tokens({"additional_special_tokens": list(added)})
    return tok


@dataclass
class TextBatch:
    ids: torch.LongTensor          # [B, max_len] padded / truncated
    mask: torch.LongTensor         # [B, max_len] 1 = real token
    structure: Optional[torch.LongTensor]  # [B, max_len] (lyrics only)
    raw_ids: list[list[int]]       # ids before padding / truncation
    raw_structure: Optional[list[list[int]]]


class TextTokenizer:
    """`"<|im_start|>" + text` -> ids (and structure ids for lyrics), padded to `max_len`."""

    def __init__(self, token_dir: str | Path, max_len: int, added_tokens: Sequence[str] = (),
                 structure_tags: Sequence[str] = ()):
        self.token_dir = str(token_dir)
        self.max_len = int(max_len)
        self.tokenizer = _load_tokenizer(self.token_dir, tuple(added_tokens))
        self.pad_id = self.tokenizer.convert_tokens_to_ids(PAD_TOKEN)
        if self.pad_id is None or self.pad_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer in {self.token_dir} has no {PAD_TOKEN} token")
        self.structure_tags = list(structure_tags)
        self.tag_ids = [self.tokenizer.convert_tokens_to_ids(t) for t in self.structure_tags]
        if self.tag_ids:
            # Structure value of a tag = its id - (id of the first tag - 1): 1..13 for the official tags.
            self.structure_offset = self.tag_ids[0] - 1
            if self.tag_ids != list(range(self.tag_ids[0], self.tag_ids[0] + len(self.tag_ids))):
                raise ValueError(f"structure tags of {self.token_dir} do not have consecutive ids: {self.tag_ids}")
        else:
            self.structure_offset = 0

    def __len__(self) -> int:
        return len(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def token_ids(self, text: Optional[str]) -> list[int]:
        return self.tokenizer(IM_START + (text or ""), add_special_tokens=False)["input_ids"]

    def structure_ids(self, ids: list[int]) -> list[int]:
        out = [0] * len(ids)
        if not self.tag_ids:
            return out
        lo, hi = self.tag_ids[0], self.tag_ids[-1]
        current = 0
        for pos, tok in enumerate(ids):
            if lo <= tok <= hi:
                current = tok - self.structure_offset
            out[pos] = current
        return out

    def __call__(self, texts: Sequence[Optional[str]]) -> TextBatch:
        raw = [self.token_ids(t) for t in texts]
        raw_struct = [self.structure_ids(r) for r in raw] if self.tag_ids else None
        B, L = len(raw), self.max_len
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        struct = torch.zeros((B, L), dtype=torch.long) if raw_struct is not None else None
        for b, r in enumerate(raw):
            n = min(len(r), L)
            ids[b, :n] = torch.tensor(r[:n], dtype=torch.long)
            mask[b, :n] = 1
            if struct is not None:
                struct[b, :n] = torch.tensor(raw_struct[b][:n], dtype=torch.long)
        return TextBatch(ids, mask, struct, raw, raw_struct)


def lyric_tokenizer(token_dir: str | Path, max_len: int, structure_tags: Sequence[str], version: str) -> TextTokenizer:
    added = list(structure_tags) + (["."] if version == "v2" else [])
    return TextTokenizer(token_dir, max_len, added, structure_tags)


def description_tokenizer(token_dir: str | Path, max_len: int, version: str) -> TextTokenizer:
    added = V2_DESCRIPTION_TAGS + ["."] if version == "v2" else []
    return TextTokenizer(token_dir, max_len, added)


def base_vocab_size(token_dir: str | Path) -> int:
    """Size of the tokenizer without our added tags (151646 for Qwen2)."""
    return len(_load_tokenizer(str(token_dir), ()))


def official_token_dir(dest: str | Path) -> Path:
    """SongGeneration's own Qwen2 tokenizer files, unpacked once into `dest` (an official runtime's
    `third_party/Qwen2-7B` layout), for counting lyrics as the official model counts them."""
    dest = Path(dest)
    names = ("vocab.json", "merges.txt", "tokenizer_config.json")
    if all((dest / n).is_file() for n in names):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".qwen2-", dir=dest.parent))
    try:
        for n in names[:2]:
            with gzip.open(OFFICIAL_TOKENIZER_ASSETS / f"{n}.gz", "rb") as src, open(tmp / n, "wb") as out:
                shutil.copyfileobj(src, out)
        shutil.copy(OFFICIAL_TOKENIZER_ASSETS / names[2], tmp / names[2])
        try:
            os.replace(tmp, dest)
        except OSError:  # another process unpacked it first
            if not all((dest / n).is_file() for n in names):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
