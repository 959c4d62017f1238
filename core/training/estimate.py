"""How much GPU memory and wall time a training config needs, before anything is built.

Memory: weights fp32 (4 bytes per parameter; 2 for a LoRA run's bfloat16 base; a quantized base's decoder
linears QUANT_BYTES); full: + fp32 grads + optimizer state (AdamW 8 bytes,
8-bit AdamW 2, Adafactor ~0: core.training.optimizers.STATE_BYTES) per trainable parameter; LoRA: weights + grads +
state per adapter parameter; activations in bf16 (fp32 when mixed precision is off) at batch_size x
min(max_frames, the model's) frames, plus the logits and their CE (chunked when that is smaller:
core.model.loss).

Time: once a run of the same step-shaping settings (model, mode, batch, crop, precision, LoRA layout,
...; `step_signature`) has trained on this machine, steps x the median step time it logged
(metrics.jsonl `step_s`; `measured_step_time`). Before that, steps x 3 x forward FLOPs / (measured
matmul peak x utilization): the peak is measured once per device, dtype and machine (best of several
short trials, so a busy moment does not halve it) and kept in `<workspace>/cache/matmul_peak.json`;
no call measures it again.
"""
from __future__ import annotations

import functools
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from core.config import StudioConfig
from core.fsutil import atomic_write_json
from core.tokens import CODE_SIZE

PEAK_CACHE = Path("cache") / "matmul_peak.json"  # under the workspace


def _base_config(cfg: StudioConfig):
    from core.training.base_model import resolve_base_model
    from core.model.official_config import read_official_config

    base = Path(resolve_base_model(cfg))
    return base, read_official_config(base / "config.yaml", cfg.paths.runtime_path)


def _frames(cfg: StudioConfig, oc) -> tuple[int, int, int]:
    """(frames T, output positions S_out, positions S) of one training sequence."""
    T = min(cfg.training.max_frames or oc.max_frames, oc.max_frames)
    return (T, *sequence_positions(oc, T))


def sequence_positions(oc, frames: int) -> tuple[int, int]:
    """(output positions S_out, positions S) of a sequence of `frames` frames: the delay pattern's steps, and
    those after the condition prefix."""
    S_out = frames + max(oc.delays or [0]) + 1
    return S_out, oc.lyric_max_len + oc.prompt_max_len + oc.desc_max_len + S_out


def train_step_flops(oc, frames: int, batch: int) -> float:
    """Matmul FLOPs of one training step at `frames` frames (3 x forward; gradient-checkpoint recompute not
    counted): both stacks, the fusion MLP, causal attention, the three heads on the sequence part."""
    D, F, L = oc.dim, oc.intermediate_size, oc.num_layers + oc.num_layers_sub
    S_out, S = sequence_positions(oc, frames)
    per_pos = L * (4 * D * D + 3 * D * F) + 3 * D * D + L * 2 * S * D
    return 3 * 2 * batch * (S * per_pos + S_out * oc.code_depth * D * (oc.code_size + 1))


def activation_memory(D: int, F: int, layers: int, S: int, S_out: int, batch: int, checkpointing: bool,
                      act_bytes: int = 2) -> tuple[float, float]:
    """(transformer activations, logits + CE) in bytes, the formula the studio and bench/train.py print.

    Per layer and position without checkpointing (SDPA keeps no S x S matrix):
    act_bytes * (8D + 4F) (norm in/out, q, k, v, attention out, residual, gate, up, act, product);
    with checkpointing only each layer's input (act_bytes * D) is kept, plus one layer recomputed.
    Logits: the smaller of the plain path, 3 streams x S_out x 16385 x 10 bytes (low-precision logits,
    fp32 copy, fp32 grad), and the chunked linear + CE (core.model.loss): one chunk of fp32 logits and
    its low-precision gradient, plus an fp32 head-gradient accumulator of 16385 x D.
    """
    per_layer = act_bytes * S * (8 * D + 4 * F) * batch
    acts = layers * act_bytes * S * D * batch + per_layer if checkpointing else layers * per_layer
    return float(acts), float(logits_memory(S_out, batch, D))


def logits_memory(S_out: int, batch: int, D: int) -> float:
    from core.model.loss import CHUNK_BYTES

    plain = 3 * S_out * (CODE_SIZE + 1) * 10 * batch  # vocabulary: the codes and EOS
    chunked = 1.5 * CHUNK_BYTES + 4 * (CODE_SIZE + 1) * D
    return float(min(plain, chunked))


