"""Checkpoint IO in the official layout: `<dir>/config.yaml` + `<dir>/model.pt`.

`model.pt` is a flat `{key: tensor}` dict whose keys carry the `audiolm.` prefix (the Lightning
wrapper's attribute). We read it with `weights_only=True`, accept fp32/fp16/bf16, and write back
exactly the official key set and shapes (never-used tensors included), so SongGeneration's own
loader takes it with `strict=True`. `config.yaml` is written byte-for-byte as read, so upstream's
interpolations keep working.

A sidecar `songgen_studio.json` remembers the runtime root and version, so a checkpoint saved
outside the runtime folder (a run's checkpoints, an export) loads without extra arguments.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch

from core.fsutil import atomic_torch_save

from core.model.official_config import CheckpointError, read_official_config, version_from_folder
from core.model.text import base_vocab_size

log = logging.getLogger(__name__)

PREFIX = "audiolm."
SIDECAR = "songgen_studio.json"
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(value: Any) -> Optional[torch.dtype]:
    if value is None or isinstance(value, torch.dtype):
        return value
    key = str(value).replace("torch.", "").lower()
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {value!r}; use one of float32, float16, bfloat16")
    return DTYPES[key]


def read_sidecar(ckpt_dir: Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / SIDECAR
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log.warning("ignoring unreadable %s", path)
        return {}


def load_state_dict(path: Path, notes: Optional[list[str]] = None) -> dict[str, torch.Tensor]:
    """The LM's tensors from an official model.pt, without the `audiolm.` prefix.

    Like upstream's loader, only keys starting with `audiolm.` are read; anything else in the file
    (an `optimizer` state, an epoch counter, a codec's weights) is ignored and named in a note.
    A file with no `audiolm.` key at all is taken as a bare LM state dict."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a checkpoint folder needs config.yaml and model.pt")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unpickling problem is reported the same way
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file ({err}). "
                              "Is it a SongGeneration model.pt?") from None
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]  # tolerated: a Lightning-style wrapper
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path}: expected a dict of tensors with keys 'audiolm.*'")
    lm_keys = [k for k in raw if isinstance(k, str) and k.startswith(PREFIX)]
    if lm_keys:
        ignored = [str(k) for k in raw if not (isinstance(k, str) and k.startswith(PREFIX))]
        if ignored:
            shown = ", ".join(repr(k) for k in ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
            msg = (f"{path.name}: ignored {len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} that "
                   f"{'is' if len(ignored) == 1 else 'are'} not part of the LM ({shown}); like SongGeneration's "
                   f"loader, only the '{PREFIX}*' keys are read")
            log.warning(msg)
            if notes is not None:
                notes.append(msg)
        raw = {k: raw[k] for k in lm_keys}
    bad = [k for k, v in raw.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: '{bad[0]}' is a {type(raw[bad[0]]).__name__}, not a tensor "
                              f"({len(bad)} such keys); an LM checkpoint holds one tensor per key")
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in raw.items()}


def detect_version(ckpt_dir: Path, sd: dict[str, torch.Tensor], token_dir: Path, forced: Optional[str],
                   notes: list[str]) -> str:
    """v1/v2 from upstream's folder-name rule, cross-checked with the description table's rows."""
    if forced is not None:
        if forced not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', got {forced!r}")
        return forced
    by_name = version_from_folder(ckpt_dir)
    key = "condition_provider.conditioners.type_info.output_proj.weight"
    if key not in sd:
        return by_name
    rows = sd[key].shape[0]
    base = base_vocab_size(token_dir)
    by_weights = {base: "v1", base + 6: "v2"}.get(rows)
    if by_weights is None:
        raise CheckpointError(f"{ckpt_dir}/model.pt: {key} has {rows} rows; expected {base} (v1) or {base + 6} (v2) "
                              f"for the tokenizer in {token_dir}")
    if by_weights != by_name:
        msg = (f"{ckpt_dir.name}: the folder name says {by_name} (upstream's rule) but the description table has "
               f"{rows} rows, which is {by_weights}; using {by_weights}. SongGeneration's generate.py picks the version "
               f"from the folder name, so rename the folder to match if you use it there.")
        log.warning(msg)
        notes.append(msg)
    return by_weights


