"""The base model a run starts from, with its weights: an official folder, a Hub repo id, or the demo
(pre-trained here on first use: core.training.demo_pretrain)."""
from __future__ import annotations

from pathlib import Path

from core.model.info import locate_base_model


def resolve_base_model(cfg) -> Path:
    """The base checkpoint folder (config.yaml + model.pt) for a StudioConfig."""
    if cfg.paths.base_model_path == "demo":
        from core.training.demo_pretrain import ensure_demo_model

        return ensure_demo_model(cfg.workspace_dir())
    return locate_base_model(cfg)
