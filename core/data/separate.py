"""How a song's vocal and accompaniment stems are obtained: Demucs, the demo split, or given stems."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from core.config import StudioConfig
from core.data.limits import ModelLimits


@dataclass
class SeparationPlan:
    kind: str                 # "demucs" | "demo" | "none" | "unavailable"
    id: str                   # goes into song keys
    label: str                # what the report shows
    checkpoint: Optional[Path] = None
    error: Optional[str] = None
    fallback: bool = False    # the demo split because no Demucs checkpoint was found (data.separation: auto)
    _separator: Any = None

    def info(self, bgm_mode: str) -> dict[str, Any]:
        """The plan as fields (for a UI to word in its own language; `label` is the English wording)."""
        return {"kind": self.kind, "fallback": self.fallback,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "bgm_mode": bgm_mode}

    def split(self, mix: torch.Tensor, sr: int, bgm_mode: str, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "demo":
            from core.codec.demo import demo_split
            return demo_split(mix, sr)
        if self.kind == "demucs":
            if self._separator is None:
                from core.audio.separation import Separator
                yaml_path = self.checkpoint.with_suffix(".yaml")
                self._separator = Separator.from_checkpoint(str(self.checkpoint),
                                                            str(yaml_path) if yaml_path.is_file() else None,
                                                            device=device, seed=seed)
            vocal, bgm = self._separator.separate(mix, sr, bgm_mode=bgm_mode)
            return vocal.float().cpu(), bgm.float().cpu()
        raise RuntimeError(self.error or "no separation available")


def _runtime_roots(cfg: StudioConfig, limits: ModelLimits) -> list[Path]:
    roots = []
    for r in (cfg.paths.runtime_path, limits.runtime_root):
        if r and Path(r) not in roots:
            roots.append(Path(r).expanduser())
    return roots


def plan_separation(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> SeparationPlan:
    mode = cfg.data.separation
    bgm = cfg.data.bgm_mode
    if mode == "none":
        return SeparationPlan("none", "none", "none (per-song stems required)",
                              error="this song has no vocal/bgm stems and data.separation is 'none'; give the "
                                    "song's 'vocal' and 'bgm' files or set data.separation to auto")
    if mode == "demo":
        return SeparationPlan("demo", "demo-split-1", "DEMO split (mid/side + vocal band; not Demucs)")
    from core.audio.separation import find_demucs_checkpoint

    ckpt = None
    roots = _runtime_roots(cfg, limits)
    for r in roots:
        ckpt = find_demucs_checkpoint(r)
        if ckpt:
            break
    if ckpt:
        ckpt = Path(ckpt)
        size = ckpt.stat().st_size if ckpt.is_file() else 0
        return SeparationPlan("demucs", f"demucs-htdemucs:{ckpt.name}:{size}:{bgm}:{cfg.data.seed}",
                              f"Demucs htdemucs ({ckpt}), accompaniment = "
                              + ("drums + bass + other" if bgm == "stems" else "mix - vocal"), checkpoint=ckpt)
    if mode == "auto" and getattr(codec, "is_demo", False):
        return SeparationPlan("demo", "demo-split-1",
                              "DEMO split (mid/side + vocal band; not Demucs: no htdemucs checkpoint was found)",
                              fallback=True)
    looked = ", ".join(str(r) for r in roots) if roots else "nowhere (paths.runtime_path is not set)"
    return SeparationPlan("unavailable", "unavailable", "none available", error=(
        f"no Demucs checkpoint (third_party/demucs/ckpt/htdemucs.pth) to split vocals from accompaniment; "
        f"looked under: {looked}. Set paths.runtime_path to the SongGeneration folder that holds "
        "third_party/demucs/ckpt/htdemucs.pth, or give this song's 'vocal' and 'bgm' stem files"))
