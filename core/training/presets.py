"""Training presets, keyed by config path: by goal (the Train tab's first choices) and by GPU memory (what
fits on an 8 to 80 GB card). The studio shows these values; `preset_values` is the one place that says
what a preset sets for a given base model and prepared dataset.

Each preset names the official model size it is sized for (base: 2.83 B parameters, 150-270 s;
large / v2-large: 5.12 B, 270 s) and stays within 90 % of the card by core.training.estimate's figure
(tests/test_presets.py checks it). Smaller cards keep the frozen base in bfloat16 (LoRA only);
full fine-tuning uses Adafactor (factored second moment, ~no optimizer state); 8-bit AdamW
(bitsandbytes, CUDA) is the alternative where bitsandbytes is installed. Every preset turns on
training.compile (the stacks through torch.compile; a failure falls back to eager with a log line).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from core.config import DEMO

if TYPE_CHECKING:  # preflight reads datasets (torch); the presets stay light for the page
    from core.training.preflight import CropFit

_LORA = {"training.type": "lora", "training.mixed_precision": "auto", "training.gradient_checkpointing": True,
         "training.compile": True, "training.optimizer": "adamw", "training.learning_rate": 1e-4, "training.batch_size": 1,
         "training.max_frames": None}
_FULL = {**_LORA, "training.type": "full", "training.optimizer": "adafactor", "training.learning_rate": 1e-5,
         "training.base_dtype": "float32"}

GPU_PRESETS: dict[int, dict[str, Any]] = {
    8: {"model": "base", "label": "LoRA r8, bf16 base, 60 s windows",
        "settings": {**_LORA, "lora.r": 8, "lora.alpha": 16, "training.base_dtype": "bfloat16",
                     "training.max_frames": 1500}},
    12: {"model": "base", "label": "LoRA r16, bf16 base, whole songs",
         "settings": {**_LORA, "lora.r": 16, "lora.alpha": 32, "training.base_dtype": "bfloat16"}},
    16: {"model": "large", "label": "LoRA r16, bf16 base, whole songs",
         "settings": {**_LORA, "lora.r": 16, "lora.alpha": 32, "training.base_dtype": "bfloat16"}},
    24: {"model": "large", "label": "LoRA r32, bf16 base, batch 2",
         "settings": {**_LORA, "lora.r": 32, "lora.alpha": 32, "training.base_dtype": "bfloat16",
                      "training.batch_size": 2}},
    48: {"model": "base", "label": "full fine-tune, Adafactor, batch 2",
         "settings": {**_FULL, "training.batch_size": 2}},
    80: {"model": "large", "label": "full fine-tune, Adafactor",
         "settings": {**_FULL}},
}

# QLoRA (training.base_quant: nf4; bitsandbytes): the large model on the small cards, by the same estimate
# (tests/test_qlora.py checks the 90 % rule); estimated, not yet measured on a card (bench/gpu.py).
_QLORA = {**_LORA, "training.base_dtype": "bfloat16", "training.base_quant": "nf4"}
QLORA_PRESETS: dict[int, dict[str, Any]] = {
    8: {"model": "large", "label": "QLoRA r16, NF4 base, 150 s windows",
        "settings": {**_QLORA, "lora.r": 16, "lora.alpha": 32, "training.max_frames": 3750}},
    12: {"model": "large", "label": "QLoRA r32, NF4 base, whole songs",
         "settings": {**_QLORA, "lora.r": 32, "lora.alpha": 32}},
    16: {"model": "large", "label": "QLoRA r32, NF4 base, batch 2",
         "settings": {**_QLORA, "lora.r": 32, "lora.alpha": 32, "training.batch_size": 2}},
}


def preset_name(gb: int, table: dict[int, dict[str, Any]] = GPU_PRESETS) -> str:
    p = table[gb]
    return f"{gb} GB · {p['model']} · {p['label']}"


# presets by goal, keyed by config path (None: not set, the config's default); a key a preset leaves out
# keeps the value the user has
_QUICK = {"training.type": "lora", "lora.r": 4, "lora.alpha": 8, "training.learning_rate": 1e-3,
          "training.max_steps": 30, "training.epochs": 1, "training.batch_size": 1,
          "training.gradient_accumulation_steps": 1, "training.max_frames": 150, "training.mixed_precision": "no",
          "training.gradient_checkpointing": False, "training.save_every": 10, "training.sample_every": 0,
          "training.log_every": 1, "training.warmup_steps": 0, "training.num_samples": 1,
          "training.sample_seconds": 3, "training.eval_every": 5}
_GPU = {"training.type": "lora", "lora.r": 16, "lora.alpha": 32, "training.learning_rate": 1e-4,
        "training.max_steps": None, "training.epochs": 10, "training.batch_size": 1,
        "training.gradient_accumulation_steps": 4, "training.max_frames": None, "training.mixed_precision": "auto",
        "training.gradient_checkpointing": True, "training.save_every": 200, "training.sample_every": 200,
        "training.log_every": 5, "training.warmup_steps": 50, "training.num_samples": 2,
        "training.sample_seconds": 20, "training.eval_every": 100}
DEFAULT_PRESET = "Quick look (CPU / demo, a minute)"
PRESETS: dict[str, dict[str, Any]] = {
    DEFAULT_PRESET: _QUICK,
    "Voice / style LoRA · 24 GB": _GPU,
    "Style LoRA, bigger rank · 48 GB": {**_GPU, "lora.r": 64, "lora.alpha": 64, "training.batch_size": 2,
                                        "training.gradient_accumulation_steps": 2},
    "Full finetune · 80 GB × N": {**_GPU, "training.type": "full", "training.learning_rate": 1e-5,
                                  "training.epochs": 3, "training.gradient_accumulation_steps": 8,
                                  "training.save_every": 500, "training.sample_every": 500, "training.log_every": 10,
                                  "training.warmup_steps": 100},
    **{preset_name(gb): {**_GPU, **p["settings"]} for gb, p in GPU_PRESETS.items()},
    **{preset_name(gb, QLORA_PRESETS): {**_GPU, **p["settings"]} for gb, p in QLORA_PRESETS.items()},
}
# Crop lengths a preset means for the demo model only: 6-s crops of a real checkpoint's songs would cut
# sections apart (and, without section timing, are refused by the trainer), so on any other base
# model the preset leaves training.max_frames unset (the model's own max_dur).
DEMO_ONLY = {DEFAULT_PRESET: {"training.max_frames"}}


def preset_values(name: str, base_kind: str, fit: Optional["CropFit"] = None) -> dict[str, Any]:
    """The preset's {config path: value} for this base model (demo-only values dropped off the demo); with
    `fit` (core.training.preflight.CropFit of the prepared data) its crop is raised to one that trains
    every section of those data, so the preset's first run starts."""
    pr = dict(PRESETS.get(name) or {})
    if base_kind != DEMO:
        pr.update({k: None for k in DEMO_ONLY.get(name, ())})
    if fit is not None and pr.get("training.max_frames"):
        pr["training.max_frames"] = fit.fit(pr["training.max_frames"])
    return pr


def preset_crop_note(name: str, base_kind: str, fit: Optional["CropFit"]) -> Optional[tuple[int, int]]:
    """(the preset's own crop, the crop chosen for the data) when the data made the preset raise it."""
    own = preset_values(name, base_kind).get("training.max_frames")
    got = preset_values(name, base_kind, fit).get("training.max_frames")
    return (own, got) if own and got != own else None


def refit_crop(current: Optional[int], name: str, base_kind: str, fit: Optional["CropFit"]) -> Optional[int]:
    """The crop a form holding `current` should switch to when new data come (None: keep it): the preset's
    own crop, or one the trainer would refuse, is raised to what trains every section; a crop the
    user chose that the trainer takes stays."""
    if fit is None or not current:
        return None
    own = preset_values(name, base_kind).get("training.max_frames")
    if current != own and current >= fit.needed:
        return None
    new = fit.fit(current)
    return new if new != current else None
