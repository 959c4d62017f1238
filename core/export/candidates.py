"""k candidate songs for one lyric + description, to listen to and judge.

`generate_candidates` runs the current model (the base, or a LoRA / full checkpoint) through
`core.export.generate.generate_song` k times with distinct seeds (seed, seed + 1, ...), so every candidate
is a normal test song: `<workspace>/preference/candidates/<prompt_id>/cand-<i>_seed<S>.wav`, its
settings JSON and its tokens (`.tokens.npy`), plus `candidates.json` describing the set and the prompt
tokens every candidate was generated with (`prompt.tokens.npy`, when generation.prompt_* gives one). Marking
(`mark`: one preferred vs the rejected ones, or `rank`: an order from best to worst, every
better/worse combination) turns the stored tokens into preference pairs in the workspace's store, each
carrying that prompt so DPO scores the songs under the condition they were made with.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from core.fsutil import atomic_write_json
from core.preference.pairs import AddReport, PairError, PairStore, now_iso, pairs_dir
from core.runs.budget import Budget, generation_bound

SET_FILE = "candidates.json"
PROMPT_FILE = "prompt.tokens.npy"


def candidates_root(cfg) -> Path:
    return cfg.workspace_dir() / "preference" / "candidates"


def model_id(loader, checkpoint: Optional[str], strength: float) -> str:
    if checkpoint is None:
        return f"base:{loader.base_dir}"
    from core.export.merge import checkpoint_kind
    kind = checkpoint_kind(checkpoint)
    return f"{kind}:{Path(checkpoint).expanduser().resolve()}" + (f"@{strength:g}" if kind == "lora" else "")


def generate_candidates(cfg, lyrics: str, description: Optional[str], k: int = 2, *, seed: int = 0,
                        checkpoint: Optional[str] = None, strength: float = 1.0,
                        max_seconds: Optional[float] = None, loader=None,
                        progress: Optional[Callable[[int, int, int], None]] = None,
                        on_stage: Optional[Callable[[str, str], None]] = None,
                        budget: Optional[Budget] = None) -> dict[str, Any]:
    """Generate k candidates (seeds seed..seed+k-1) -> the set record (also written as candidates.json).
    `on_stage(stage, name)` hears the stages without frame counts ("load", "decode"), as in
    compare.run_models. `budget` (default: the config's generation bounds) is checked at every frame and
    stage; a stopped job leaves its set marked "stopped" (list_sets and marking skip it)."""
    from core.codec import get_codec
    from core.export.generate import GenerationError, ModelLoader, ModelSpec

    if k < 2:
        raise GenerationError("generate at least 2 candidates to compare")
    if not (lyrics or "").strip():
        raise GenerationError("give lyrics for the candidates")
    loader = loader or ModelLoader(cfg)
    budget = budget or Budget.from_section(cfg.generation, "candidates", "generation")
    codec = get_codec(cfg)
    mid = model_id(loader, checkpoint, strength)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    digest = hashlib.sha256(f"{lyrics}\0{description}\0{mid}\0{seed}\0{time.time_ns()}".encode()).hexdigest()[:8]
    prompt_id = f"{stamp}-{digest}"
    out = candidates_root(cfg) / prompt_id
    spec = ModelSpec("base" if checkpoint is None else Path(checkpoint).name, checkpoint, strength)
    record: dict[str, Any] = {"prompt_id": prompt_id, "lyrics": lyrics, "description": description,
                              "model_id": mid, "model": spec.describe(), "created": now_iso(),
                              "max_seconds": max_seconds, "codec": getattr(codec, "id", None),
                              "demo": bool(getattr(codec, "is_demo", False)), "items": [], "status": "running"}
    max_seconds = max_seconds if max_seconds is not None else cfg.generation.max_seconds
    def stage(code: str, name: str) -> None:
        budget.enter(code, name)
        if on_stage:
            on_stage(code, name)

    try:
        stage("load", spec.label)
        with loader.use(spec) as model:
            _candidates(cfg, model, codec, spec, record, out, k, int(seed), max_seconds, budget, stage, progress)
    except BaseException as err:  # a stopped set is kept to look at, never offered as a finished one
        if (out / SET_FILE).is_file():
            atomic_write_json(out / SET_FILE, {**record, "status": "stopped", "error": str(err) or type(err).__name__})
        raise
    record["status"] = "done"
    atomic_write_json(out / SET_FILE, record)
    return record


def _candidates(cfg, model, codec, spec, record: dict[str, Any], out: Path, k: int, seed: int,
                max_seconds: Optional[float], budget: Budget, stage: Callable[[str, str], None], progress) -> None:
    """generate_candidates' work with the model loaded: the prompt, then k songs into `record`."""
    from core.export.generate import frames_for, generate_song, load_prompt, settings_from_config

    lyrics, description = record["lyrics"], record["description"]
    record["demo"] = record["demo"] or bool(getattr(model, "is_demo", False))
    prompt = load_prompt(settings_from_config(cfg, lyrics=lyrics, description=description), codec, model)
    record["prompt"] = prompt.source
    if prompt.tokens is not None:  # one prompt for every candidate, kept for the pairs
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / PROMPT_FILE, prompt.tokens.numpy().astype(np.int64), allow_pickle=False)
        record["prompt_tokens"] = str(out / PROMPT_FILE)
    for i in range(k):
        s = seed + i
        settings = settings_from_config(cfg, lyrics=lyrics, description=description, seed=s, gen_type="mixed")
        if i == 0:
            steps = model.pattern.num_steps(frames_for(model, settings, max_seconds))
            budget.size(generation_bound(model, steps, k, str(model.device)))
        name = f"cand-{i}_seed{s}"
        stage("frames", name)
        cb = budget.steps((lambda d, t, _i=i: progress(_i, d, t)) if progress else None)
        res = generate_song(model, codec, settings, out, name, prompt=prompt, model_info=spec.describe(),
                            max_seconds=max_seconds, progress=cb, extra={"kind": "candidate", "prompt_id": record["prompt_id"]},
                            before_decode=lambda _n=name: stage("decode", _n))
        record["items"].append({"index": i, "seed": s, "audio": str(out / res.files[0]),
                                "tokens": str(out / res.tokens_file), "frames": res.frames,
                                "tokens_sha": res.tokens_sha})
        atomic_write_json(out / SET_FILE, record)  # after each, so the first can be heard early


