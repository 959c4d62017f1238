"""The studio's seam to core.preference: candidates, marking, the pairs table, jsonl, a DPO run.

No ML here: configs are built from the workspace's choices (or the picked checkpoint's run), and
every call goes to `core` lazily through `studio.backend._core`, so a missing engine piece is a
message in the UI, not a crash.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import gradio as gr

from studio import backend


def _cfg(ws, ckpt: Optional[str]):
    """The config candidates are generated with: the picked checkpoint's run, else the workspace's
    base model and codec."""
    if ckpt:
        cfg, _ = backend._run_cfg_for(ckpt)
        return cfg.model_copy(update={"workspace": str(ws.root)})
    st = ws.get_state()
    ov: dict[str, Any] = {"workspace": str(ws.root), "paths.base_model_path": st.get("base_model") or "demo",
                          "data.codec": st.get("codec", "demo")}
    if st.get("runtime_path"):
        ov["paths.runtime_path"] = st["runtime_path"]
    return backend.load_config(ov)


def generate(ws, ckpt, strength, lyrics, desc, seconds, seed, k, progress=None) -> dict[str, Any]:
    cfg = _cfg(ws, ckpt)
    cb = None
    if progress is not None:
        cb = lambda i, d, t: progress(d / max(1, t), desc=f"candidate {i + 1}/{int(k)}: frame {d}/{t}")  # noqa: E731
    rec = backend._user_error(_core_fn("core.preference.candidates", "generate_candidates"), cfg, lyrics,
                              desc or None, int(k), seed=int(seed or 0), checkpoint=ckpt or None,
                              strength=float(strength), max_seconds=float(seconds) if seconds else None, progress=cb)
    rec["dir"] = str(backend._core("core.preference.candidates", "candidates_root")(cfg) / rec["prompt_id"])
    return rec


def _core_fn(module: str, attr: str):
    return backend._core(module, attr)


def mark(ws, set_dir: str, chosen: int, rejected: list[int]) -> str:
    cfg = _cfg(ws, None)
    rep = backend._user_error(_core_fn("core.preference.candidates", "mark"), cfg, set_dir, int(chosen),
                              [int(r) for r in rejected])
    return rep.summary()


def _store(ws):
    cfg = _cfg(ws, None)
    return backend._core("core.preference.pairs", "PairStore")(backend._core("core.preference.pairs", "pairs_dir")(cfg))


def pair_rows(ws) -> list[list[Any]]:
    """One row per stored pair for the table (no tokens)."""
    store = _store(ws)
    if not store.exists():
        return []
    ds = store.load().select_columns(["pair_id", "prompt_id", "chosen_seed", "rejected_seed", "created", "lyrics"])
    return [[r["pair_id"], r["prompt_id"], r["chosen_seed"], r["rejected_seed"], r["created"],
             (r["lyrics"] or "")[:48]] for r in ds]


def export_pairs(ws) -> str:
    store = _store(ws)
    out = ws.root / "preference" / "exports" / "pairs.jsonl"
    backend._user_error(store.export_jsonl, out)
    return str(out)


def import_pairs(ws, path: str) -> str:
    rep = backend._user_error(_store(ws).import_jsonl, path)
    return rep.summary()


def start_dpo_run(ws, train_values: dict[str, Any], beta: float, sft_weight: float, label_smoothing: float,
                  steps: int, name: Optional[str] = None) -> Path:
    """A DPO run with the Train tab's settings (base model, LoRA / full, lr...), started like any run."""
    cfg = backend.train_config(ws, train_values)
    from core.config import ConfigError
    try:
        data = cfg.to_dict()
        data["training"].update(objective="dpo", max_steps=int(steps) if steps else data["training"]["max_steps"])
        data["dpo"].update(beta=float(beta), sft_weight=float(sft_weight), label_smoothing=float(label_smoothing))
        cfg = backend._core("core.config", "parse_config")(data, "DPO settings")
    except ConfigError as err:
        raise gr.Error(str(err)) from None
    if not _store(ws).exists():
        raise gr.Error("no preference pairs yet: generate candidates and mark the preferred one first")
    runs = backend._core("core.runs")
    run_dir = runs.create_run(cfg, name=(name or "").strip() or None)
    runs.start_run(run_dir)
    return run_dir
