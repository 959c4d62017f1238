"""Widgets for config keys: their type, bounds, choices and default come from `core.config` (the one
vocabulary), so the UI offers exactly what the engine accepts and a preset is just {config path: value}.

Optional numbers (e.g. training.max_steps: None = by epochs) show 0 for "not set"."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core.config import field_spec


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
