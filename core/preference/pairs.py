"""Preference pairs: the workspace's `datasets` dataset of (chosen, rejected) songs for one prompt.

One row = one judgement: for the same lyrics and description, the song with tokens `chosen` [3, T]
was preferred to the song with tokens `rejected` [3, T'] (mixed, vocal, bgm; codes 0..16383, no
EOS/empty ids inside a song). Rows also keep the seeds the two songs were generated with, the
prompt they answer (`prompt_id`, shared by every pair of one listening session), the prompt tokens
both songs were generated with (`prompt` [3, P], EMPTY where absent; null when there was none, and in
pair sets stored before this field, which still load), the model that made them and when the
judgement was made.

Stored with `save_to_disk` under `<workspace>/preference/pairs/` (or `dpo.pairs_dir`). Adding rows
writes a new folder and swaps it in, so a crash leaves the old dataset or the new one, never half.
jsonl import/export carries the same fields with tokens as nested lists; each bad line is named
with what is wrong and skipped, the good ones are added, and an existing pair is never replaced.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from core.errors import StudioError
from core.tokens import CODE_SIZE, EMPTY

FIELDS = ("pair_id", "prompt_id", "lyrics", "description", "chosen", "rejected", "chosen_seed", "rejected_seed",
          "model_id", "created", "prompt")
REQUIRED = ("prompt_id", "chosen", "rejected")


class PairError(StudioError, ValueError):
    """A preference pair (or pair file) that cannot be used; the message names it and the fix."""
    code = "pair"


def features():
    from datasets import Features, List, Value
    tokens = List(List(Value("int16")), length=3)
    return Features({"pair_id": Value("string"), "prompt_id": Value("string"), "lyrics": Value("string"),
                     "description": Value("string"), "chosen": tokens, "rejected": tokens,
                     "chosen_seed": Value("int64"), "rejected_seed": Value("int64"), "model_id": Value("string"),
                     "created": Value("string"), "prompt": tokens})


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pairs_dir(cfg) -> Path:
    """Where the workspace keeps its pairs: `dpo.pairs_dir`, else `<workspace>/preference/pairs`."""
    if cfg.dpo.pairs_dir:
        return Path(cfg.dpo.pairs_dir).expanduser()
    return cfg.workspace_dir() / "preference" / "pairs"


# ---- validation -----------------------------------------------------------------------------------
def check_tokens(value: Any, name: str, top: int = CODE_SIZE - 1) -> np.ndarray:
    """A song's tokens (ids 0..`top`) -> int64 array [3, T]; PairError naming `name` and the problem otherwise."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and all(isinstance(s, (list, tuple)) for s in value):
        lens = [len(s) for s in value]
        if len(set(lens)) > 1:
            raise PairError(f"{name}: the 3 streams must have the same number of frames, got {lens}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as err:
        raise PairError(f"{name}: not a [3, T] array of integers ({err})") from None
    if arr.dtype == object or arr.ndim != 2:
        raise PairError(f"{name}: must be [3, T] (mixed, vocal, bgm), got shape {arr.shape}")
    if arr.shape[0] != 3:
        raise PairError(f"{name}: must hold 3 streams (mixed, vocal, bgm), got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise PairError(f"{name}: the song has no frames")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise PairError(f"{name}: tokens must be integers")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise PairError(f"{name}: tokens must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr > top)
    if bad.any():
        q, t = (int(i) for i in np.argwhere(bad)[0])
        why = ("(a song's tokens end before EOS; no special ids inside)" if top < CODE_SIZE else
               f"({EMPTY} where the prompt is absent)")
        raise PairError(f"{name}[{q}, {t}] = {int(arr[q, t])}: tokens must be codes 0..{top} {why}")
    return arr


def _opt_int(value: Any, name: str) -> Optional[int]:
    """An int64 field (seeds): a bigger number would abort the whole dataset write, so it is this row's error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, float) and value.is_integer()):
        raise PairError(f"{name}: must be an integer or null, got {str(value)[:40]!r}")
    if not -2**63 <= int(value) < 2**63:
        raise PairError(f"{name}: {str(int(value))[:40]} does not fit a 64-bit integer")
    return int(value)


def _opt_str(value: Any, name: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise PairError(f"{name}: must be text or null, got {type(value).__name__}")


def make_pair_id(row: dict[str, Any]) -> str:
    """Content id: the same judgement (prompt, texts, both songs) always gets the same id."""
    h = hashlib.sha256()
    for key in ("prompt_id", "lyrics", "description"):
        h.update(str(row.get(key)).encode("utf-8") + b"\0")
    for key in ("chosen", "rejected") + (("prompt",) if row.get("prompt") is not None else ()):
        arr = np.ascontiguousarray(row[key], dtype=np.int64)  # no prompt: the id pairs had before the field
        h.update(str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()[:16]


def validate_row(row: Any) -> dict[str, Any]:
    """One pair as given (dict) -> a clean row for the dataset; PairError with every problem named."""
    if not isinstance(row, dict):
        raise PairError(f"a pair must be a JSON object with {', '.join(REQUIRED)}, got {type(row).__name__}")
    unknown = sorted(set(row) - set(FIELDS))
    problems = [f"unknown field(s) {unknown}; accepted: {', '.join(FIELDS)}"] if unknown else []
    missing = [k for k in REQUIRED if row.get(k) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    out: dict[str, Any] = {}
    for key in ("chosen", "rejected", "prompt"):
        if row.get(key) is not None:
            try:
                out[key] = check_tokens(row[key], key, EMPTY if key == "prompt" else CODE_SIZE - 1)
            except PairError as err:
                problems.append(str(err))
    out.setdefault("prompt", None)
    for key in ("pair_id", "prompt_id", "lyrics", "description", "model_id", "created"):
        try:
            out[key] = _opt_str(row.get(key), key)
        except PairError as err:
            problems.append(str(err))
    for key in ("chosen_seed", "rejected_seed"):
        try:
            out[key] = _opt_int(row.get(key), key)
        except PairError as err:
            problems.append(str(err))
    if out.get("prompt_id") is not None and not out["prompt_id"].strip():
        problems.append("prompt_id: must not be empty")
    if "chosen" in out and "rejected" in out and out["chosen"].shape == out["rejected"].shape \
            and np.array_equal(out["chosen"], out["rejected"]):
        problems.append("chosen and rejected are the same song: the pair says nothing; drop it")
    if problems:
        raise PairError("; ".join(problems))
    out["created"] = out.get("created") or now_iso()
    out["model_id"] = out.get("model_id") or ""
    out["pair_id"] = out.get("pair_id") or make_pair_id(out)
    return out


# ---- the store ------------------------------------------------------------------------------------
@dataclass
class AddReport:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "line 3: why" / "pair <id>: why"

    def to_dict(self) -> dict[str, Any]:
        return {"added": len(self.added), "skipped": self.skipped, "pair_ids": self.added}

    def summary(self) -> str:
        lines = [f"{len(self.added)} pair(s) added, {len(self.skipped)} skipped"]
        lines += [f"  - {s}" for s in self.skipped]
        return "\n".join(lines)


class PairStore:
    """The pairs dataset of one workspace folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def _recover(self) -> None:
        # a crash between the two renames of `_write` leaves the previous dataset as `.old`
        old = self.root.with_name(f".{self.root.name}.old")
        if not self.root.exists() and (old / "dataset_info.json").is_file():
            os.replace(old, self.root)

    def exists(self) -> bool:
        self._recover()
        return (self.root / "dataset_info.json").is_file()

    def load(self):
        """The pairs as a `datasets.Dataset` (empty, with the schema, when none are stored yet)."""
        import datasets
        if not self.exists():
            return datasets.Dataset.from_dict({k: [] for k in features()}, features=features())
        ds = datasets.load_from_disk(str(self.root))
        if "prompt" not in ds.column_names:  # stored before pairs kept their prompt: none recorded
            ds = ds.add_column("prompt", [None] * len(ds), feature=features()["prompt"])
        return ds

    def __len__(self) -> int:
        return len(self.load()) if self.exists() else 0

    def rows(self) -> list[dict[str, Any]]:
        return list(self.load())

    def add(self, rows: Iterable[dict[str, Any]], labels: Optional[list[str]] = None) -> AddReport:
        """Validate and append rows; bad or duplicate rows are skipped with a reason, the rest added."""
        rep = AddReport()
        rows = list(rows)
        labels = labels or [f"pair {i + 1}" for i in range(len(rows))]
        have = set(self.load()["pair_id"]) if self.exists() else set()
        good = []
        for label, row in zip(labels, rows):
            try:
                clean = validate_row(row)
            except PairError as err:
                rep.skipped.append(f"{label}: {err}")
                continue
            if clean["pair_id"] in have:
                rep.skipped.append(f"{label}: pair {clean['pair_id']} is already stored (kept as it was)")
                continue
            have.add(clean["pair_id"])
            good.append(clean)
            rep.added.append(clean["pair_id"])
        if good:
            self._write(good)
        return rep

    def remove(self, pair_ids: Iterable[str]) -> int:
        drop = set(pair_ids)
        ds = self.load()
        keep = [i for i, pid in enumerate(ds["pair_id"]) if pid not in drop]
        if len(keep) == len(ds):
            return 0
        self._save(ds.select(keep))
        return len(ds) - len(keep)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import datasets
        feats = features()
        data = {k: [(r[k].tolist() if isinstance(r[k], np.ndarray) else r[k]) for r in rows] for k in feats}
        new = datasets.Dataset.from_dict(data, features=feats)
        if self.exists():
            new = datasets.concatenate_datasets([self.load(), new])
        self._save(new)

    def _save(self, ds) -> None:
        import datasets
        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root.with_name(f".{self.root.name}.{os.getpid()}.tmp")
        old = self.root.with_name(f".{self.root.name}.old")
        shutil.rmtree(tmp, ignore_errors=True)
        was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            ds.flatten_indices().save_to_disk(str(tmp))
        finally:
            if was:
                datasets.enable_progress_bars()
        shutil.rmtree(old, ignore_errors=True)
        if self.root.exists():
            os.replace(self.root, old)
        os.replace(tmp, self.root)
        shutil.rmtree(old, ignore_errors=True)

    # ---- jsonl ------------------------------------------------------------------------------------
    def export_jsonl(self, path: str | os.PathLike) -> int:
        """Every pair as one JSON line (tokens as nested lists). -> number of lines."""
        from core.fsutil import atomic_write_text

        ds = self.load()
        lines = [json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False) for row in ds]
        atomic_write_text(Path(path), "".join(line + "\n" for line in lines))
        return len(lines)

    def import_jsonl(self, path: str | os.PathLike) -> AddReport:
        """Add the pairs of a jsonl file; each bad line is reported (`line N: ...`) and skipped."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise PairError(f"{path}: file not found")
        rows, labels, rep = [], [], AddReport()
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                    labels.append(f"{path.name} line {n}")
                except json.JSONDecodeError as err:
                    rep.skipped.append(f"{path.name} line {n}: not valid JSON ({err.msg} at column {err.colno})")
                except RecursionError:
                    rep.skipped.append(f"{path.name} line {n}: not valid JSON (nested too deeply)")
        added = self.add(rows, labels)
        added.skipped = rep.skipped + added.skipped
        return added


# ---- held-out split -------------------------------------------------------------------------------
def prompt_key(lyrics: Optional[str], description: Optional[str]) -> str:
    """What a prompt is for the held-out split: its text (two listening sessions of the same lyrics and
    description are one prompt, so their pairs can never sit on both sides)."""
    return f"{lyrics or ''}\0{description or ''}"


def split_prompts(prompt_keys: Iterable[str], val_fraction: float, seed: int) -> set[str]:
    """The prompts whose pairs are held out: each prompt on its own, held out when a hash of (seed, its key)
    falls in the first `val_fraction` of the hash range. A prompt's side depends on nothing else, so it
    never moves when pairs or prompts are added (about val_fraction of the prompts are held out)."""
    out = set()
    for key in set(prompt_keys):
        u = int(hashlib.sha256(f"{seed}/{key}".encode("utf-8")).hexdigest()[:16], 16) / 2.0 ** 64
        if u < val_fraction:
            out.add(key)
    return out
