"""The config: numbers as YAML writes them, no NaN/inf anywhere, paths relative to the config file,
and the vocabulary (choices, defaults, bounds) the studio's widgets read."""
from __future__ import annotations

import math
import os

import pytest

from core.config import ConfigError, StudioConfig, choices, default, field_spec, load_config, parse_override


def _float_keys() -> list[str]:
    keys = []
    for section, f in StudioConfig.model_fields.items():
        sub = f.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            for name in sub.model_fields:
                spec = field_spec(f"{section}.{name}")
                if spec.type is float:
                    keys.append(f"{section}.{name}")
    return keys


def test_yaml_exponent_numbers_are_floats(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  learning_rate: 1e-4\n  max_grad_norm: 2\nlora:\n  alpha: 3.5e1\n")
    cfg = load_config(p)
    assert cfg.training.learning_rate == pytest.approx(1e-4) and isinstance(cfg.training.learning_rate, float)
    assert cfg.lora.alpha == 35.0
    assert load_config(None, dict([parse_override("training.learning_rate=3e-4")])).training.learning_rate == 3e-4


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", "nan", "inf"])
def test_non_finite_rejected_in_yaml(tmp_path, bad):
    p = tmp_path / "c.yaml"
    p.write_text(f"training:\n  learning_rate: {bad}\n")
    with pytest.raises(ConfigError, match=r"training\.learning_rate.*finite"):
        load_config(p)


def test_non_finite_rejected_in_every_float_field():
    keys = _float_keys()
    assert "training.learning_rate" in keys and "generation.cfg_coef" in keys and "data.val_fraction" in keys
    for key in keys:
        for value in (math.nan, math.inf, "nan"):
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                load_config(None, {key: value})
    with pytest.raises(ConfigError, match=r"generation\.lora_scales\.1.*finite"):
        load_config(None, {"generation.lora_scales": [0.0, math.nan]})


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    conf = tmp_path / "project" / "conf"
    (conf / "base").mkdir(parents=True)
    p = conf / "train.yaml"
    p.write_text("workspace: ws\npaths:\n  base_model_path: base\n  metadata_path: ../data/meta.jsonl\n"
                 "  output_dir: out\ngeneration:\n  compare_to: base\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(p)
    assert cfg.workspace == str(conf / "ws")
    assert cfg.paths.metadata_path == str(tmp_path / "project" / "data" / "meta.jsonl")
    assert cfg.paths.output_dir == str(conf / "out")
    assert cfg.paths.base_model_path == str(conf / "base")  # an existing folder beside the config
    assert cfg.generation.compare_to == str(conf / "base")
    # values that are not paths stay as written: the demo model, a Hub repo id, "base" when no such folder
    p.write_text("paths:\n  base_model_path: tencent/SongGeneration\ngeneration:\n  compare_to: base\n")
    (conf / "base").rmdir()
    cfg = load_config(p)
    assert cfg.paths.base_model_path == "tencent/SongGeneration" and cfg.generation.compare_to == "base"
    assert load_config(p, {"paths.base_model_path": "demo"}).paths.base_model_path == "demo"
    # overrides are relative to the shell's folder; absolute paths are kept
    cfg = load_config(p, {"paths.output_dir": "runs/x", "paths.runtime_path": str(tmp_path)})
    assert cfg.paths.output_dir == str(elsewhere / "runs" / "x") and cfg.paths.runtime_path == str(tmp_path)
    # a saved config reads back the same from anywhere
    saved = cfg.save(tmp_path / "saved" / "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(saved).paths.output_dir == cfg.paths.output_dir


def test_removed_keys_are_rejected_with_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'hub\.push_adapter'.*accepted keys here: repo_id"):
        load_config(None, {"hub.push_adapter": True})
    assert default("training.num_workers") == 0


def test_vocabulary_for_widgets():
    assert choices("training.mixed_precision") == ["auto", "no", "bf16", "fp16"]
    assert choices("training.type") == ["full", "lora"]
    assert default("training.learning_rate") == 1e-4
    spec = field_spec("lora.dropout")
    assert (spec.minimum, spec.maximum, spec.exclusive_max, spec.type) == (0, 1, True, float)
    spec = field_spec("training.max_steps")
    assert spec.optional and spec.type is int and spec.minimum == 1 and spec.default is None
    with pytest.raises(KeyError, match="accepted here"):
        field_spec("training.learning_rat")
    with pytest.raises(KeyError):
        choices("training.learning_rate")


def test_seed_guide_keys_are_accepted(tmp_path):
    p = tmp_path / "train_config.yaml"
    p.write_text(
        "paths:\n  base_model_path: ckpt/songgeneration_base\n  audio_tokenizer_path: ckpt/third_party/audio_tokenizer/\n"
        "  separate_audio_tokenizer_path: ckpt/third_party/separate_audio_tokenizer/\n  raw_data_dir: my_dataset/wavs/\n"
        "  metadata_path: my_dataset/metadata.jsonl\n  prepared_data_dir: prepared_data/\n  output_dir: training_output/\n"
        "training:\n  type: lora\n  epochs: 3\n  batch_size: 1\n  learning_rate: 1e-4\n  num_workers: 2\n"
        "lora:\n  r: 8\n  alpha: 16\n  target_modules: [q_proj, v_proj]\n")
    cfg = load_config(p)
    assert cfg.training.num_workers == 2 and cfg.lora.r == 8
    assert cfg.paths.raw_data_dir == os.path.join(str(tmp_path), "my_dataset", "wavs")


def test_set_overrides_keep_numbers_and_name_the_problem():
    assert parse_override("training.learning_rate=3e-4") == ("training.learning_rate", 3e-4)
    assert parse_override(" training.epochs = 3") == ("training.epochs", 3)
    assert parse_override("generation.lora_scales=[0, 0.5, 1]") == ("generation.lora_scales", [0, 0.5, 1])
    assert parse_override("paths.base_model_path=${oc.env:HOME}")[1] == "${oc.env:HOME}"  # nothing is resolved
    for bad in ("training.epochs", "=3"):
        with pytest.raises(ConfigError, match="must look like section.key=value"):
            parse_override(bad)
    with pytest.raises(ConfigError, match=r"training\.learning_rate=\[1,.*not valid YAML"):
        parse_override("training.learning_rate=[1,")
    with pytest.raises(ConfigError, match=r"training\.type.*expected one of: 'full' or 'lora'"):
        load_config(None, dict([parse_override("training.type=qlora")]))
    cfg = load_config(None, dict(parse_override(s) for s in ("training.epochs=2", "training.learning_rate=1e-3")))
    assert cfg.training.epochs == 2 and cfg.training.learning_rate == 1e-3
