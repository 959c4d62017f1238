"""One typed config for every command (prepare, train, merge, generate, push).

The `paths`, `training` and `lora` sections take the keys of the seed training guide as they are;
`data`, `generation` and `hub` are ours. Unknown keys and bad values fail with a message that
names the key and the accepted values.
"""
from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import annotated_types
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import StudioError
from core.sampling import GEN_TYPES, SAMPLING, bounds

DEMO = "demo"


class ConfigError(StudioError, ValueError):
    """A config file that cannot be used; the message names the key and what is accepted."""
    code = "config"
    details: list = []  # pydantic's errors (loc, type, input, ctx) when the values failed validation


class _Section(BaseModel):
    # allow_inf_nan=False: NaN / inf in any float field fails with the key's name (a NaN learning rate
    # would otherwise train silently into NaN weights); numeric strings such as "1e-4" (YAML 1.1 reads
    # them as text) are coerced by pydantic's lax mode
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# Path fields: a relative value in a YAML file is relative to that file's folder, on the command line
# to the shell's folder. "maybe" marks fields that also take a non-path ("demo", a Hub repo id, "base"):
# those are resolved only when the path exists there or is written as ./x or ../x.
_PATH = {"path": "always"}
_MAYBE_PATH = {"path": "maybe"}


class PathsConfig(_Section):
    base_model_path: str = Field(DEMO, json_schema_extra=_MAYBE_PATH)  # official checkpoint folder (config.yaml + model.pt), or "demo"
    audio_tokenizer_path: Optional[str] = Field(None, json_schema_extra=_PATH)  # official 1rvq tokenizer (mixed stream)
    separate_audio_tokenizer_path: Optional[str] = Field(None, json_schema_extra=_PATH)  # official septoken tokenizer (vocal/bgm)
    runtime_path: Optional[str] = Field(None, json_schema_extra=_PATH)  # SongGeneration runtime root (third_party/, conf/, ckpt/)
    raw_data_dir: Optional[str] = Field(None, json_schema_extra=_PATH)
    metadata_path: Optional[str] = Field(None, json_schema_extra=_PATH)
    prepared_data_dir: Optional[str] = Field(None, json_schema_extra=_PATH)  # default <workspace>/prepared
    output_dir: Optional[str] = Field(None, json_schema_extra=_PATH)  # default <workspace>/runs/<run-id>


