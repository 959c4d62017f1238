"""Widgets for config keys: their type, bounds, choices and default come from `core.config` (the one
vocabulary), so the UI offers exactly what the engine accepts and a preset is just {config path: value}.

Optional numbers (e.g. training.max_steps: None = by epochs) show 0 for "not set"."""
from __future__ import annotations

import re
from typing import Any

import gradio as gr

from core.config import field_spec

# config path -> i18n key of the label of the field that sets it (the Train tab passes these labels to
# config_widget); the official codec files are found through the runtime folder, the only field for them.
FIELD_LABELS: dict[str, str] = {
    "training.type": "mode", "lora.r": "lora_r", "lora.alpha": "lora_alpha", "lora.dropout": "lora_dropout",
    "lora.stacks": "lora_stacks", "lora.train_fusion": "lora_fusion", "lora.train_heads": "lora_heads",
    "training.learning_rate": "lr", "training.max_steps": "steps", "training.epochs": "epochs",
    "training.batch_size": "batch", "training.gradient_accumulation_steps": "accum", "training.warmup_steps": "warmup",
    "training.max_frames": "max_frames", "training.mixed_precision": "precision", "training.optimizer": "optimizer",
    "training.base_dtype": "base_dtype", "training.base_quant": "base_quant", "training.gradient_checkpointing": "grad_ckpt", "training.compile": "compile",
    "training.save_every": "save_every", "training.sample_every": "sample_every", "training.log_every": "log_every",
    "training.seed": "seed", "training.num_samples": "num_samples", "training.sample_seconds": "sample_seconds",
    "training.keep_last": "keep_last", "training.eval_every": "eval_every",
    "training.early_stopping_patience": "patience", "training.distributed": "distributed",
    "training.num_processes": "num_processes", "training.num_machines": "num_machines",
    "training.main_process_ip": "main_ip", "training.main_process_port": "main_port",
    "dpo.beta": "pref_beta", "dpo.sft_weight": "pref_sft", "dpo.label_smoothing": "pref_smooth",
    "paths.base_model_path": "base_path", "paths.runtime_path": "runtime_path",
    "paths.audio_tokenizer_path": "runtime_path", "paths.separate_audio_tokenizer_path": "runtime_path",
    "data.codec": "codec", "data.separation": "separation", "data.bgm_mode": "bgm_mode",
    "data.val_fraction": "val_fraction", "training.dataset_dir": "tab_tokenize",
}


def config_widget(key: str, label: Any, value: Any = None, dropdown: bool = False, **kw) -> gr.components.Component:
    """A Radio/Dropdown (Literal), Checkbox (bool), Number (int/float) or Textbox (str) for config key `key`."""
    spec = field_spec(key)
    v = spec.default if value is None else value
    if spec.choices is not None:
        cls = gr.Dropdown if dropdown else gr.Radio
        return cls(list(spec.choices), value=v, label=label, **kw)
    if spec.type is bool:
        return gr.Checkbox(bool(v), label=label, **kw)
    if spec.type in (int, float):
        # inclusive bounds only: an exclusive one (learning rate > 0) is left to the config's check, whose
        # message the preview shows
        lo = 0 if spec.optional else (None if spec.exclusive_min else spec.minimum)
        hi = None if spec.exclusive_max else spec.maximum
        return gr.Number(0 if v is None else v, label=label, precision=0 if spec.type is int else None,
                         minimum=lo, maximum=hi, **kw)
    if spec.type is str:
        return gr.Textbox(v or "", label=label, **kw)
    raise TypeError(f"no widget for config key {key} of type {spec.type}")


def config_value(key: str, value: Any) -> Any:
    """A widget's value as the config takes it: empty / 0 in an optional number means "not set"."""
    spec = field_spec(key)
    if spec.optional and spec.type in (int, float) and value in (None, "", 0):
        return None
    if spec.optional and spec.type is str and not (value or "").strip():
        return None
    return value


def api_name(key: str) -> str:
    """The parameter name of a config widget in the HTTP API: training.max_steps -> training_max_steps."""
    return key.replace(".", "_")


def name_fields(text: str, lang: str = "en") -> str:
    """`text` (an engine message) with each config key it names (`training.learning_rate`, quoted or not)
    turned into the field the user sees: “Learning rate” (training.learning_rate), in `lang`."""
    from studio.i18n import tr
    if not text or "." not in text:
        return text
    keys = sorted(FIELD_LABELS, key=len, reverse=True)
    pattern = re.compile(r"['`]?\b(" + "|".join(re.escape(k) for k in keys) + r")\b['`]?")

    def label(m):
        name = tr(FIELD_LABELS[m.group(1)], lang)
        return (f"“{name}”（{m.group(1)}）" if lang == "zh" else f"“{name}” ({m.group(1)})")

    return pattern.sub(label, text)
