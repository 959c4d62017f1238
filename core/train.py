"""Finetuning (full or LoRA) under Accelerate: observable, stoppable, exactly resumable.

    accelerate launch -m core.train --config <run>/config.yaml [--resume [CHECKPOINT]]
    python -m core.train --config <run>/config.yaml            (one process, same code)
    python -m core train --config cfg.yaml                     (prints the accelerate command, runs here)

Where the loss comes from: `TrainStep.forward` -> `build_targets` + `LeLM.compute_predictions`
(+ the checkpoint's condition dropout, train mode only) + `masked_ce`, the mean of the 3 streams.

Rules the issue leaves open, as implemented:
- Crop: a song longer than `min(training.max_frames, model max_frames)` is trained on a window of
  that many frames at a random start drawn from (seed, epoch, song id); EOS is a target only when
  the window holds the song's real end (a cut song must not learn to stop at the cut).
  Validation uses the first window.
- Batches: `training.batch_size` per process; a global batch is batch_size x processes songs of
  similar length (bucketing, `core.schedule.plan_epoch`), split strided across processes, so a
  1-process run with batch 2 and a 2-process run with batch 1 see the same songs each step.
- Determinism: each micro-step reseeds torch's RNG (LoRA dropout) and the model's condition-dropout
  generator from (seed, step, micro-step, rank); data order and crops are functions of (seed,
  epoch). Resume therefore needs only what `accelerator.save_state` stores (weights, optimizer,
  scheduler, RNG, our TrainerState with the step and the condition-dropout state).
- Telemetry is written by the main process only: `<run>/metrics.jsonl`, TensorBoard in `<run>/logs`.
  `tokens_per_s` counts valid frames x 3 streams of all processes per second of step time.
- Checkpoints `<run>/checkpoints/step-N/`: adapter files (LoRA) or `config.yaml + model.pt`
  (full), `trainer_state.json`, and `state/` (accelerate state). A checkpoint is written to a
  temporary folder and renamed when complete; only complete ones are resumed from. The last
  `training.keep_last` are kept.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
from accelerate.utils import DistributedType

from core import runs
from core.config import ConfigError, StudioConfig, load_config
from core.schedule import crop_window, derive_seed, lr_factor, plan_epoch, shard

EMPTY = 16385

# Fixed sample prompts (lyrics in SongGeneration's grammar, description tags). Sample 0 uses the
# first training song's own lyrics and description instead, to hear what the run learns.
SAMPLE_PROMPTS = [
    ("[intro-short] ; [verse] the city lights are calling me home.i walk the empty streets alone ; "
     "[chorus] hold on to the night.we are young and the sky is bright ; [outro-short]",
     "female, pop, happy, piano, the bpm is 120."),
    ("[intro-short] ; [verse] rain on the window.coffee gone cold ; [chorus] sing it slow.let it go ; [outro-short]",
     "male, folk, sad, acoustic guitar, the bpm is 90."),
    ("[intro-short] ; [verse] fire in the engine.wheels on the road ; [chorus] run run run.never look back ; "
     "[outro-short]", "male, rock, energetic, electric guitar, the bpm is 140."),
]


# ---- dataset --------------------------------------------------------------------------------
def find_dataset_dir(cfg: StudioConfig) -> Path:
    """`training.dataset_dir`, else the latest prepared dataset: `<prepared>/latest.json` (written by
    core.data.prepare), else the newest folder with a dataset_dict.json under `cfg.prepared_dir()`."""
    if cfg.training.dataset_dir:
        path = Path(cfg.training.dataset_dir).expanduser()
        if not path.is_dir():
            raise ConfigError(f"training.dataset_dir = {path} does not exist; run `python -m core prepare` "
                              "or point it at a prepared dataset folder")
        return path
    root = cfg.prepared_dir()
    latest = root / "latest.json"
    if latest.is_file():
        try:
            path = Path(json.loads(latest.read_text(encoding="utf-8"))["dataset_dir"])
            if (path / "dataset_dict.json").is_file():
                return path
        except (ValueError, KeyError, TypeError):
            pass
    candidates = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and (p / "dataset_dict.json").exists():
                candidates.append(p)
    if not candidates:
        raise ConfigError(f"no prepared dataset under {root}; run `python -m core prepare --config ...` first "
                          "or set training.dataset_dir")
    return max(candidates, key=lambda p: p.stat().st_mtime)


class SongSet:
    """One split of the prepared dataset with the crop rule applied on access."""

    def __init__(self, split, max_frames: int, seed: int, random_crop: bool):
        self.split = split
        self.max_frames = max_frames
        self.seed = seed
        self.random_crop = random_crop
        plain = split.with_format(None) if len(split) else split
        self.num_frames = [int(x) for x in plain["num_frames"]] if len(split) else []
        self.ids = [str(x) for x in plain["idx"]] if len(split) else []

    def __len__(self) -> int:
        return len(self.num_frames)

    def cropped_length(self, i: int) -> int:
        return min(self.num_frames[i], self.max_frames)

    def item(self, i: int, epoch: int) -> dict[str, Any]:
        row = self.split[int(i)]
        codes = torch.as_tensor(row["codes"]).long()
        total = codes.shape[-1]
        start, length, reaches_end = crop_window(total, self.max_frames, self.seed, epoch, self.ids[i],
                                                 random_start=self.random_crop)
        prompt = row.get("prompt")
        return {
            "codes": codes[:, start:start + length],
            "reaches_end": reaches_end,
            "prompt": None if prompt is None else torch.as_tensor(prompt).long(),
            "lyrics": row.get("lyrics"),
            "description": row.get("description"),
        }


def collate(items: list[dict[str, Any]], prompt_frames: int, version: str) -> dict[str, Any]:
    """Pad codes with EMPTY to the longest window; prompts to `prompt_frames`; model-ready texts."""
    from core.model.text_rules import model_text

    B = len(items)
    T = max(it["codes"].shape[-1] for it in items)
    codes = torch.full((B, 3, T), EMPTY, dtype=torch.long)
    prompt = torch.full((B, 3, prompt_frames), EMPTY, dtype=torch.long)
    lengths = torch.zeros(B, dtype=torch.long)
    reaches_end = torch.zeros(B, dtype=torch.bool)
    lyrics, descs = [], []
    for b, it in enumerate(items):
        n = it["codes"].shape[-1]
        codes[b, :, :n] = it["codes"]
        lengths[b] = n
        reaches_end[b] = bool(it["reaches_end"])
        if it["prompt"] is not None:
            p = it["prompt"][:, :prompt_frames]
            prompt[b, :, :p.shape[-1]] = p
        lyr, desc = model_text(it["lyrics"], it["description"], version)
        lyrics.append(lyr)
        descs.append(desc)
    return {"codes": codes, "lengths": lengths, "reaches_end": reaches_end, "prompt": prompt,
            "lyrics": lyrics, "descriptions": descs}


# ---- the model step -------------------------------------------------------------------------
class TrainStep(nn.Module):
    """Wraps LeLM (or its peft model) so DDP/FSDP see a forward() that returns the loss parts.

    forward -> (per-stream mean CE [3], valid target count per stream [3]).
    """

    def __init__(self, lm: nn.Module, lelm: nn.Module):
        super().__init__()
        self.lm = lm
        object.__setattr__(self, "_lelm", lelm)  # the LeLM inside (not a second registration)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, reaches_end: torch.Tensor,
                prompt: torch.Tensor, lyrics: list, descriptions: list) -> tuple[torch.Tensor, torch.Tensor]:
        from core.model import build_targets, masked_ce

        targets = build_targets(codes, lengths)
        cut = (~reaches_end.to(targets.device)).nonzero().flatten()
        for b in cut.tolist():  # a cropped window does not end the song: no EOS target there
            targets[b, :, int(lengths[b])] = EMPTY
        logits, mask = self._lelm.compute_predictions(targets, lyrics=lyrics, descriptions=descriptions,
                                                      prompt=prompt)
        per_stream = masked_ce(logits, targets, mask)
        counts = (mask & (targets != EMPTY)).sum(dim=(0, 2)).to(per_stream.dtype)
        return per_stream, counts


def lora_target_regex(cfg: StudioConfig) -> str:
    """peft `target_modules` regex (full match on module names) from the `lora` section."""
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


def apply_lora(cfg: StudioConfig, model: nn.Module) -> nn.Module:
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    regex = lora_target_regex(cfg)
    module_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    matched = [n for n in module_names if re.fullmatch(regex, n)]
    for name in cfg.lora.target_modules:
        if not any(n.endswith("." + name) for n in matched):
            raise ConfigError(f"lora.target_modules: {name!r} matches no linear layer in the chosen stacks "
                              f"(lora.stacks = {cfg.lora.stacks}); use names like q_proj, k_proj, v_proj, o_proj, "
                              "gate_proj, up_proj, down_proj")
    pcfg = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=regex, bias="none")
    return get_peft_model(model, pcfg)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _resolve_base(cfg: StudioConfig) -> Path:
    from core.model.info import resolve_base_model

    return Path(resolve_base_model(cfg))


def load_dataset_dict(dataset_dir: Path):
    """The prepared dataset (core.data.load_prepared)."""
    from core.data import load_prepared

    return load_prepared(dataset_dir)


def build_model(cfg: StudioConfig, dtype: torch.dtype = torch.float32):
    """-> (module to train: LeLM or PeftModel, the LeLM inside, checkpoint dir)."""
    from core.model import LeLM

    ckpt_dir = _resolve_base(cfg)
    lelm = LeLM.from_pretrained(ckpt_dir, runtime_root=cfg.paths.runtime_path, dtype=dtype)
    if not cfg.training.condition_dropout:
        lelm.condition_dropout.cfg_p = 0.0
        lelm.condition_dropout.attribute_p = {}
    if cfg.training.type == "full":
        frozen = set(lelm.unused_parameter_names())
        for name, p in lelm.named_parameters():
            if name in frozen or (cfg.training.freeze_transformer and
                                  (name.startswith("transformer.") or name.startswith("emb."))):
                p.requires_grad_(False)
        model = lelm
    else:
        for p in lelm.parameters():
            p.requires_grad_(False)
        model = apply_lora(cfg, lelm)
    if cfg.training.gradient_checkpointing:
        lelm.gradient_checkpointing_enable()
    return model, lelm, Path(ckpt_dir)


def make_optimizer(cfg: StudioConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norms, biases, 1-D tensors)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.training.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen (check training.type / lora.* settings)")
    return torch.optim.AdamW(groups, lr=cfg.training.learning_rate,
                             betas=(cfg.training.adam_beta1, cfg.training.adam_beta2))


def resolve_mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


# ---- memory estimate ------------------------------------------------------------------------
def activation_memory(D: int, F: int, layers: int, S: int, S_out: int, batch: int, checkpointing: bool,
                      act_bytes: int = 2) -> tuple[float, float]:
    """(transformer activations, logits + CE) in bytes, the formula the studio and bench/train.py print.

    Per layer and position without checkpointing (SDPA keeps no S x S matrix):
    act_bytes * (8D + 4F) (norm in/out, q, k, v, attention out, residual, gate, up, act, product);
    with checkpointing only each layer's input (act_bytes * D) is kept, plus one layer recomputed.
    Logits: 3 streams x S_out x 16385 x 10 bytes (low-precision logits, fp32 copy, fp32 grad).
    """
    per_layer = act_bytes * S * (8 * D + 4 * F) * batch
    acts = layers * act_bytes * S * D * batch + per_layer if checkpointing else layers * per_layer
    logits = 3 * S_out * 16385 * 10 * batch
    return float(acts), float(logits)


def estimate_memory(cfg: StudioConfig) -> dict[str, Any]:
    """GPU memory of one training process for this config (no model is built; reads config.yaml and
    the parameter shapes of model.pt lazily). Weights fp32 (4 bytes); full: + fp32 grads + AdamW
    (12 bytes per trainable parameter); LoRA: 16 bytes per adapter parameter; activations in bf16
    (fp32 when mixed precision is off) at batch_size x min(max_frames, the model's) frames.
    """
    from core.model.official_config import read_official_config

    base = _resolve_base(cfg)
    oc = read_official_config(base / "config.yaml", cfg.paths.runtime_path)
    D, F, L = oc.dim, oc.intermediate_size, oc.num_layers + oc.num_layers_sub
    C1 = oc.code_size + 1
    try:
        sd = torch.load(base / "model.pt", map_location="meta", weights_only=True, mmap=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        N = sum(v.numel() for v in sd.values() if torch.is_tensor(v))
    except Exception:  # an old-format file cannot be memory-mapped: count from the layout (Qwen2-size tables)
        N = (L * (4 * D * D + 3 * D * F + 2 * D) + 7 * (C1 + 1) * D + 6 * C1 * D + 2 * 151659 * D
             + 200 * D + 3 * D * D + 8 * D)
    unused = 3 * C1 * D + (oc.code_size + 2) * D + 2 * D
    tc = cfg.training
    T = min(tc.max_frames or oc.max_frames, oc.max_frames)
    prefix = oc.lyric_max_len + oc.prompt_max_len + oc.desc_max_len
    S_out = T + max(oc.delays or [0]) + 1
    S = prefix + S_out
    act_bytes = 4 if resolve_mixed_precision(tc.mixed_precision) == "no" and tc.mixed_precision != "auto" else 2
    acts, logits = activation_memory(D, F, L, S, S_out, tc.batch_size, tc.gradient_checkpointing, act_bytes)
    if tc.type == "full":
        trainable = N - unused
        states = 12 * trainable
    else:
        per_layer = {"q_proj": 2 * D, "k_proj": 2 * D, "v_proj": 2 * D, "o_proj": 2 * D,
                     "gate_proj": D + F, "up_proj": D + F, "down_proj": D + F}
        layers = {"both": L, "transformer": oc.num_layers, "transformer2": oc.num_layers_sub}[cfg.lora.stacks]
        trainable = cfg.lora.r * layers * sum(per_layer.get(n, 0) for n in cfg.lora.target_modules)
        if cfg.lora.train_fusion:
            trainable += cfg.lora.r * (3 * D + 2 * D)
        if cfg.lora.train_heads:
            trainable += cfg.lora.r * 3 * (D + C1)
        states = 16 * trainable
    weights = 4 * N
    total = weights + states + acts + logits
    gb = 1e9
    return {"parameters": N, "trainable": int(trainable), "frames": T, "positions": S,
            "weights_gb": round(weights / gb, 2), "grads_optimizer_gb": round(states / gb, 2),
            "activations_gb": round(acts / gb, 2), "logits_gb": round(logits / gb, 2),
            "total_gb": round(total / gb, 2),
            "formula": "4N + (12 Nt full | 16 Nlora) + activations(S, D, F, layers, ckpt) + 3*S_out*16385*10*B"}


def matmul_peak(device: str, dtype: torch.dtype, n: int = 1024, reps: int = 4) -> float:
    """FLOP/s of a square matmul on this device and dtype (a quick, honest yardstick for estimates)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / max(time.perf_counter() - t, 1e-9)


def estimate_time(cfg: StudioConfig, utilization: float = 0.35) -> dict[str, Any]:
    """Wall time of a run on this machine's device: steps x matmul FLOPs per step / (measured peak x
    utilization). FLOPs per step = 3 x forward (both stacks, fusion MLP, causal attention, the three
    heads on the sequence part) at batch_size x min(max_frames, the model's) frames, so songs shorter
    than the crop make it an upper bound. Steps = training.max_steps, else epochs x batches of the
    prepared training split (None when nothing is prepared yet)."""
    from core.model.official_config import read_official_config

    base = _resolve_base(cfg)
    oc = read_official_config(base / "config.yaml", cfg.paths.runtime_path)
    tc = cfg.training
    D, F, L = oc.dim, oc.intermediate_size, oc.num_layers + oc.num_layers_sub
    T = min(tc.max_frames or oc.max_frames, oc.max_frames)
    S_out = T + max(oc.delays or [0]) + 1
    S = oc.lyric_max_len + oc.prompt_max_len + oc.desc_max_len + S_out
    per_pos = L * (4 * D * D + 3 * D * F) + 3 * D * D + L * 2 * S * D
    forward = 2 * tc.batch_size * (S * per_pos + S_out * oc.code_depth * D * (oc.code_size + 1))
    step_flops = 3 * forward * tc.gradient_accumulation_steps
    steps = tc.max_steps
    songs = None
    if steps is None:
        try:
            songs = len(load_dataset_dict(find_dataset_dir(cfg))["train"])
        except Exception:  # nothing prepared yet: the estimate is per step only
            songs = None
        if songs:
            per_epoch = math.ceil(songs / (tc.batch_size * tc.gradient_accumulation_steps))
            steps = tc.epochs * per_epoch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and tc.mixed_precision != "no" else torch.float32
    peak = matmul_peak(device, dtype)
    step_s = step_flops / (peak * utilization)
    return {"device": device, "dtype": str(dtype).replace("torch.", ""), "steps": steps, "train_songs": songs,
            "step_tflop": round(step_flops / 1e12, 3), "peak_tflops": round(peak / 1e12, 3),
            "utilization": utilization, "step_s": step_s, "total_s": None if steps is None else steps * step_s,
            "formula": "steps x 3 x forward FLOPs / (measured matmul peak x utilization)"}


# ---- telemetry ------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Telemetry:
    """metrics.jsonl (+ TensorBoard) writer; a no-op on non-main processes."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / runs.METRICS_NAME
        self.tb = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(run_dir / "logs"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(_clean(record), allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def event(self, event: str, **fields: Any) -> None:
        self.write({"type": "event", "event": event, "time": runs.now_iso(), **fields})

    def scalars(self, step: int, prefix: str, values: dict[str, Any]) -> None:
        if self.tb is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None and math.isfinite(float(v)):
                self.tb.add_scalar(f"{prefix}/{k}", float(v), step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class _GatheredLeLM:
    """What core.model.checkpoint.save_pretrained reads from a LeLM, with a gathered (unsharded) state dict."""

    def __init__(self, lelm: nn.Module, state: dict[str, torch.Tensor]):
        self.config, self.version = lelm.config, lelm.version
        self.checkpoint_dtype = lelm.checkpoint_dtype
        self.source_dir = lelm.source_dir
        self.is_demo = getattr(lelm, "is_demo", False)
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


class TrainerState:
    """Our part of the accelerate state (registered for checkpointing)."""

    def __init__(self, lelm: nn.Module):
        self.lelm = lelm
        self.step = 0
        self.config_hash = ""
        self.elapsed_s = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "config_hash": self.config_hash, "elapsed_s": self.elapsed_s,
                "condition_dropout": self.lelm.condition_dropout_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.config_hash = state.get("config_hash", "")
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        if state.get("condition_dropout") is not None:
            self.lelm.load_condition_dropout_state(state["condition_dropout"])


# ---- the trainer ----------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: StudioConfig, config_path: Optional[Path] = None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg = cfg
        self.tc = cfg.training
        self.run_dir = cfg.output_dir().expanduser().resolve()
        self.config_path = config_path
        mp = resolve_mixed_precision(self.tc.mixed_precision)
        # A multi-process launch on a machine without an accelerator must ask for CPU (gloo) itself:
        # accelerate only picks MULTI_CPU when told, otherwise every process would train alone.
        has_accel = torch.cuda.is_available() or bool(getattr(getattr(torch, "xpu", None), "is_available", lambda: False)())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        self.accelerator = Accelerator(
            cpu=(world > 1 and not has_accel),
            mixed_precision=mp,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.rank, self.world = acc.process_index, acc.num_processes
        self.mixed_precision = mp
        self.tel = Telemetry(self.run_dir, self.is_main)
        self._signal_stop = False
        self.codec = None

    # -- printing only from the main process
    def log(self, msg: str) -> None:
        if self.is_main:
            print(f"[train] {msg}", flush=True)

    def setup(self) -> None:
        cfg, tc, acc = self.cfg, self.tc, self.accelerator
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            own = self.run_dir / runs.CONFIG_NAME
            if self.config_path is None or own.resolve() != self.config_path.resolve():
                cfg.save(own)
        torch.manual_seed(tc.seed)
        self.model, self.lelm, self.base_dir = build_model(cfg)
        trainable, total = count_parameters(self.model)
        self.trainable, self.total_params = trainable, total
        share = 100.0 * trainable / max(1, total)
        self.log(f"mode {tc.type}: {trainable:,} trainable of {total:,} parameters ({share:.3f}%)"
                 f" | mixed precision {self.mixed_precision} | processes {self.world} | device {acc.device}")
        if tc.type == "lora":
            self.log(f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} "
                     f"targets {lora_target_regex(cfg)}")

        self.dataset_dir = find_dataset_dir(cfg)
        ds = load_dataset_dict(self.dataset_dir)
        mcfg = self.lelm.config
        self.max_frames = min(tc.max_frames or mcfg.max_frames, mcfg.max_frames)
        self.train_set = SongSet(ds["train"], self.max_frames, tc.seed, random_crop=True)
        val = ds["validation"] if "validation" in ds else None
        self.val_set = SongSet(val, self.max_frames, tc.seed, random_crop=False) if val is not None else None
        if len(self.train_set) == 0:
            raise ConfigError(f"{self.dataset_dir}: the train split is empty")
        self.global_batch = tc.batch_size * self.world
        self.lengths = [self.train_set.cropped_length(i) for i in range(len(self.train_set))]
        self.batches_per_epoch = len(plan_epoch(self.lengths, self.global_batch, tc.seed, 0, tc.bucket_size))
        ga = tc.gradient_accumulation_steps
        self.total_steps = tc.max_steps or max(1, math.ceil(tc.epochs * self.batches_per_epoch / ga))
        self._plans: dict[int, list[list[int]]] = {}

        self.optimizer = make_optimizer(cfg, self.model)
        self.step_module = TrainStep(self.model, self.lelm)
        self.step_module.train()
        self.step_module, self.optimizer = acc.prepare(self.step_module, self.optimizer)
        warm, total, m = tc.warmup_steps, self.total_steps, tc.lr_min_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer.optimizer if hasattr(self.optimizer, "optimizer") else self.optimizer,
                                                           lambda u: lr_factor(u, total, warm, m))
        self.state = TrainerState(self.lelm)
        self.state.config_hash = runs.config_hash(cfg)
        acc.register_for_checkpointing(self.scheduler, self.state)
        if tc.type == "lora":
            acc.register_save_state_pre_hook(self._lora_save_hook)
            acc.register_load_state_pre_hook(self._lora_load_hook)
        self.log(f"data {self.dataset_dir}: {len(self.train_set)} train / {len(self.val_set or [])} validation songs, "
                 f"crop {self.max_frames} frames, global batch {self.global_batch} x accumulation {ga}, "
                 f"{self.batches_per_epoch} batches/epoch, {self.total_steps} steps")

    # -- LoRA: accelerate's state keeps only the trainable (adapter) weights, not the base model
    def _trainable_keys(self, model: nn.Module) -> set[str]:
        return {n for n, p in model.named_parameters() if p.requires_grad}

    def _lora_save_hook(self, models, weights, output_dir) -> None:
        for i, model in enumerate(models):
            keep = self._trainable_keys(model)
            if i < len(weights):
                weights[i] = {k: v for k, v in weights[i].items() if k in keep}

    def _lora_load_hook(self, models, input_dir) -> None:
        from safetensors import safe_open

        path = Path(input_dir) / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: this checkpoint's state is incomplete; resume from an "
                                    "earlier checkpoint or start the run again")
        with safe_open(str(path), framework="pt") as fh:
            stored = set(fh.keys())
        want = self._trainable_keys(models[0])
        if stored != want:
            missing, extra = sorted(want - stored)[:3], sorted(stored - want)[:3]
            raise RuntimeError(f"{path}: adapter weights do not match this run's LoRA settings "
                               f"(missing e.g. {missing}, unexpected e.g. {extra}); resume with the "
                               "checkpoint's own config.yaml")

    # -- data position
    def plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            self._plans = {epoch: plan_epoch(self.lengths, self.global_batch, self.tc.seed, epoch, self.tc.bucket_size)}
        return self._plans[epoch]

    def micro_batch(self, micro_index: int) -> tuple[dict[str, Any], int]:
        epoch, pos = divmod(micro_index, self.batches_per_epoch)
        idx = shard(self.plan(epoch)[pos], self.rank, self.world)
        items = [self.train_set.item(i, epoch) for i in idx]
        return collate(items, self.lelm.config.prompt_frames, self.lelm.version), epoch

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        dev = self.accelerator.device
        return {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}

    # -- control flags: main reads the files, every process learns the decision
    def poll_flags(self) -> dict[str, bool]:
        local = [0.0, 0.0, 0.0]
        if self._signal_stop:
            local[0] = 1.0
        if self.is_main:
            for i, flag in enumerate(runs.FLAGS):
                path = runs.flag_path(self.run_dir, flag)
                if path.exists():
                    local[i] = 1.0
                    if flag != "stop":
                        path.unlink(missing_ok=True)
        t = torch.tensor(local, device=self.accelerator.device)
        if self.world > 1:
            t = self.accelerator.reduce(t, reduction="sum")
        return {flag: bool(t[i] > 0) for i, flag in enumerate(runs.FLAGS)}

    # -- checkpoints
    def save_checkpoint(self, step: int, reason: str) -> Path:
        acc = self.accelerator
        root = self.run_dir / "checkpoints"
        final = root / f"step-{step}"
        tmp = root / f".step-{step}.tmp"
        if self.is_main:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                import shutil
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        self.state.step = step
        acc.save_state(str(tmp / "state"))
        gathered = None
        if acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            # sharded parameters: every rank takes part in gathering the full state dict
            full = acc.get_state_dict(self.step_module)
            gathered = {k[len("lm."):]: v for k, v in (full or {}).items() if k.startswith("lm.")}
        if self.is_main:
            inner = acc.unwrap_model(self.step_module).lm
            if self.tc.type == "lora":
                inner.save_pretrained(str(tmp), **({"state_dict": gathered} if gathered else {}))
            elif gathered:
                from core.model.checkpoint import save_pretrained as save_official
                save_official(_GatheredLeLM(self.lelm, gathered), tmp, dtype=None)
            else:
                self.lelm.save_pretrained(tmp, dtype=None)
            info = {"step": step, "total": self.total_steps, "mode": self.tc.type, "reason": reason,
                    "config_hash": self.state.config_hash, "base_model": str(self.base_dir),
                    "time": runs.now_iso()}
            (tmp / "trainer_state.json").write_text(json.dumps(info, indent=2))
            import shutil
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in runs.checkpoints(self.run_dir)[:-self.tc.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            self.tel.event("checkpoint", step=step, path=str(final), reason=reason)
            runs.update_run_json(self.run_dir, last_checkpoint=str(final), step=step)
            self.log(f"checkpoint step {step} -> {final} ({reason})")
        acc.wait_for_everyone()
        return final

    def resume_from(self, ckpt: Path) -> int:
        state_dir = ckpt / "state"
        if not state_dir.is_dir():
            raise FileNotFoundError(f"{state_dir} not found: {ckpt} is not a resumable checkpoint of core.train")
        kwargs = {"strict": False} if self.tc.type == "lora" else {}
        self.accelerator.load_state(str(state_dir), **kwargs)
        if self.state.config_hash and self.state.config_hash != runs.config_hash(self.cfg):
            self.log(f"note: the config changed since {ckpt.name} was saved (hash {self.state.config_hash} -> "
                     f"{runs.config_hash(self.cfg)}); continuing with the new config")
            self.state.config_hash = runs.config_hash(self.cfg)
        return self.state.step

    # -- evaluation and samples
    @torch.no_grad()
    def evaluate(self, step: int) -> Optional[float]:
        if self.val_set is None or len(self.val_set) == 0:
            return None
        acc = self.accelerator
        module = acc.unwrap_model(self.step_module)
        module.eval()
        order = sorted(range(len(self.val_set)), key=lambda i: -self.val_set.cropped_length(i))
        bs = self.tc.batch_size
        batches = [order[i:i + bs] for i in range(0, len(order), bs)][self.rank::self.world]
        sums = torch.zeros(3, device=acc.device, dtype=torch.float64)
        counts = torch.zeros(3, device=acc.device, dtype=torch.float64)
        try:
            for idx in batches:
                batch = self.to_device(collate([self.val_set.item(i, 0) for i in idx],
                                               self.lelm.config.prompt_frames, self.lelm.version))
                with acc.autocast():
                    per_stream, cnt = module(**batch)
                sums += per_stream.double() * cnt.double()
                counts += cnt.double()
        finally:
            module.train()
        if self.world > 1:
            sums = acc.reduce(sums, reduction="sum")
            counts = acc.reduce(counts, reduction="sum")
        per = (sums / counts.clamp(min=1)).tolist()
        loss = sum(per) / 3
        if self.is_main:
            rec = {"step": step, "val_loss": loss, "val_loss_mixed": per[0], "val_loss_vocal": per[1],
                   "val_loss_bgm": per[2], "songs": len(self.val_set)}
            self.tel.event("eval", **rec)
            self.tel.scalars(step, "val", {"loss": loss, "loss_mixed": per[0], "loss_vocal": per[1],
                                           "loss_bgm": per[2]})
            self.log(f"step {step}: validation loss {loss:.4f}")
        return loss

    def sample_prompts(self) -> list[tuple[str, Optional[str]]]:
        first = self.train_set.split.with_format(None)[0]
        prompts = [(first.get("lyrics") or SAMPLE_PROMPTS[0][0], first.get("description"))] + list(SAMPLE_PROMPTS)
        return prompts[:self.tc.num_samples]

    @torch.no_grad()
    def make_samples(self, step: int, reason: str) -> None:
        if self.tc.num_samples <= 0:
            return
        acc = self.accelerator
        if self.is_main:
            import soundfile as sf
            from core.model.text_rules import model_text

            if self.codec is None:
                from core.codec import get_codec
                self.codec = get_codec(self.cfg)
            out_dir = self.run_dir / "samples"
            out_dir.mkdir(parents=True, exist_ok=True)
            gen = self.cfg.generation
            frames = max(1, int(round(self.tc.sample_seconds * self.lelm.config.frame_rate)))
            frames = min(frames, self.lelm.config.max_frames)
            was_training = self.lelm.training
            self.lelm.eval()
            rng_state = torch.get_rng_state()
            files = []
            try:
                for k, (lyrics, desc) in enumerate(self.sample_prompts()):
                    lyr, d = model_text(lyrics, desc, self.lelm.version)
                    t0 = time.time()
                    with acc.autocast():
                        codes = self.lelm.generate(lyr, d, prompt=None, max_frames=frames, cfg_coef=gen.cfg_coef,
                                                   temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
                                                   record_window=gen.record_window, seed=gen.seed + k)
                    wav, sr = self.codec.decode(codes[0].cpu())
                    path = out_dir / f"step-{step}_{k}.wav"
                    sf.write(str(path), wav.detach().float().cpu().numpy().T, sr)
                    files.append(str(path))
                    self.tel.event("sample", step=step, index=k, path=str(path), lyrics=lyrics, description=desc,
                                   frames=int(codes.shape[-1]), seconds=round(time.time() - t0, 2), reason=reason,
                                   codec=getattr(self.codec, "id", None),
                                   demo_codec=bool(getattr(self.codec, "is_demo", False)))
            finally:
                torch.set_rng_state(rng_state)
                if was_training:
                    self.lelm.train()
            self.log(f"step {step}: {len(files)} samples in {out_dir}")
        acc.wait_for_everyone()

    # -- the loop
    def fit(self, resume: Optional[str]) -> str:
        acc, tc = self.accelerator, self.tc
        start_step = 0
        if resume:
            ckpt = runs.latest_checkpoint(self.run_dir) if resume == "latest" else Path(resume)
            if ckpt is None:
                self.log("resume requested but the run has no checkpoint yet: starting from step 0")
            else:
                start_step = self.resume_from(ckpt)
                self.log(f"resumed from {ckpt} at step {start_step}")
        elif runs.checkpoints(self.run_dir):
            raise RuntimeError(f"{self.run_dir} already has checkpoints; pass --resume to continue this run, "
                               "or use a new paths.output_dir")
        self.tel.event("phase", phase="train", step=start_step, total=self.total_steps, resumed=bool(start_step),
                       mode=tc.type, trainable=self.trainable, parameters=self.total_params,
                       processes=self.world, mixed_precision=self.mixed_precision,
                       max_frames=self.max_frames, dataset=str(self.dataset_dir))
        if start_step == 0:
            self.make_samples(0, "start")
        ga = tc.gradient_accumulation_steps
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        t_session = time.time()
        steps_session = 0
        window: list[dict[str, float]] = []
        outcome = "done"
        step = start_step
        while step < self.total_steps:
            t0 = time.time()
            lr = self.scheduler.get_last_lr()[0]
            loss_acc = torch.zeros(3, device=acc.device)
            tokens = 0
            epoch = 0
            for micro in range(ga):
                batch, epoch = self.micro_batch(step * ga + micro)
                tokens += int(batch["lengths"].sum()) * 3
                s = derive_seed(tc.seed, "step", step, micro, self.rank)
                torch.manual_seed(s)
                self.lelm.seed_condition_dropout(derive_seed(tc.seed, "cond", step, micro, self.rank))
                batch = self.to_device(batch)
                sync = micro == ga - 1
                ctx = nullcontext() if sync or self.world == 1 else acc.no_sync(self.step_module)
                with ctx:
                    per_stream, _ = self.step_module(**batch)
                    acc.backward(per_stream.mean() / ga)
                loss_acc += per_stream.detach().float() / ga
            max_norm = tc.max_grad_norm if tc.max_grad_norm > 0 else float("inf")
            grad_norm = acc.clip_grad_norm_(params, max_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_session += 1
            self.state.step = step
            if self.world > 1:
                loss_acc = acc.reduce(loss_acc, reduction="mean")
                tok = acc.reduce(torch.tensor([float(tokens)], device=acc.device), reduction="sum")
                tokens = int(tok.item())
            dt = time.time() - t0
            per = loss_acc.tolist()
            window.append({"loss": sum(per) / 3, "loss_mixed": per[0], "loss_vocal": per[1], "loss_bgm": per[2],
                           "grad_norm": float(grad_norm), "tokens": tokens, "dt": dt})
            if step % tc.log_every == 0 or step == self.total_steps:
                self._log_metrics(step, epoch, lr, window, t_session, steps_session)
                window = []
            flags = self.poll_flags()
            if step % tc.eval_every == 0 and step < self.total_steps:
                self.evaluate(step)
            if flags["stop"]:
                self.save_checkpoint(step, "stop")
                outcome = "stopped"
                break
            if step % tc.save_every == 0 and step < self.total_steps:
                self.save_checkpoint(step, "save_every")
            elif flags["save"]:
                self.save_checkpoint(step, "save-now")
            if (tc.sample_every and step % tc.sample_every == 0 and step < self.total_steps) or flags["sample"]:
                self.make_samples(step, "sample-now" if flags["sample"] else "sample_every")
        if outcome == "done":
            if window:
                self._log_metrics(step, epoch, lr, window, t_session, steps_session)
            self.evaluate(step)
            self.save_checkpoint(step, "end")
            self.make_samples(step, "end")
        return outcome

    def _log_metrics(self, step, epoch, lr, window, t_session, steps_session) -> None:
        if not self.is_main or not window:
            return
        n = len(window)
        mean = {k: sum(w[k] for w in window) / n for k in ("loss", "loss_mixed", "loss_vocal", "loss_bgm", "grad_norm")}
        dt = sum(w["dt"] for w in window)
        elapsed = time.time() - t_session
        eta = elapsed / max(1, steps_session) * (self.total_steps - step)
        rec = {"type": "metrics", "step": step, "total": self.total_steps, "epoch": epoch, **mean, "lr": lr,
               "tokens_per_s": sum(w["tokens"] for w in window) / max(dt, 1e-9),
               "memory_mb": memory_mb(self.accelerator.device), "elapsed_s": round(elapsed + self.state.elapsed_s, 3),
               "eta_s": round(eta, 1)}
        self.tel.write(rec)
        self.tel.scalars(step, "train", {k: rec[k] for k in ("loss", "loss_mixed", "loss_vocal", "loss_bgm", "lr",
                                                             "grad_norm", "tokens_per_s", "memory_mb")})
        print(f"[train] step {step}/{self.total_steps} loss {mean['loss']:.4f} "
              f"(mixed {mean['loss_mixed']:.3f} vocal {mean['loss_vocal']:.3f} bgm {mean['loss_bgm']:.3f}) "
              f"lr {lr:.3g} grad {mean['grad_norm']:.3g} {rec['tokens_per_s']:.0f} tok/s eta {eta:.0f}s", flush=True)

    def _on_sigterm(self, signum, frame) -> None:
        self._signal_stop = True


def _mark(run_dir: Path, is_main: bool, **fields: Any) -> None:
    if is_main:
        runs.update_run_json(run_dir, **fields)


def train(cfg: StudioConfig, resume: Optional[str] = None, config_path: Optional[Path] = None) -> str:
    """Run (or resume) training in this process (one rank of an accelerate launch). -> "done" | "stopped"."""
    trainer = Trainer(cfg, config_path)
    run_dir = trainer.run_dir
    if trainer.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        info = runs.read_run_json(run_dir)
        fields: dict[str, Any] = {"status": "running", "trainer_pid": os.getpid(), "ended": None, "error": None,
                                  "config_hash": runs.config_hash(cfg), "run_id": info.get("run_id", run_dir.name),
                                  "mode": cfg.training.type, "processes": trainer.world}
        by_studio = info.get("status") in ("starting", "stopping") and runs.pid_alive(info.get("pid"))
        if info.get("status") == "stopping":
            fields["status"] = "stopping"
        if not by_studio:  # started from a shell, not by runs.start_run
            fields.update(pid=os.getpid(), pgid=os.getpgid(0), pid_start=runs._proc_start_time(os.getpid()),
                          started=runs.now_iso(), created=info.get("created") or runs.now_iso(),
                          command=runs.command_for(run_dir, resume=bool(resume)))
        runs.update_run_json(run_dir, **fields)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, trainer._on_sigterm)
    except ValueError:
        pass  # not the main thread (e.g. called from a test thread): the stop flag still works
    try:
        trainer.setup()
        outcome = trainer.fit(resume)
    except BaseException as err:
        if trainer.is_main:
            msg = f"{type(err).__name__}: {err}"
            trainer.tel.event("error", message=msg, traceback=traceback.format_exc()[-4000:])
            _mark(run_dir, True, status="error", ended=runs.now_iso(), error=msg)
        trainer.tel.close()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if trainer.is_main:
        step = trainer.state.step
        trainer.tel.event("stopped" if outcome == "stopped" else "done", step=step, total=trainer.total_steps)
        _mark(run_dir, True, status=outcome, ended=runs.now_iso(), step=step, error=None)
        runs.flag_path(run_dir, "stop").unlink(missing_ok=True)
    trainer.tel.close()
    trainer.accelerator.end_training()
    return outcome


# ---- command line ---------------------------------------------------------------------------
def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Finetune SongGeneration (full or LoRA) under accelerate.")
    p.add_argument("--config", required=True, help="the run's config.yaml")
    p.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from the latest checkpoint of the run (or from the given checkpoints/step-N)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. training.learning_rate=3e-4 (repeatable)")
    return p


def _load(args) -> StudioConfig:
    from core.config import parse_override

    overrides = dict(parse_override(s) for s in args.set)
    return load_config(args.config, overrides)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry of `accelerate launch -m core.train` / `python -m core.train` (every rank runs this)."""
    args = _parser("core.train").parse_args(argv)
    try:
        cfg = _load(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    outcome = train(cfg, resume=args.resume, config_path=Path(args.config))
    return 0 if outcome in ("done", "stopped") else 1


def cli(argv: list[str]) -> int:
    """`python -m core train --config cfg.yaml [--resume] [--set k=v]`: train in this process.

    A config without `paths.output_dir` gets a new run folder under `<workspace>/runs/`. The
    equivalent `accelerate launch` command (for several GPUs or nodes) is printed first.
    """
    args = _parser("python -m core train").parse_args(argv)
    try:
        cfg = _load(args)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    if cfg.paths.output_dir is None:
        run_dir = runs.create_run(cfg)
        cfg = runs.load_run_config(run_dir)
        config_path = run_dir / runs.CONFIG_NAME
    else:
        run_dir = cfg.output_dir()
        config_path = Path(args.config)
        if args.set:
            config_path = cfg.save(run_dir / runs.CONFIG_NAME)
    cmd = ["accelerate", "launch", "-m", "core.train", "--config", str(Path(config_path).resolve())]
    if args.resume:
        cmd += ["--resume"] + ([] if args.resume == "latest" else [args.resume])
    print(f"[train] run folder {run_dir}\n[train] same run from a shell (any accelerate config, e.g. --multi_gpu):\n"
          f"  {shlex.join(cmd)}", flush=True)
    try:
        outcome = train(cfg, resume=args.resume, config_path=Path(config_path))
    except (ConfigError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0 if outcome in ("done", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
