"""Export a finetuned checkpoint as an official SongGeneration checkpoint (`config.yaml` + `model.pt`).

    python -m core merge --config cfg.yaml --checkpoint <run>/checkpoints/step-N [--strength 0.5]
                         [--dtype bfloat16] [--out DIR] [--base DIR] [--overwrite]

- A LoRA checkpoint (a peft adapter folder: adapter_config.json + adapter_model.safetensors) is merged
  into its base model at a chosen strength s: every adapted weight becomes W + s·(alpha/r)·B·A
  (peft's own scaling rules, so rsLoRA and per-layer rank/alpha patterns are honoured). s = 0 gives
  the base model exactly, s = 1 the finetuned model. The merge runs in float32 and the result is
  written in the dtype the user picks (default: the base checkpoint's dtype).
- A full checkpoint (already `config.yaml` + `model.pt`) is exported as it is: copied byte for byte,
  or re-saved when another dtype is asked for.

The output has exactly the official key set (`audiolm.` prefix, no `lora_` tensors, no
`base_model.model.` prefixes), so SongGeneration's own `generate.sh` loads it. An `export.json`
beside it records where it came from. An existing export is never overwritten unless asked.

Which base model a LoRA checkpoint belongs to: the `base` argument, else the checkpoint's
`trainer_state.json` (written by core.train), else the run's `config.yaml` (two folders up), else
the config given to the command.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from core.errors import StudioError
from core.model.lora import ADAPTER_CONFIG, is_adapter_dir, merge_lora
from core.model.official_config import CheckpointError
from core.runs.store import run_config_for_checkpoint

log = logging.getLogger(__name__)

EXPORT_JSON = "export.json"
# Upstream's generate.py picks the v1 code path only for these checkpoint folder names.
V1_FOLDER_HINT = "songgeneration_base, songgeneration_base_new, songgeneration_base_full or songgeneration_large"


class ExportError(StudioError, RuntimeError):
    """A checkpoint that cannot be exported; the message names the file and what to do."""
    code = "export"


@dataclass
class ExportResult:
    out_dir: str
    kind: str                      # "lora-merge" or "full"
    source: str                    # the checkpoint folder exported
    base_model: Optional[str]      # the base checkpoint (LoRA merges)
    strength: Optional[float]      # LoRA strength (None for full checkpoints)
    dtype: str
    version: str
    num_keys: int
    lora_layers: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# What a checkpoint folder is
# ---------------------------------------------------------------------------------------------
def checkpoint_kind(ckpt_dir: str | Path) -> str:
    """"lora" (peft adapter folder) or "full" (official config.yaml + model.pt)."""
    p = Path(ckpt_dir).expanduser()
    if not p.is_dir():
        raise ExportError(f"checkpoint folder {p} does not exist")
    try:
        if is_adapter_dir(p):
            return "lora"
    except CheckpointError as err:
        raise ExportError(str(err)) from None
    if (p / "model.pt").is_file() and (p / "config.yaml").is_file():
        return "full"
    raise ExportError(f"{p} is neither a LoRA checkpoint ({ADAPTER_CONFIG} + adapter_model.safetensors) nor a full "
                      "checkpoint (config.yaml + model.pt); pick a folder under <run>/checkpoints/")


def find_base_model(ckpt_dir: str | Path, cfg=None, base: Optional[str | Path] = None) -> Path:
    """The base checkpoint folder a LoRA checkpoint was trained on (see the module doc for the order)."""
    from core.training.base_model import resolve_base_model

    ckpt_dir = Path(ckpt_dir).expanduser()
    if base is not None:
        if str(base) == "demo" and cfg is not None:
            return Path(resolve_base_model(cfg))
        p = Path(base).expanduser()
        if not (p / "model.pt").is_file():
            raise ExportError(f"base model {p} has no model.pt (give the folder with config.yaml + model.pt)")
        return p
    state = ckpt_dir / "trainer_state.json"
    if state.is_file():
        try:
            recorded = json.loads(state.read_text(encoding="utf-8")).get("base_model")
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded and (Path(recorded) / "model.pt").is_file():
            return Path(recorded)
        if recorded:
            log.warning("%s names the base model %s, which is gone; trying the run's config", state, recorded)
    run_cfg = run_config_for_checkpoint(ckpt_dir)
    for c in (run_cfg, cfg):
        if c is None:
            continue
        try:
            return Path(resolve_base_model(c))
        except Exception as err:  # noqa: BLE001 - try the next source, report at the end
            log.warning("base model from config not usable: %s", err)
    raise ExportError(f"cannot tell which base model {ckpt_dir} was trained on: no trainer_state.json with an existing "
                      "base_model, no run config.yaml two folders up; pass --base <checkpoint folder>")


def _runtime_root(cfg) -> Optional[str]:
    return cfg.paths.runtime_path if cfg is not None and cfg.paths.runtime_path else None


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
def default_export_dir(cfg, ckpt_dir: str | Path, strength: Optional[float] = None) -> Path:
    ckpt_dir = Path(ckpt_dir).expanduser().resolve()
    run = ckpt_dir.parent.parent.name if ckpt_dir.parent.name == "checkpoints" else None
    name = f"{run}_{ckpt_dir.name}" if run else ckpt_dir.name
    if strength is not None and strength != 1:
        name += f"_strength-{strength:g}"
    return cfg.workspace_dir() / "exports" / name


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ExportError(f"{out_dir} already exists and is not empty; choose another --out or pass --overwrite "
                              "to replace it")
        if not (out_dir / "model.pt").is_file() and not (out_dir / EXPORT_JSON).is_file():
            raise ExportError(f"{out_dir} is not an earlier export (no model.pt / {EXPORT_JSON}); refusing to delete it "
                              "even with --overwrite")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _official_key_check(out_dir: Path, expected: set[str], exact: bool = True) -> int:
    sd = torch.load(out_dir / "model.pt", map_location="cpu", weights_only=True, mmap=True)
    keys = set(sd)
    if (keys != expected) if exact else not keys <= expected:
        extra = sorted(keys - expected)[:3]
        missing = sorted(expected - keys)[:3]
        raise ExportError(f"{out_dir}/model.pt does not have the official key set (extra {extra}, missing {missing})")
    return len(keys)


def _v1_note(out_dir: Path, version: str) -> list[str]:
    from core.model.official_config import version_from_folder

    if version_from_folder(out_dir) != version:
        return [f"this is a {version} model but SongGeneration's generate.py would read the folder name "
                f"'{out_dir.name}' as {version_from_folder(out_dir)}; copy it into the runtime's ckpt/ as "
                f"{V1_FOLDER_HINT} to use it there"]
    return []


def export_checkpoint(ckpt_dir: str | Path, out_dir: Optional[str | Path] = None, *, cfg=None,
                      base: Optional[str | Path] = None, strength: float = 1.0, dtype: Any = None,
                      overwrite: bool = False, runtime_root: Optional[str | Path] = None) -> ExportResult:
    """Merge a LoRA checkpoint (or copy a full one) into an official checkpoint folder."""
    from core.config import StudioConfig
    from core.model import parse_dtype
    from core.model.checkpoint import PREFIX, SIDECAR

    cfg = cfg or StudioConfig()
    ckpt_dir = Path(ckpt_dir).expanduser()
    kind = checkpoint_kind(ckpt_dir)
    try:
        want = parse_dtype(dtype)
    except ValueError as err:
        raise ExportError(str(err)) from None
    if not 0 <= float(strength) <= 4:
        raise ExportError(f"strength {strength} is out of range; use 0 (base) .. 1 (as trained), at most 4")
    out = Path(out_dir).expanduser() if out_dir else default_export_dir(cfg, ckpt_dir,
                                                                       strength if kind == "lora" else None)
    if out.resolve() == ckpt_dir.resolve():
        raise ExportError(f"the export folder {out} is the checkpoint itself; choose another --out")
    runtime_root = runtime_root or _runtime_root(cfg)
    t0 = time.time()

    if kind == "full":
        from core.model import LeLM, describe_checkpoint

        info = describe_checkpoint(ckpt_dir, runtime_root)
        file_dtype = info.dtype
        _prepare_out(out, overwrite)
        if want is None or str(want).replace("torch.", "") == file_dtype:
            for name in ("config.yaml", "model.pt", SIDECAR):
                if (ckpt_dir / name).is_file():
                    shutil.copy2(ckpt_dir / name, out / name)
            dtype_name = file_dtype
        else:
            model = LeLM.from_pretrained(ckpt_dir, runtime_root=runtime_root, dtype=torch.float32)
            model.save_pretrained(out, dtype=want)
            dtype_name = str(want).replace("torch.", "")
            del model
        expected = _expected_keys(ckpt_dir, runtime_root, PREFIX, info.version)
        n_keys = _official_key_check(out, expected, exact=False)  # a copy keeps what the source had
        result = ExportResult(out_dir=str(out), kind="full", source=str(ckpt_dir), base_model=None, strength=None,
                              dtype=dtype_name, version=info.version, num_keys=n_keys, notes=_v1_note(out, info.version))
    else:
        base_dir = find_base_model(ckpt_dir, cfg, base)
        merged, n_layers = merge_lora(base_dir, ckpt_dir, strength=float(strength), runtime_root=runtime_root)
        target = want or merged.checkpoint_dtype
        _prepare_out(out, overwrite)
        merged.save_pretrained(out, dtype=target)
        expected = {PREFIX + k for k in merged.state_dict()}
        n_keys = _official_key_check(out, expected)
        result = ExportResult(out_dir=str(out), kind="lora-merge", source=str(ckpt_dir), base_model=str(base_dir),
                              strength=float(strength), dtype=str(target).replace("torch.", ""),
                              version=merged.version, num_keys=n_keys, lora_layers=n_layers,
                              notes=list(merged.notes) + _v1_note(out, merged.version))
        del merged
    record = result.to_dict()
    record.update({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.time() - t0, 2)})
    adapter_cfg = ckpt_dir / ADAPTER_CONFIG
    if adapter_cfg.is_file():
        ac = json.loads(adapter_cfg.read_text(encoding="utf-8"))
        record["lora"] = {k: ac.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")}
    (out / EXPORT_JSON).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return result


def _expected_keys(ckpt_dir: Path, runtime_root, prefix: str, version: str) -> set[str]:
    """The official key set for a checkpoint's config.yaml (model built on the meta device)."""
    from core.model import LeLM
    from core.model.checkpoint import read_sidecar
    from core.model.official_config import read_official_config

    side = read_sidecar(ckpt_dir)
    root = runtime_root or (side.get("runtime_root") if side.get("runtime_root") and
                            Path(side["runtime_root"]).is_dir() else None)
    config = read_official_config(ckpt_dir / "config.yaml", root)
    with torch.device("meta"):
        model = LeLM.build(config, version)
    return {prefix + k for k in model.state_dict()}


