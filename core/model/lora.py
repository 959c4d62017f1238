"""LoRA on LeLM through peft: which layers (from the `lora` config section), apply, load, strength, merge.

Targets: the `lora.target_modules` projections of the chosen transformer stacks (`lora.stacks`),
optionally the fusion MLP (`lora.train_fusion`) and the output heads (`lora.train_heads`), as one
peft `target_modules` regex (full match on module names).

A saved adapter is a peft folder (`adapter_config.json` + `adapter_model.safetensors`). Strength s
scales every adapted layer's delta to s x its trained size (peft's `set_scale`, which honours
rsLoRA and per-layer rank/alpha patterns): 0 is the base model, 1 the model as trained. A merge
writes W + s·scaling·B·A into the base weights in float32.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from core.model.official_config import CheckpointError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def target_regex(cfg) -> str:
    """peft `target_modules` regex (full match on module names) from the `lora` section of a StudioConfig."""
    lc = cfg.lora
    names = "|".join(re.escape(n) for n in lc.target_modules)
    stacks = {"both": "transformer|transformer2", "transformer": "transformer",
              "transformer2": "transformer2"}[lc.stacks]
    parts = [rf"(?:{stacks})\.model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{names})"]
    if lc.train_fusion:
        parts.append(r"mlp\.(?:0|2)")
    if lc.train_heads:
        parts.append(r"transformer\.lm_head|linears\.\d+")
    return "^(?:" + "|".join(parts) + ")$"


def apply_lora(cfg, model: nn.Module) -> nn.Module:
    """A trainable peft model around `model` with the config's LoRA layers (rank, alpha, dropout)."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    from core.config import ConfigError

    regex = target_regex(cfg)
    matched = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and re.fullmatch(regex, n)]
    for name in cfg.lora.target_modules:
        if not any(n.endswith("." + name) for n in matched):
            raise ConfigError(f"lora.target_modules: {name!r} matches no linear layer in the chosen stacks "
                              f"(lora.stacks = {cfg.lora.stacks}); use names like q_proj, k_proj, v_proj, o_proj, "
                              "gate_proj, up_proj, down_proj")
    pcfg = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=regex, bias="none")
    return get_peft_model(model, pcfg)


def is_adapter_dir(path: str | Path) -> bool:
    """True for a peft adapter folder; a folder with the config but no weights is an error."""
    p = Path(path).expanduser()
    if not (p / ADAPTER_CONFIG).is_file():
        return False
    if not any((p / w).is_file() for w in ADAPTER_WEIGHTS):
        raise CheckpointError(f"{p} has {ADAPTER_CONFIG} but no adapter_model.safetensors; the checkpoint is incomplete")
    return True


def lora_layers(model: nn.Module) -> list[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def load_lora(base_dir: str | Path, adapter_dir: str | Path, runtime_root: Optional[str | Path] = None,
              dtype: torch.dtype = torch.float32, base_model=None, adapter_name: str = "default"):
    """(PeftModel, the LeLM inside), for inference. `base_model` (a loaded LeLM) is reused instead of
    reading base_dir; `peft_model.unload()` gives it back unchanged."""
    from peft import PeftModel

    from core.model.lelm import LeLM

    adapter_dir = Path(adapter_dir).expanduser()
    if not is_adapter_dir(adapter_dir):
        raise CheckpointError(f"{adapter_dir} is not a LoRA checkpoint (no {ADAPTER_CONFIG})")
    lelm = base_model if base_model is not None else LeLM.from_pretrained(base_dir, runtime_root=runtime_root,
                                                                         dtype=dtype)
    try:
        peft_model = PeftModel.from_pretrained(lelm, str(adapter_dir), adapter_name=adapter_name, is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{adapter_dir}: the adapter does not fit the base model {base_dir} ({err}). "
                              "Was it trained on another base? Pass the run's base with --base.") from None
    peft_model.eval()
    if not lora_layers(peft_model):
        raise CheckpointError(f"{adapter_dir}/{ADAPTER_CONFIG}: its target_modules match no layer of the base model")
    return peft_model, lelm


def copy_adapter(peft_model, source: str, names: list[str]) -> None:
    """Add adapters `names`, each with `source`'s config and weights, from the loaded model (the adapter file
    is not read again); each can then run at its own strength. What peft's load_adapter does for a file:
    add_adapter, set_peft_model_state_dict, eval."""
    import copy

    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    weights = get_peft_model_state_dict(peft_model, adapter_name=source, save_embedding_layers=False)
    for name in names:
        peft_model.add_adapter(name, copy.deepcopy(peft_model.peft_config[source]))
        set_peft_model_state_dict(peft_model, weights, adapter_name=name)
    peft_model.eval()  # new layers (their dropout) start in training mode


def set_lora_strength(model: nn.Module, strength: float, adapter: Optional[str] = None) -> int:
    """Scale every LoRA delta (of `adapter`, or of all) to `strength` × its trained size (0: base, 1: as
    trained). -> layers touched."""
    layers = lora_layers(model)
    for layer in layers:
        for name in [adapter] if adapter is not None else list(layer.scaling):
            layer.set_scale(name, float(strength))  # peft skips a layer without that adapter
    return len(layers)


def merge_lora(base_dir: str | Path, adapter_dir: str | Path, strength: float = 1.0,
               runtime_root: Optional[str | Path] = None):
    """The merged LeLM in float32 (W + strength·scaling·B·A for every adapted layer). -> (LeLM, layers)."""
    peft_model, lelm = load_lora(base_dir, adapter_dir, runtime_root=runtime_root, dtype=torch.float32)
    n = set_lora_strength(peft_model, strength)
    if strength == 0:
        merged = peft_model.unload()  # the base weights untouched: bit-exact base
    else:
        try:
            merged = peft_model.merge_and_unload(safe_merge=True)
        except ValueError as err:
            raise CheckpointError(f"{adapter_dir}: merging failed ({err})") from None
    merged.eval()
    leftovers = [k for k in merged.state_dict() if "lora_" in k or k.startswith("base_model.")]
    if leftovers:
        raise CheckpointError(f"merge left adapter tensors behind (e.g. {leftovers[0]}); the adapter type is not supported")
    return merged, n