# Bytes per quantized weight (core.training.setup.quantize_base): NF4 = 4 bits + one fp32 scale per 64
# weights, the scales themselves 8-bit with an fp32 scale per 256 (bitsandbytes' nested quantization);
# int8 = 1 byte + one fp32 scale per output row (~0 at these widths).
QUANT_BYTES = {"nf4": 0.5 + 1 / 64 + 4 / (64 * 256), "int8": 1.0}
TEXT_ROWS = 151659  # rows of each text table (lyrics, description) of the official Qwen2-size tokenizers


def count_parameters_from_layout(oc) -> int:
    """All saved tensors of an official checkpoint of this config (Qwen2-size text tables)."""
    D, L, C1 = oc.dim, oc.num_layers + oc.num_layers_sub, oc.code_size + 1
    return (L * oc.layer_parameters + 7 * (C1 + 1) * D + 6 * C1 * D + 2 * TEXT_ROWS * D
            + 200 * D + 3 * D * D + 8 * D)


def fsdp_unit_parameters(oc) -> tuple[int, int]:
    """(parameters of the FSDP root unit, of the largest other unit) under core.training.setup.shard_units:
    the root keeps the three used heads and the final norms, gathered on every GPU for the whole step;
    the largest unit is a text table (lyrics: TEXT_ROWS rows + structure rows) or a decoder layer."""
    D, C1 = oc.dim, oc.code_size + 1
    root = oc.code_depth * C1 * D + 4 * D
    largest = max(oc.layer_parameters, (TEXT_ROWS + 200) * D, oc.code_depth * (C1 + 1) * D + 2 * D, 3 * D * D)
    return root, largest


def estimate_memory_for(oc, n_params: int, *, mode: str, frames: int, batch: int, checkpointing: bool,
                        act_bytes: int, optimizer: str = "adamw", lora_r: int = 16,
                        lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"),
                        lora_stacks: str = "both", train_fusion: bool = False, train_heads: bool = False,
                        weight_bytes: int = 4, freeze_main: bool = False, base_quant: str = "none") -> dict[str, Any]:
    """The estimate for an OfficialConfig and settings (what estimate_memory reads from a StudioConfig).
    `base_quant` nf4 / int8 (LoRA): the decoder layers' linears at QUANT_BYTES each, the rest at weight_bytes."""
    from core.training.optimizers import STATE_BYTES

    D, F, L = oc.dim, oc.intermediate_size, oc.num_layers + oc.num_layers_sub
    C1 = oc.code_size + 1
    N = n_params
    unused = 3 * C1 * D + (oc.code_size + 2) * D + 2 * D
    T = min(frames, oc.max_frames)
    S_out = T + max(oc.delays or [0]) + 1
    S = oc.lyric_max_len + oc.prompt_max_len + oc.desc_max_len + S_out
    acts, logits = activation_memory(D, F, L, S, S_out, batch, checkpointing, act_bytes)
    if mode == "full":
        if freeze_main:  # the modular-extension stage: only the sub stack and its heads learn
            from core.model.freeze import sub_stack_parameter_count
            trainable = sub_stack_parameter_count(oc)
        else:
            trainable = N - unused
        states = (4 + STATE_BYTES[optimizer]) * trainable  # fp32 grads + optimizer state
    else:
        per_layer = {"q_proj": 2 * D, "k_proj": 2 * D, "v_proj": 2 * D, "o_proj": 2 * D,
                     "gate_proj": D + F, "up_proj": D + F, "down_proj": D + F}
        layers = {"both": L, "transformer": oc.num_layers, "transformer2": oc.num_layers_sub}[lora_stacks]
        trainable = lora_r * layers * sum(per_layer.get(n, 0) for n in lora_targets)
        if train_fusion:
            trainable += lora_r * (3 * D + 2 * D)
        if train_heads:
            trainable += lora_r * 3 * (D + C1)
        states = (8 + STATE_BYTES[optimizer]) * trainable  # fp32 adapter weights + grads + state
    quantized = L * (4 * D * D + 3 * D * F) if mode == "lora" and base_quant != "none" else 0
    weights = weight_bytes * (N - quantized) + QUANT_BYTES.get(base_quant, 0.0) * quantized
    total = weights + states + acts + logits
    gb = 1e9
    root, largest = fsdp_unit_parameters(oc)
    grad_bytes = 4 if mode == "full" else 0  # LoRA: the gathered units' gradients are adapters only
    return {"parameters": N, "trainable": int(trainable), "frames": T, "positions": S,
            # FSDP: what every GPU holds whole besides its shard (core.training.estimate.sharded_memory)
            "fsdp_root_gb": round((weight_bytes + grad_bytes) * root / gb, 2),
            "fsdp_unit_gb": round((weight_bytes + grad_bytes) * largest / gb, 2),
            "weights_gb": round(weights / gb, 2), "grads_optimizer_gb": round(states / gb, 2),
            "activations_gb": round(acts / gb, 2), "logits_gb": round(logits / gb, 2),
            "total_gb": round(total / gb, 2),
            "formula": "(4|2 bf16 base; nf4/int8 decoder linears: QUANT_BYTES) N + (grads + optimizer state) x trainable + activations(S, D, F, layers, ckpt) "
                       "+ min(plain logits 3*S_out*16385*10*B, chunked)"}


