"""What a checkpoint is (version, dims, size, dtype, runtime root, timing limits) and where the base model lives.

`python -m core model-info <ckpt_dir | demo> [--runtime-root DIR] [--json]`
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch

from core.model.checkpoint import open_checkpoint
from core.model.official_config import CheckpointError, ModelTiming, OfficialConfig, read_official_config


@dataclass
class CheckpointInfo(ModelTiming):
    path: str
    version: str
    is_demo: bool
    dim: int
    intermediate_size: int
    num_heads: int
    num_layers: int
    num_layers_sub: int
    parameters: int
    dtype: str
    runtime_root: str
    config: OfficialConfig = field(repr=False)  # the one source of the timing fields below
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        return {**d, **self.timing_dict(), "delays": self.delays, "structure_tags": list(self.structure_tags)}

    def summary(self) -> str:
        label = "DEMO model (small, briefly pre-trained on synthetic songs; for trying the studio)" if self.is_demo else "SongGeneration checkpoint"
        lines = [
            f"{label}: {self.path}",
            f"  version        {self.version}",
            f"  dims           D={self.dim} F={self.intermediate_size} H={self.num_heads} "
            f"layers={self.num_layers}+{self.num_layers_sub}",
            f"  parameters     {self.parameters:,} ({self.parameters / 1e9:.3f} B)",
            f"  dtype          {self.dtype}",
            f"  max duration   {self.max_dur:g} s ({self.max_frames} frames at {self.frame_rate} Hz)",
            f"  prompt         {self.prompt_len:g} s ({self.prompt_frames} frames)",
            f"  delays         {self.delays}",
            f"  runtime root   {self.runtime_root}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def describe_checkpoint(ckpt_dir: str | Path, runtime_root: Optional[str | Path] = None) -> CheckpointInfo:
    """Read config.yaml and the tensor shapes of model.pt (memory-mapped; no model is built)."""
    ckpt_dir, cfg, sd, version, notes, side = open_checkpoint(ckpt_dir, runtime_root)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()})
    return CheckpointInfo(
        path=str(ckpt_dir), version=version, is_demo=bool(side.get("demo", False)), dim=cfg.dim,
        intermediate_size=cfg.intermediate_size, num_heads=cfg.num_heads, num_layers=cfg.num_layers,
        num_layers_sub=cfg.num_layers_sub, parameters=sum(v.numel() for v in sd.values()),
        dtype="/".join(dtypes), runtime_root=str(cfg.runtime_root), config=cfg, notes=notes)


def looks_like_repo_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not Path(value).exists() and not value.startswith((".", "~"))


def download_base_model(repo_id: str, workspace: str | os.PathLike, subfolder: Optional[str] = None) -> Path:
    """Fetch a checkpoint folder (config.yaml + model.pt) from the Hugging Face Hub into the workspace."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    target = Path(workspace) / "models" / "hub" / repo_id.replace("/", "--")
    patterns = ["config.yaml", "model.pt", "*.json"]
    if subfolder:
        patterns = [f"{subfolder}/{p}" for p in patterns]
    try:
        snapshot_download(repo_id, local_dir=target, allow_patterns=patterns)
    except LocalEntryNotFoundError:
        raise CheckpointError(f"cannot download {repo_id}: offline (HF_HUB_OFFLINE is set or no network) and it is "
                              "not in the local cache. Download it once with network, or give a local folder.") from None
    except HfHubHTTPError as err:
        raise CheckpointError(f"cannot download {repo_id} from the Hub: {err}") from None
    folder = target / subfolder if subfolder else target
    if not (folder / "model.pt").is_file():
        raise CheckpointError(f"{repo_id} has no config.yaml + model.pt{' in ' + subfolder if subfolder else ''}; "
                              "point paths.base_model_path at the folder of an official checkpoint")
    return folder


BASE_FIELD = "Base model folder (paths.base_model_path)"  # the field as the Train tab and the config name it
BASE_FIX = ("choose the folder of an official SongGeneration checkpoint as released (it holds config.yaml and "
            "model.pt, e.g. ckpt/songgeneration_base), a Hugging Face repo id (owner/name), or 'demo' for the "
            "built-in demo model")


class BaseModelError(CheckpointError):
    """check_base_model's refusal: "<BASE_FIELD>: <detail>"; `detail` alone for a UI that names the field itself."""

    code = "base_model"

    def __init__(self, detail: str):
        super().__init__(f"{BASE_FIELD}: {detail}", detail=detail)
        self.detail = detail


def _is_local(value: str) -> bool:
    """A folder path rather than a Hub repo id ("owner/name")."""
    return Path(value).expanduser().exists() or value.startswith(("/", ".", "~")) or not looks_like_repo_id(value)


def check_base_model(cfg) -> None:
    """Refuse a base model that cannot train before anything is launched: CheckpointError naming the
    field and what to do. The demo (built on first use) and Hub repo ids (downloaded by the trainer)
    pass; a local folder must be a readable checkpoint (config.yaml + model.pt; read, not built)."""
    value = (cfg.paths.base_model_path or "").strip()
    if value == "demo":
        return
    if not value:
        raise BaseModelError(f"it is empty; {BASE_FIX}")
    if not _is_local(value):
        return
    path = Path(value).expanduser()
    if not path.is_dir():
        raise BaseModelError(f"{value} {'is a file, not a folder' if path.exists() else 'does not exist'}; {BASE_FIX}")
    absent = [n for n in ("config.yaml", "model.pt") if not (path / n).is_file()]
    if absent:
        raise BaseModelError(f"{value} has no {' and no '.join(absent)}, so it is not a SongGeneration checkpoint; "
                             f"{BASE_FIX}")
    try:
        describe_checkpoint(path, cfg.paths.runtime_path)
    except (ValueError, OSError) as err:  # CheckpointError and unreadable files, worded by checkpoint.py
        raise BaseModelError(f"{value} cannot be used: {err}. Otherwise {BASE_FIX}") from None


def locate_base_model(cfg) -> Path:
    """The base checkpoint folder for a StudioConfig: a local folder, a Hub repo id (downloaded), or for 'demo'
    the demo's folder with its runtime (its weights are the training package's: core.training.base_model)."""
    value = cfg.paths.base_model_path
    if value == "demo":
        from core.model.demo import ensure_demo_runtime
        return ensure_demo_runtime(cfg.workspace_dir())
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if looks_like_repo_id(value):
        return download_base_model(value, cfg.workspace_dir())
    raise CheckpointError(f"{BASE_FIELD}: {value} is neither a folder (config.yaml + model.pt), a Hub repo id "
                          f"(owner/name), nor 'demo'; {BASE_FIX}")