class TrainingConfig(_Section):
    type: Literal["full", "lora"] = "lora"
    objective: Literal["sft", "dpo"] = "sft"  # dpo: preference pairs (the `dpo` section), see core.preference
    epochs: int = Field(1, ge=1)
    max_steps: Optional[int] = Field(None, ge=1)  # overrides epochs when set
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    lr_min_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.95, gt=0, lt=1)
    # adamw (fused kernel where available) | adamw_8bit (bitsandbytes, CUDA) | adafactor (transformers): core.training.optimizers
    optimizer: Literal["adamw", "adamw_8bit", "adafactor"] = "adamw"
    # LoRA only: keep the frozen base weights in bfloat16 (half the memory; adapters stay float32)
    base_dtype: Literal["float32", "bfloat16"] = "float32"
    # LoRA only: the frozen decoder-layer linears in 4-bit NF4 or 8 bits (bitsandbytes; QLoRA); export merges
    # the adapters into the full-precision base (core.training.setup.quantize_base)
    base_quant: Literal["none", "nf4", "int8"] = "none"
    max_grad_norm: float = Field(1.0, ge=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    # torch.compile the two Llama stacks (core.model.compiled); if compiling fails the run logs why and goes on eagerly
    compile: bool = False
    # crop rule: random window of this many frames; unset or 0: the model's max_dur
    max_frames: Optional[int] = Field(None, ge=0)
    seed: int = 1234
    log_every: int = Field(1, ge=1)
    eval_every: int = Field(50, ge=1)
    save_every: int = Field(100, ge=1)
    sample_every: int = Field(0, ge=0)  # 0: samples only at step 0 and at the end
    keep_last: int = Field(2, ge=1)  # periodic checkpoints kept; "save-now", "best", "stop" and "end" ones always stay
    # stop when the validation loss has not improved for this many evaluations (0: never stop early)
    early_stopping_patience: int = Field(0, ge=0)
    early_stopping_min_delta: float = Field(0.0, ge=0)  # an improvement smaller than this does not count
    freeze_transformer: bool = False  # "modular extension": train only the sub stack side
    num_workers: int = Field(0, ge=0)
    # prepared dataset folder (core.data's output); default: the newest one under the prepared dir
    dataset_dir: Optional[str] = Field(None, json_schema_extra=_PATH)
    condition_dropout: bool = True  # the checkpoint's CFG/attribute dropout; false only to debug/compare
    num_samples: int = Field(2, ge=0)  # fixed lyric prompts generated at each sample point (0: none)
    sample_seconds: float = Field(10.0, gt=0)  # length of each sample
    # how `accelerate launch` spreads the run (core.runs.launch; assets/accelerate/<choice>.yaml)
    distributed: Literal["auto", "single", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "multi_node"] = "auto"
    num_processes: Optional[int] = Field(None, ge=1)  # processes of all machines together (GPUs in all)
    num_machines: int = Field(1, ge=1)
    main_process_ip: Optional[str] = None  # the main machine's address (several machines)
    main_process_port: Optional[int] = Field(None, ge=1, le=65535)
    bucket_size: int = Field(64, ge=1)  # length bucketing: sort windows of bucket_size global batches


class LoraConfig(_Section):
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    stacks: Literal["both", "transformer", "transformer2"] = "both"
    train_fusion: bool = False  # also adapt the fusion MLP (mlp.0, mlp.2)
    train_heads: bool = False  # also adapt the output heads (transformer.lm_head, linears.*)

    @field_validator("target_modules")
    @classmethod
    def _no_container(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one module name, e.g. q_proj")
        if "mlp" in v:
            raise ValueError('"mlp" matches containers (the fusion Sequential and LlamaMLP), not layers; '
                             "use gate_proj/up_proj/down_proj, or lora.train_fusion: true")
        return v


class DataConfig(_Section):
    codec: Literal["demo", "official"] = "demo"
    # auto: Demucs when its checkpoint is found (paths.runtime_path), else the labelled demo split for
    # the demo codec (the official codec then needs Demucs or per-song stems); none: stems required
    separation: Literal["auto", "demucs", "demo", "none"] = "auto"
    bgm_mode: Literal["stems", "mix_minus_vocal"] = "stems"  # accompaniment = drums+bass+other, or mix - vocal
    val_fraction: float = Field(0.1, ge=0, lt=1)  # floor(n * val_fraction) songs, at most n - 1
    prompt_offset_s: float = Field(30.0, ge=0)  # where the 10 s prompt starts when no chorus time is known
    min_duration_s: float = Field(5.0, ge=0)  # shorter songs are rejected
    seed: int = 0
    device: str = "auto"
    # prepare's time bounds (core.runs.budget): the whole job (unset: none), and the longest wait for the next
    # song (separating and encoding one long song on a CPU takes minutes)
    time_limit_s: Optional[float] = Field(None, gt=0)
    stall_limit_s: float = Field(1800.0, gt=0)


class GenerationConfig(_Section):
    lyrics: Optional[str] = None
    description: Optional[str] = None
    prompt_audio: Optional[str] = Field(None, json_schema_extra=_PATH)
    max_seconds: Optional[float] = Field(None, gt=0)
    # sampling: defaults and bounds from core.sampling.Sampling
    cfg_coef: float = Field(SAMPLING.cfg_coef, **bounds("cfg_coef"))
    temperature: float = Field(SAMPLING.temperature, **bounds("temperature"))
    top_k: int = Field(SAMPLING.top_k, **bounds("top_k"))
    top_p: float = Field(SAMPLING.top_p, **bounds("top_p"))
    record_window: int = Field(SAMPLING.record_window, **bounds("record_window"))
    seed: int = 0
    gen_type: Literal[GEN_TYPES] = GEN_TYPES[0]
    lora_scales: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0])  # strength sweep
    output_dir: Optional[str] = Field(None, json_schema_extra=_PATH)  # default <workspace>/generations
    prompt_tokens: Optional[str] = Field(None, json_schema_extra=_PATH)  # .npy/.pt [3, P] prompt tokens (instead of prompt_audio)
    checkpoint: Optional[str] = Field(None, json_schema_extra=_PATH)  # finetuned checkpoint (LoRA adapter or full) to generate / A-B / sweep with
    compare_to: Optional[str] = Field(None, json_schema_extra=_MAYBE_PATH)  # A side of an A/B: None or "base" = the base model, or a checkpoint folder
    audio_format: Literal["wav", "flac"] = "wav"
    # KV cache: auto = the model's dtype (bf16 / fp16 weights -> the same cache); int8 = K/V in int8 (a quarter of
    # float32, half of bf16; tokens close to, not equal to, a float cache: core.model.fast_step.Int8KV)
    kv_cache: Literal["auto", "int8"] = "auto"
    # time bounds of a generation job (single, A/B, sweep, candidates; core.runs.budget): the whole job (unset:
    # sized from the model and the length asked), and the longest wait for the next frame or stage
    time_limit_s: Optional[float] = Field(None, gt=0)
    stall_limit_s: float = Field(600.0, gt=0)


