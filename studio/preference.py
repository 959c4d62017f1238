"""The studio's seam to core.preference: candidates, marking, the pairs table, jsonl, a DPO run.

No ML here: configs come from the workspace's choices (or the picked checkpoint's run) and every
call goes to `core`, with its errors turned into UI messages (backend._user_error). The preference
modules import torch, so they are imported inside the functions, as in studio.backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import gradio as gr

from core.runs import store as runs
from core.config import DEMO, StudioConfig
from studio import backend, backend_export
from studio.i18n import tr


def _cfg(ws, ckpt: Optional[str] = None) -> StudioConfig:
    """Candidates come from the picked checkpoint's run (its base model and codec), else the workspace's
    base model and data choices; pairs always live in this workspace."""
    if ckpt:
        return backend._run_cfg_for(ckpt).model_copy(update={"workspace": str(ws.root)})
    ov = {"workspace": str(ws.root), "paths.base_model_path": ws.get_state().get("base_model") or DEMO,
          **backend._data_overrides(ws)}
    return backend.build_config(ov)


def _store(ws):
    from core.preference import PairStore, pairs_dir
    return PairStore(pairs_dir(_cfg(ws)))


def generate(ws, ckpt, strength, lyrics, desc, seconds, seed, k, progress=None, lang: str = "en") -> dict[str, Any]:
    from core.export import candidates
    cfg = _cfg(ws, ckpt)
    bar = backend_export._gen_progress(progress, lang, lambda i, d, t: tr("pref_progress", lang, i=i + 1, k=int(k),
                                                                          d=d, t=t))
    rec = backend_export._budgeted(ws, candidates.generate_candidates, cfg, lyrics, desc or None, int(k),
                                   kind="candidates", seed=int(seed or 0), checkpoint=ckpt or None,
                                   strength=float(strength), max_seconds=float(seconds) if seconds else None, **bar)
    rec["dir"] = str(candidates.candidates_root(cfg) / rec["prompt_id"])
    return rec


def report_text(rep, lang: str = "en") -> str:
    """An AddReport (core.preference.pairs) in `lang`: the counts, then each skipped line as core said it."""
    return "\n".join([tr("pref_added", lang, n=len(rep.added), k=len(rep.skipped))] + [f"  - {s}" for s in rep.skipped])


def mark(ws, set_dir: str, chosen: int, rejected: list[int], lang: str = "en") -> str:
    from core.export import candidates
    rep = backend._user_error(candidates.mark, _cfg(ws), set_dir, int(chosen), [int(r) for r in rejected])
    return report_text(rep, lang)


def pair_rows(ws) -> list[list[Any]]:
    """One row per stored pair for the table (no tokens)."""
    store = _store(ws)
    if not store.exists():
        return []
    ds = store.load().select_columns(["pair_id", "prompt_id", "chosen_seed", "rejected_seed", "created", "lyrics"])
    return [[r["pair_id"], r["prompt_id"], r["chosen_seed"], r["rejected_seed"], r["created"], (r["lyrics"] or "")[:48]]
            for r in ds]


def export_pairs(ws) -> str:
    out = ws.root / "preference" / "exports" / "pairs.jsonl"
    backend._user_error(_store(ws).export_jsonl, out)
    return str(out)


def import_pairs(ws, path: str, lang: str = "en") -> str:
    backend._user_error(ws.check_bytes, Path(path).stat().st_size)  # a pairs file counts against the quota
    return report_text(backend._user_error(_store(ws).import_jsonl, path), lang)


def start_dpo_run(ws, train_values: dict[str, Any], dpo_values: dict[str, Any], no_pairs: str) -> Path:
    """A DPO run with the Train tab's settings (base model, LoRA / full, lr...) and the DPO widgets'
    values (config paths), started exactly like an SFT run."""
    if not _store(ws).exists():
        raise gr.Error(no_pairs)
    backend.refuse_if_busy(ws)  # one training at a time, SFT or DPO, like the Train tab
    cfg = backend.train_config(ws, {**train_values, "training.objective": "dpo", **dpo_values})
    return backend.launch_run(ws, cfg, (train_values.get("run_name") or "").strip() or f"dpo-{cfg.training.type}")
