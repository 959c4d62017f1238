"""Training presets by GPU memory: what fits on an 8 to 80 GB card, keyed by config path.

Each preset names the official model size it is sized for (base: 2.83 B parameters, 150-270 s;
large / v2-large: 5.12 B, 270 s) and stays within 90 % of the card by core.training.estimate's figure
(tests/test_presets.py checks it). Smaller cards keep the frozen base in bfloat16 (LoRA only);
full fine-tuning uses Adafactor (factored second moment, ~no optimizer state); 8-bit AdamW
(bitsandbytes, CUDA) is the alternative where bitsandbytes is installed. Every preset turns on
training.compile (the stacks through torch.compile; a failure falls back to eager with a log line).
"""
from __future__ import annotations

from typing import Any

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


def preset_name(gb: int) -> str:
    p = GPU_PRESETS[gb]
    return f"{gb} GB · {p['model']} · {p['label']}"