class DpoConfig(_Section):
    beta: float = Field(0.1, gt=0)  # strength of the pull towards the reference model
    sft_weight: float = Field(0.0, ge=0)  # + sft_weight x the SFT loss of the chosen songs
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)  # conservative DPO: share of labels assumed flipped
    pairs_dir: Optional[str] = Field(None, json_schema_extra=_PATH)  # default <workspace>/preference/pairs
    val_fraction: float = Field(0.2, ge=0, lt=1)  # share of prompts whose pairs are held out


class HubConfig(_Section):
    repo_id: Optional[str] = None
    private: bool = True
    push_dataset: bool = False
    dataset_repo_id: Optional[str] = None  # default <repo_id>-data
    base_model_id: Optional[str] = None  # Hub id of the base for the card's base_model (default: paths.base_model_path if it is one)


class StudioConfig(_Section):
    paths: PathsConfig = Field(default_factory=PathsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    dpo: DpoConfig = Field(default_factory=DpoConfig)
    hub: HubConfig = Field(default_factory=HubConfig)
    workspace: Optional[str] = Field(None, json_schema_extra=_PATH)  # default $STUDIO_HOME or ./workspace

    # ---- derived locations -------------------------------------------------------------
    def workspace_dir(self) -> Path:
        return Path(self.workspace or os.environ.get("STUDIO_HOME") or "workspace").expanduser()

    def prepared_dir(self) -> Path:
        return Path(self.paths.prepared_data_dir) if self.paths.prepared_data_dir else self.workspace_dir() / "prepared"

    def output_dir(self) -> Path:
        return Path(self.paths.output_dir) if self.paths.output_dir else self.workspace_dir() / "runs" / "default"

    # ---- IO ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model: Any = StudioConfig
            for p in parent:
                model = model.model_fields[p].annotation
            accepted = ", ".join(model.model_fields)
            lines.append(f"  - unknown key '{key}'; accepted keys here: {accepted}")
        elif e["type"] == "literal_error":
            allowed = e.get("ctx", {}).get("expected", "")
            lines.append(f"  - '{key}' = {e.get('input')!r} is not accepted; expected one of: {allowed}")
        else:
            lines.append(f"  - '{key}' = {e.get('input')!r}: {e['msg']}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "config") -> StudioConfig:
    try:
        return StudioConfig.model_validate(data or {})
    except ValidationError as err:
        exc = ConfigError(_format_errors(err, source))
        exc.details = err.errors()  # per key, for a UI that words them itself
        raise exc from None


def _resolve_paths(data: Any, model: type[BaseModel], base: Path) -> None:
    """Make the relative path values of `data` (a raw section dict) absolute against `base`, in place."""
    if not isinstance(data, dict):
        return
    for name, field in model.model_fields.items():
        value = data.get(name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            _resolve_paths(value, sub, base)
            continue
        kind = (field.json_schema_extra or {}).get("path") if isinstance(field.json_schema_extra, dict) else None
        if not kind or not isinstance(value, str) or not value.strip():
            continue
        p = Path(value).expanduser()
        if p.is_absolute():
            data[name] = str(p)
        elif kind == "always" or value.startswith(("./", "../")) or (base / p).exists():
            data[name] = str((base / p).resolve())


def _dotted_tree(items: dict[str, Any], base: Optional[dict] = None) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} laid over `base` (OmegaConf's dotted keys): each value replaces what
    was there, a non-mapping on the way becomes a mapping. Values pass through as given (no interpolation
    is resolved); the config's models validate them."""
    flags = {"allow_objects": True}
    try:
        tree = OmegaConf.create(base or {}, flags=flags)
        for dotted, value in items.items():
            OmegaConf.update(tree, dotted, value, merge=False)
        return OmegaConf.to_container(tree, resolve=False)
    except OmegaConfBaseException as err:
        raise ConfigError(f"overrides {', '.join(items)}: {err}") from None


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> StudioConfig:
    """Read a YAML config (or defaults when `path` is None) and apply dotted-key overrides.

    Relative paths in the file are taken relative to the file's folder, relative paths in `overrides`
    relative to the current folder; both are stored absolute, so a run's saved config means the same
    wherever it is read from."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (give --config path/to/config.yaml)")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (paths, training, ...)")
        _resolve_paths(data, StudioConfig, p.resolve().parent)
        source = str(p)
    if overrides:
        given = _dotted_tree(overrides)
        _resolve_paths(given, StudioConfig, Path.cwd())
        data = _dotted_tree({dotted: _leaf(given, dotted) for dotted in overrides}, data)
    return parse_config(data, source)


def _leaf(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def parse_override(text: str) -> tuple[str, Any]:
    """`training.learning_rate=3e-4` -> ("training.learning_rate", 0.0003): OmegaConf's dotlist grammar
    (YAML values, numbers stay numbers); the field's type converts the rest."""
    key = text.partition("=")[0].strip()
    if "=" not in text or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        tree = OmegaConf.to_container(OmegaConf.from_dotlist([f"{key}={text.partition('=')[2]}"]), resolve=False)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {err}") from None
    return key, _leaf(tree, key)


# ---- the UI's vocabulary: what a key accepts, read from the models above ----------------------------
@dataclass(frozen=True)
class FieldSpec:
    """One config key as a widget needs it: its type, default, accepted values and bounds."""
    key: str
    type: Any
    default: Any
    choices: tuple[Any, ...] | None = None  # a Literal's values
    minimum: float | None = None  # inclusive (ge) or exclusive (gt) lower bound
    maximum: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    optional: bool = False


def field_spec(key: str) -> FieldSpec:
    """`field_spec("training.mixed_precision").choices` -> ("auto", "no", "bf16", "fp16")."""
    model: type[BaseModel] = StudioConfig
    *parents, leaf = key.split(".")
    for part in parents:
        if part not in model.model_fields:
            raise KeyError(f"unknown config section {part!r} in {key!r}")
        model = model.model_fields[part].annotation
    if leaf not in model.model_fields:
        raise KeyError(f"unknown config key {key!r}; accepted here: {', '.join(model.model_fields)}")
    field = model.model_fields[leaf]
    ann = field.annotation
    optional = False
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        ann = rest[0] if len(rest) == 1 else ann
    choices = tuple(typing.get_args(ann)) if typing.get_origin(ann) is Literal else None
    lo = hi = None
    lo_x = hi_x = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_x = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_x = m.lt, True
    default = field.get_default(call_default_factory=True)
    return FieldSpec(key, ann, default, choices, lo, hi, lo_x, hi_x, optional)


def choices(key: str) -> list[Any]:
    spec = field_spec(key)
    if spec.choices is None:
        raise KeyError(f"{key} is not a choice of fixed values")
    return list(spec.choices)


def default(key: str) -> Any:
    return field_spec(key).default
