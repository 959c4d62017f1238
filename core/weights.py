"""Reading the official weight files safely and turning them into plain fp32 state dicts.

Only safetensors and `torch.load(..., weights_only=True)` are used, so a weight file can never run code.
Every error names the file and, where one exists, the first key that is missing or has the wrong shape.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional

import torch

from core.errors import StudioError


class WeightFileError(StudioError, RuntimeError):
    """A weight file is missing, unreadable, or does not hold the tensors the codec needs."""
    code = "weight_file"


def read_state_dict(path: str | Path, what: str = "weight file",
                    keep: Optional[Callable[[str], bool]] = None) -> dict[str, torch.Tensor]:
    """Load the tensors of a safetensors / torch checkpoint file as fp32 (integer tensors kept).
    `keep(key)` selects keys; from safetensors only the selected tensors are read (the septoken file is
    ~4.8 GB, of which encode needs a fifth)."""
    p = Path(path)
    if not p.is_file():
        raise WeightFileError(f"{what} not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(p), framework="pt", device="cpu") as f:
                sd = {k: f.get_tensor(k) for k in f.keys() if keep is None or keep(k)}
        else:
            try:
                obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                # legacy (pre-zip) torch files cannot be memory-mapped
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
            sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
            if keep is not None and isinstance(sd, Mapping):
                sd = {k: v for k, v in sd.items() if keep(k)}
    except Exception as exc:  # corrupt / truncated / not a weight file
        raise WeightFileError(f"cannot read {what} {p}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightFileError(f"{what} {p} does not contain a flat dict of tensors")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def take_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The sub-dict under `prefix` with the prefix stripped."""
    n = len(prefix)
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix)}


def get(sd: Mapping[str, torch.Tensor], key: str, path: str | Path, what: str,
        ndim: Optional[int] = None) -> torch.Tensor:
    if key not in sd:
        raise WeightFileError(f"{what} {path} is missing tensor '{key}' (is this the right file?)")
    t = sd[key]
    if ndim is not None and t.dim() != ndim:
        raise WeightFileError(f"{what} {path}: tensor '{key}' has shape {list(t.shape)}, expected {ndim} dims")
    return t


def load_strict(module: torch.nn.Module, sd: Mapping[str, torch.Tensor], path: str | Path, what: str,
                prefix: str = "", error: Optional[type[Exception]] = None, hint: str = "") -> None:
    """`load_state_dict(strict=True)` with an error naming the file and the first bad key (with its prefix)."""
    error = error or WeightFileError
    own = module.state_dict()
    for k, v in own.items():
        if k not in sd:
            raise error(f"{what} {path} is missing tensor '{prefix}{k}' (is this the right file?)")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise error(f"{what} {path}: tensor '{prefix}{k}' has shape {list(sd[k].shape)}, "
                        f"expected {list(v.shape)}{hint}")
    for k in sd:
        if k not in own:
            raise error(f"{what} {path} has unexpected tensor '{prefix}{k}'")
    module.load_state_dict({k: sd[k].to(own[k].dtype) for k in own}, strict=True)


def fold_weight_norm(sd: Mapping[str, torch.Tensor], name: str, dim: int = 0) -> Optional[torch.Tensor]:
    """The effective weight of a weight-normed layer stored in either spelling (`weight_g`/`weight_v` or
    `parametrizations.weight.original0/1`), or a plain `weight`; None if absent. Norm over all dims but `dim`."""
    for g_key, v_key in ((f"{name}.weight_g", f"{name}.weight_v"),
                         (f"{name}.parametrizations.weight.original0", f"{name}.parametrizations.weight.original1")):
        if g_key in sd and v_key in sd:
            g, v = sd[g_key].float(), sd[v_key].float()
            dims = [d for d in range(v.dim()) if d != dim]
            # same op order as torch's weight_norm: v * (g / ||v||)
            return v * (g / v.norm(dim=dims, keepdim=True))
    if f"{name}.weight" in sd:
        return sd[f"{name}.weight"]
    return None