def load_set(set_dir: str | Path) -> dict[str, Any]:
    path = Path(set_dir).expanduser() / SET_FILE
    if not path.is_file():
        raise PairError(f"{path.parent}: not a candidate set (no {SET_FILE}); generate candidates first")
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("status", "done") != "done":  # a set made before sets had a status is a finished one
        raise PairError(f"{path.parent}: this candidate set is {rec.get('status')} ({rec.get('error') or 'unfinished'}); "
                        "generate the candidates again")
    return rec


def list_sets(cfg) -> list[dict[str, Any]]:
    """Candidate sets of the workspace, newest first."""
    root = candidates_root(cfg)
    out = []
    for p in sorted(root.glob(f"*/{SET_FILE}"), reverse=True) if root.is_dir() else []:
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if rec.get("status", "done") != "done":
            continue
        rec["dir"] = str(p.parent)
        out.append(rec)
    return out


def _tokens(item: dict[str, Any]) -> np.ndarray:
    path = Path(item["tokens"])
    if not path.is_file():
        raise PairError(f"candidate {item['index']}: its tokens file {path} is missing")
    return np.load(path, allow_pickle=False)


def _prompt(rec: dict[str, Any]) -> Optional[np.ndarray]:
    """The prompt tokens the set was generated with; None without a prompt (or for a set made before)."""
    if not rec.get("prompt_tokens"):
        return None
    path = Path(rec["prompt_tokens"])
    if not path.is_file():
        raise PairError(f"set {rec['prompt_id']}: its prompt tokens file {path} is missing; generate the "
                        "candidates again")
    return np.load(path, allow_pickle=False)


def _pair(rec: dict[str, Any], better: dict[str, Any], worse: dict[str, Any]) -> dict[str, Any]:
    return {"prompt_id": rec["prompt_id"], "lyrics": rec["lyrics"], "description": rec.get("description"),
            "chosen": _tokens(better), "rejected": _tokens(worse), "chosen_seed": better["seed"],
            "rejected_seed": worse["seed"], "model_id": rec.get("model_id", ""), "created": now_iso(),
            "prompt": _prompt(rec)}


def _item(rec: dict[str, Any], index: int) -> dict[str, Any]:
    for it in rec["items"]:
        if it["index"] == int(index):
            return it
    raise PairError(f"candidate {index} is not in set {rec['prompt_id']} (it has "
                    f"{', '.join(str(it['index']) for it in rec['items'])})")


def mark(cfg, set_dir: str | Path, chosen: int, rejected: Sequence[int]) -> AddReport:
    """Candidate `chosen` preferred to each of `rejected` -> pairs added to the store."""
    rec = load_set(set_dir)
    rejected = [int(r) for r in rejected if int(r) != int(chosen)]
    if not rejected:
        raise PairError("mark at least one rejected candidate other than the preferred one")
    better = _item(rec, chosen)
    rows = [_pair(rec, better, _item(rec, r)) for r in rejected]
    return PairStore(pairs_dir(cfg)).add(rows, [f"candidate {chosen} over {r}" for r in rejected])


def rank(cfg, set_dir: str | Path, order: Sequence[int]) -> AddReport:
    """A ranking best -> worst -> one pair for every (better, worse) combination."""
    order = [int(i) for i in order]
    if len(order) < 2 or len(set(order)) != len(order):
        raise PairError(f"a ranking lists 2 or more different candidates, best first; got {order}")
    rec = load_set(set_dir)
    items = [_item(rec, i) for i in order]
    rows, labels = [], []
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            rows.append(_pair(rec, items[a], items[b]))
            labels.append(f"candidate {order[a]} over {order[b]}")
    return PairStore(pairs_dir(cfg)).add(rows, labels)