def check_state_dict(expected: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], source: Path,
                     unused: list[str]) -> dict[str, torch.Tensor]:
    """Shapes and keys as the model needs them; missing never-used tensors are filled with zeros."""
    for key, ref in expected.items():
        if key in sd and tuple(sd[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: '{PREFIX}{key}' has shape {tuple(sd[key].shape)} but the config.yaml beside it gives "
                f"{tuple(ref.shape)}. The model.pt and config.yaml come from different model sizes; use the "
                "config.yaml that was released with this model.pt.")
    missing = [k for k in expected if k not in sd]
    fatal = [k for k in missing if k not in unused]
    if fatal:
        raise CheckpointError(f"{source}: missing '{PREFIX}{fatal[0]}' ({len(fatal)} keys missing in all); "
                              "this is not a complete SongGeneration LM checkpoint")
    extra = [k for k in sd if k not in expected]
    if extra:
        raise CheckpointError(f"{source}: unexpected key '{PREFIX}{extra[0]}' ({len(extra)} in all); "
                              "the file does not match the official LeLM layout")
    sd = dict(sd)
    for k in missing:
        log.warning("%s: never-used tensor %s%s absent, filled with zeros", source, PREFIX, k)
        sd[k] = torch.zeros(expected[k].shape, dtype=next(iter(sd.values())).dtype)
    return sd


def open_checkpoint(ckpt_dir: str | Path, runtime_root=None, version=None):
    """Config, tensors, version (+ notes) and sidecar of a checkpoint folder, without building a model."""
    ckpt_dir = Path(ckpt_dir).expanduser()
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint folder {ckpt_dir} does not exist (it should hold config.yaml and model.pt)")
    side = read_sidecar(ckpt_dir)
    if runtime_root is None and side.get("runtime_root") and Path(side["runtime_root"]).is_dir():
        runtime_root = side["runtime_root"]
    config = read_official_config(ckpt_dir / "config.yaml", runtime_root)
    notes: list[str] = []
    sd = load_state_dict(ckpt_dir / "model.pt", notes)
    if version is None and side.get("version") in ("v1", "v2"):
        version = side["version"]
    version = detect_version(ckpt_dir, sd, config.runtime_root / config.desc_token_path, version, notes)
    return ckpt_dir, config, sd, version, notes, side


def load_pretrained(cls, ckpt_dir: str | Path, runtime_root=None, version=None, dtype=torch.float32, device=None):
    ckpt_dir, config, sd, version, notes, side = open_checkpoint(ckpt_dir, runtime_root, version)
    file_dtype = next(iter(sd.values())).dtype

    # Build on the meta device: no time or memory spent on random init of weights we replace.
    with torch.device("meta"):
        model = cls.build(config, version)
    expected = model.state_dict()
    sd = check_state_dict(expected, sd, ckpt_dir / "model.pt", model.unused_parameter_names())
    model.load_state_dict(sd, strict=True, assign=True)
    model.reset_rotary()
    target = dtype or file_dtype
    model.to(device=device or "cpu", dtype=target)
    model.reset_rotary()
    model.checkpoint_dtype = file_dtype
    model.source_dir = ckpt_dir
    model.notes = notes
    model.is_demo = bool(side.get("demo", False))
    model.eval()
    return model


def official_state_dict(model, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    dtype = dtype or model.checkpoint_dtype
    return {PREFIX + k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}


def save_pretrained(model, out_dir: str | Path, dtype=None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = parse_dtype(dtype)
    atomic_torch_save(official_state_dict(model, dtype), out_dir / "model.pt")  # never a half-written model.pt
    (out_dir / "config.yaml").write_text(model.config.raw_text, encoding="utf-8")
    side = {"runtime_root": str(model.config.runtime_root), "version": model.version,
            "dtype": str(dtype or model.checkpoint_dtype).replace("torch.", ""),
            "source": str(model.source_dir) if model.source_dir else None,
            "demo": bool(getattr(model, "is_demo", False))}
    (out_dir / SIDECAR).write_text(json.dumps(side, indent=2), encoding="utf-8")
    return out_dir