def generation_memory(oc, n_params: int, frames: int, *, weight_bytes: int = 2, kv_cache: str = "auto",
                      songs: int = 1) -> dict[str, Any]:
    """GPU memory of generating `songs` songs of `frames` frames (guided: 2 rows each): the weights at
    weight_bytes, the KV cache of both stacks over every position (condition prefix + delayed frames) in
    the weights' dtype or int8 (core.model.fast_step.Int8KV: 1 byte + a scale in the weights' dtype per head vector),
    plus one step's head logits. Prefill activations (the condition prefix only) are small beside these."""
    D, L = oc.dim, oc.num_layers + oc.num_layers_sub
    _, S = sequence_positions(oc, frames)
    kv_bytes = 1 + weight_bytes / (D // oc.num_heads) if kv_cache == "int8" else weight_bytes
    kv = 2 * L * 2 * songs * S * D * kv_bytes
    weights = weight_bytes * n_params
    logits = 2 * songs * oc.code_depth * (CODE_SIZE + 1) * 4
    gb = 1e9
    return {"weights_gb": round(weights / gb, 2), "kv_cache_gb": round(kv / gb, 2), "positions": S,
            "total_gb": round((weights + kv + logits) / gb, 2)}


def estimate_memory(cfg: StudioConfig) -> dict[str, Any]:
    """GPU memory of one training process for this config (no model is built; reads config.yaml and
    the parameter shapes of model.pt lazily); see the module doc for the terms."""
    base, oc = _base_config(cfg)
    try:
        sd = torch.load(base / "model.pt", map_location="meta", weights_only=True, mmap=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        N = sum(v.numel() for v in sd.values() if torch.is_tensor(v))
    except Exception:  # an old-format file cannot be memory-mapped: count from the layout
        N = count_parameters_from_layout(oc)
    tc, lc = cfg.training, cfg.lora
    act_bytes = 4 if tc.mixed_precision == "no" else 2  # "auto" is bf16 on the GPUs this estimates
    T, _, _ = _frames(cfg, oc)
    return estimate_memory_for(oc, N, mode=tc.type, frames=T, batch=tc.batch_size,
                               checkpointing=tc.gradient_checkpointing, act_bytes=act_bytes, optimizer=tc.optimizer,
                               lora_r=lc.r, lora_targets=tuple(lc.target_modules), lora_stacks=lc.stacks,
                               train_fusion=lc.train_fusion, train_heads=lc.train_heads,
                               weight_bytes=2 if tc.base_dtype == "bfloat16" and tc.type == "lora" else 4,
                               freeze_main=tc.freeze_transformer, base_quant=tc.base_quant)


def sharded_memory(est: dict[str, Any], distributed: str, processes: int) -> float:
    """GB of GPU memory per process when `estimate_memory`'s run is spread over `processes`:
    ddp/single/auto keep everything on every GPU; DeepSpeed ZeRO-2 splits grads + optimizer state;
    FSDP (full shard, also multi_node) and ZeRO-3 split weights too. Activations and logits stay per
    process (each has its own batch). What FSDP does not shard is counted whole: the root unit (heads,
    final norms: gathered for the whole step, with its gradient in a full finetune) and twice the largest
    other unit (the one in use and the next, prefetched; a text table at the official sizes). ZeRO-3
    gathers module by module: the same two largest units, without a root."""
    n = max(1, int(processes or 1))
    weights, states = est["weights_gb"], est["grads_optimizer_gb"]
    if distributed in ("fsdp", "multi_node", "deepspeed_zero3"):
        gathered = 2 * est.get("fsdp_unit_gb", 0.0)
        if distributed != "deepspeed_zero3":
            gathered += est.get("fsdp_root_gb", 0.0)
        weights, states = weights / n + gathered * (n > 1), states / n
    elif distributed == "deepspeed_zero2":
        states = states / n
    return round(weights + states + est["activations_gb"] + est["logits_gb"], 2)


def measure_matmul_peak(device: str, dtype: torch.dtype, n: int = 1024, reps: int = 4, trials: int = 5) -> float:
    """FLOP/s of a square matmul on this device and dtype (a quick, honest yardstick for estimates):
    the best of `trials` short timings, so other work on the machine at that moment skews it less."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(trials):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * reps / max(time.perf_counter() - t, 1e-9))
    return best


def machine_label(device: str) -> str:
    """The accelerator (or CPU) a step time was measured on; a measurement counts only on the same one."""
    if device == "cuda" and torch.cuda.is_available():
        return f"cuda | {torch.cuda.get_device_name()}"
    return f"{device} | {platform.machine()} {os.cpu_count()} cpus"


def machine_key(device: str, dtype: torch.dtype) -> str:
    """What the peak depends on: the device model (or CPU and thread count), the dtype, torch."""
    threads = "" if device == "cuda" else f" {torch.get_num_threads()} threads"
    return f"{machine_label(device)}{threads} | {str(dtype).replace('torch.', '')} | torch {torch.__version__}"


def _read_peaks(cache_file: Optional[Path]) -> dict[str, float]:
    import json

    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        return {k: float(v) for k, v in json.loads(cache_file.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}  # unreadable cache: measure again and rewrite it


def cached_peak(device: str, dtype: torch.dtype, cache_file: Optional[Path]) -> Optional[float]:
    """The peak this machine measured before (cache file only; nothing is measured)."""
    cached = cached_values((machine_key(device, dtype),), cache_file)
    return cached[0] if cached else None


def cached_values(keys: tuple[str, ...], cache_file: Optional[Path],
                  known: Optional[dict[str, float]] = None) -> Optional[tuple[float, ...]]:
    """This machine's figures under `keys` from the cache file, or None unless all are there (nothing measured)."""
    known = _read_peaks(cache_file) if known is None else known
    return tuple(known[k] for k in keys) if all(known.get(k, 0) > 0 for k in keys) else None


def measured_once(keys: tuple[str, ...], measure: Callable[[], tuple[float, ...]], cache_file: Optional[Path],
                  store: bool = True) -> tuple[float, ...]:
    """Figures of this machine under `keys` (machine keys, `machine_key`): read from `cache_file` where all are
    there, else measured and (with `store`) written beside the others. `store=False` (a training run is busy on
    this machine) still reads the file but keeps a new measurement to the caller."""
    known = _read_peaks(cache_file)
    cached = cached_values(keys, cache_file, known)
    if cached is not None:
        return cached
    values = tuple(measure())
    if cache_file is not None and store:
        try:
            atomic_write_json(cache_file, {**known, **dict(zip(keys, values))})
        except OSError:
            pass  # a read-only workspace only costs a measurement next time
    return values


@functools.cache
def matmul_peak(device: str, dtype: torch.dtype, cache_file: Optional[Path] = None, store: bool = True) -> float:
    """The measured peak, once per process and (with `cache_file`) once per machine."""
    return measured_once((machine_key(device, dtype),), lambda: (measure_matmul_peak(device, dtype),),
                         cache_file, store)[0]


def estimate_time(cfg: StudioConfig, utilization: float = 0.35,
                  run_dir: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """Wall time of a run on this machine's device. Measured (`source` "measured") when `run_dir`, or a
    run of the workspace with the same step-shaping settings, has logged steps here (`measured_for`);
    otherwise (`source` "formula") steps x matmul FLOPs per step / (measured peak x
    utilization). FLOPs per step = 3 x forward (both stacks, fusion MLP, causal attention, the three
    heads on the sequence part) at batch_size x min(max_frames, the model's) frames, so songs shorter
    than the crop make it an upper bound. Steps = training.max_steps, else epochs x batches of the
    prepared training split (None when nothing is prepared yet)."""
    from core.training.dataset import find_dataset_dir, load_dataset_dict

    _, oc = _base_config(cfg)
    tc = cfg.training
    T = _frames(cfg, oc)[0]
    step_flops = train_step_flops(oc, T, tc.batch_size) * tc.gradient_accumulation_steps
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
    out = {"device": device, "dtype": str(dtype).replace("torch.", ""), "steps": steps, "train_songs": songs,
           "step_tflop": round(step_flops / 1e12, 3)}
    from core.runs import store as runs

    listed = runs.list_runs(cfg.workspace_dir())  # read once: for the measurement and for "quiet"
    measured = measured_for(cfg, run_dir, listed)
    if measured is not None:  # this machine has trained these settings: its own step time, no benchmark
        step_s = measured["step_s"]
        return {**out, "source": "measured", "measured": measured, "peak_tflops": None, "utilization": None,
                "step_s": step_s, "total_s": None if steps is None else steps * step_s,
                "formula": f"steps x median step time of run {measured['run']} ({measured['steps']} steps logged)"}
    quiet = not any(r.get("status") in runs.ACTIVE for r in listed)  # one beside a training run is not kept
    peak = matmul_peak(device, dtype, cfg.workspace_dir() / PEAK_CACHE, quiet)
    step_s = step_flops / (peak * utilization)
    return {**out, "source": "formula", "measured": None, "peak_tflops": round(peak / 1e12, 3),
            "utilization": utilization, "step_s": step_s, "total_s": None if steps is None else steps * step_s,
            "formula": "steps x 3 x forward FLOPs / (measured matmul peak x utilization)"}


# ---- measured step time ---------------------------------------------------------------------------
# The settings a step's duration depends on; learning rate, steps, logging and the like do not count.
STEP_KEYS = ("paths.base_model_path", "training.type", "training.objective", "training.batch_size",
             "training.gradient_accumulation_steps", "training.max_frames", "training.mixed_precision",
             "training.gradient_checkpointing", "training.base_dtype", "training.optimizer",
             "training.freeze_transformer", "training.distributed", "training.num_processes", "lora.r",
             "lora.target_modules", "lora.stacks", "lora.train_fusion", "lora.train_heads")


def step_signature(cfg: StudioConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    return {k: d[k.split(".")[0]][k.split(".")[1]] for k in STEP_KEYS}


def measured_step_time(run_dir: str | os.PathLike) -> Optional[dict[str, Any]]:
    """The median seconds per optimizer step a run logged (metrics.jsonl), its step 1 left out (first-call
    warm-up) when later steps exist -> {"step_s", "steps", "run", "machine"}, or None before a logged step.
    Runs from before `step_s` was logged: the elapsed time between consecutive records of one session."""
    import statistics

    from core.runs import store as runs

    recs, _ = runs.read_metrics(run_dir)
    metrics = [r for r in recs if r.get("type") == "metrics" and isinstance(r.get("step"), int)]
    machine = next((r.get("machine") for r in reversed(recs) if r.get("event") == "phase"), None)
    per_step: list[float] = []
    prev = None
    for r in metrics:
        if isinstance(r.get("step_s"), (int, float)):
            per_step.append(float(r["step_s"]))
        elif prev is not None and r["step"] > prev["step"] and r.get("elapsed_s", 0) > prev.get("elapsed_s", 0):
            per_step.append((r["elapsed_s"] - prev["elapsed_s"]) / (r["step"] - prev["step"]))
        prev = r
    if metrics and metrics[0]["step"] == 1 and len(per_step) > 1 and isinstance(metrics[0].get("step_s"), (int, float)):
        per_step = per_step[1:]
    if not per_step:
        return None
    return {"step_s": statistics.median(per_step), "steps": len(per_step), "run": Path(run_dir).name,
            "machine": machine}


def measured_for(cfg: StudioConfig, run_dir: Optional[str | os.PathLike] = None,
                 listed: Optional[list[dict[str, Any]]] = None) -> Optional[dict[str, Any]]:
    """The measured step time for `cfg` on this machine: from `run_dir` when given (a run's own
    estimate), else from the newest run of the workspace (`listed`: runs.list_runs, if already read)
    with the same `step_signature` that logged steps on this machine; None when there is none."""
    from core.runs import store as runs

    here = machine_label("cuda" if torch.cuda.is_available() else "cpu")
    if run_dir is not None:
        candidates = [Path(run_dir)]
    else:
        want = step_signature(cfg)
        candidates = []
        for r in listed if listed is not None else runs.list_runs(cfg.workspace_dir()):
            try:
                if step_signature(runs.load_run_config(r["run_dir"])) == want:
                    candidates.append(Path(r["run_dir"]))
            except Exception:  # a run folder with a broken config only loses its measurement
                continue
    for rd in candidates:
        m = measured_step_time(rd)
        if m is not None and m["machine"] in (None, here):
            return m
    return None
