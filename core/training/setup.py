"""What a run trains: the model (full, LoRA, or the modular-extension stage) in the chosen base dtype,
its optimizer, and -- for a sharded launch on a machine without GPUs -- accelerate's FSDP settings
applied by hand. Used by core.train (every rank), bench/train.py and the tests."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from core.config import ConfigError, StudioConfig
from core.model.lora import apply_lora


def build_model(cfg: StudioConfig, dtype: Optional[torch.dtype] = None):
    """-> (module to train: LeLM or PeftModel, the LeLM inside, checkpoint dir).

    Weights in training.base_dtype unless `dtype` is given; bfloat16 only for LoRA (a frozen base)."""
    from core.model import LeLM
    from core.training.base_model import resolve_base_model
    from core.model.freeze import freeze_main_stack

    if dtype is None:
        if cfg.training.base_dtype == "bfloat16" and cfg.training.type == "full":
            raise ConfigError("training.base_dtype: bfloat16 keeps frozen base weights for LoRA; full fine-tuning "
                              "needs float32 weights (choose float32, or training.type: lora)")
        dtype = torch.bfloat16 if cfg.training.base_dtype == "bfloat16" else torch.float32
    if cfg.training.freeze_transformer and cfg.training.type != "full":
        raise ConfigError("training.freeze_transformer trains the track-specific side of a full fine-tune; with "
                          "LoRA its equivalent is lora.stacks: transformer2 (adapters only there, the main stack "
                          "unchanged). Set training.freeze_transformer: false, or training.type: full")

    check_base_quant(cfg)
    ckpt_dir = Path(resolve_base_model(cfg))
    lelm = LeLM.from_pretrained(ckpt_dir, runtime_root=cfg.paths.runtime_path, dtype=dtype)
    if not cfg.training.condition_dropout:
        lelm.condition_dropout.cfg_p = 0.0
        lelm.condition_dropout.attribute_p = {}
    if cfg.training.type == "full":
        if cfg.training.freeze_transformer:
            freeze_main_stack(lelm)  # the "modular extension" stage: the main stack stays bit-identical
        else:
            for name in lelm.unused_parameter_names():
                lelm.get_parameter(name).requires_grad_(False)
        model = lelm
    else:
        for p in lelm.parameters():
            p.requires_grad_(False)
        if cfg.training.base_quant != "none":
            quantize_base(lelm, cfg.training.base_quant, compute_dtype=dtype)
        model = apply_lora(cfg, lelm)
    if cfg.training.gradient_checkpointing:
        lelm.gradient_checkpointing_enable()
    if cfg.training.compile:
        from core.model.compiled import compile_stacks
        compile_stacks(lelm)
    return model, lelm, ckpt_dir


def check_base_quant(cfg: StudioConfig) -> None:
    """training.base_quant is for LoRA on one GPU or DDP: refuse the rest with the reason."""
    tc = cfg.training
    if tc.base_quant == "none":
        return
    if tc.type == "full":
        raise ConfigError(f"training.base_quant: {tc.base_quant} keeps the base frozen in low precision for LoRA; a "
                          "full finetune trains every weight (set base_quant: none, or training.type: lora)")
    if tc.distributed in ("fsdp", "multi_node", "deepspeed_zero3"):
        raise ConfigError(f"training.base_quant: {tc.base_quant} is not sharded (bitsandbytes' packed weights stay whole "
                          f"on every GPU) and untested under training.distributed: {tc.distributed}; use ddp, or "
                          "base_quant: none with sharding")


def quantize_base(lelm: nn.Module, kind: str, compute_dtype: torch.dtype) -> int:
    """QLoRA's frozen base: every nn.Linear of both stacks' decoder layers (~85 % of the weights) becomes
    bitsandbytes' Linear4bit (NF4, blocks of 64 with their scale) or Linear8bitLt (int8 rows + outliers
    in 16 bit), computing in `compute_dtype`; tables, fusion MLP and heads keep the base dtype. Quantized
    on the CPU here, moved with the model. -> the number of layers replaced. Only LoRA adapters train on
    it, and merge / export always read the full-precision checkpoint, never these weights."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise ConfigError(f"training.base_quant: {kind} needs bitsandbytes, which is not installed: pip install "
                          "'bitsandbytes>=0.50' (its 4-bit and 8-bit layers run on CUDA and on the CPU), or set "
                          "base_quant: none") from None
    count = 0
    for stack in (lelm.transformer, lelm.transformer2):
        for layer in stack.model.layers:
            for parent in list(layer.modules()):
                for name, child in list(parent.named_children()):
                    if type(child) is nn.Linear:
                        setattr(parent, name, _quantized_linear(bnb, child, kind, compute_dtype))
                        count += 1
    return count


def _quantized_linear(bnb, lin: nn.Linear, kind: str, compute_dtype: torch.dtype) -> nn.Module:
    bias = lin.bias is not None
    if kind == "nf4":
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=bias, compute_dtype=compute_dtype,
                              quant_type="nf4", device="meta")
        q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, quant_type="nf4")
    else:
        q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias, has_fp16_weights=False, device="meta")
        q.weight = bnb.nn.Int8Params(lin.weight.data, requires_grad=False, has_fp16_weights=False)
    if bias:
        q.bias = nn.Parameter(lin.bias.data, requires_grad=False)
    return q.to(lin.weight.device)  # bitsandbytes quantizes when the weight is moved


def make_optimizer(cfg: StudioConfig, model: nn.Module, device: Optional[torch.device] = None) -> torch.optim.Optimizer:
    """training.optimizer (core.training.optimizers); weight decay on matrices only (not on norms, biases, 1-D tensors)."""
    from core.training.optimizers import OptimizerError, build_optimizer

    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.training.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen (check training.type / lora.* settings)")
    try:
        return build_optimizer(cfg.training.optimizer, groups, lr=cfg.training.learning_rate,
                               betas=(cfg.training.adam_beta1, cfg.training.adam_beta2),
                               device=device if device is not None else groups[0]["params"][0].device)
    except OptimizerError as err:
        raise ConfigError(str(err)) from None


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def shard_on_cpu(acc) -> None:
    """accelerate (1.15) turns an FSDP launch config into FSDP only on accelerator backends; on the
    CPU (gloo) it silently falls back to DDP. torch's fully_shard runs on gloo, so the launch's FSDP
    settings are applied here: the same config then trains sharded on the CPU (tests, GPU-less debug)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables accelerate launch set
    if plugin.fsdp_version != 2:
        raise ConfigError("sharded training on the CPU needs FSDP2 (fsdp_version: 2 in the accelerate config)")
    acc.state.fsdp_plugin = plugin
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def shard_unit_names(lelm: nn.Module) -> tuple[list[str], list[str]]:
    """(modules that run their own forward, modules never run) that get their own FSDP2 unit besides the
    decoder layers: the text and prompt tables, the code embeddings and the fusion MLP; the unused
    layout tables so they are never gathered. The heads stay in the root unit: the chunked loss reads
    their weights directly (core.model.loss), not through a forward FSDP could hook."""
    k = len(lelm.layer2_emb)
    run = ([f"condition_provider.conditioners.{n}" for n in lelm.condition_provider.conditioners]
           + ["emb.0", *(f"layer2_emb.{i}" for i in range(1, k)), "mlp"])
    never = ["layer2_emb.0", "transformer.model.embed_tokens", "transformer2.model.embed_tokens",
             "transformer2.lm_head"]
    return run, never


def shard_units(acc, lelm: nn.Module) -> dict[str, int]:
    """FSDP2 (accelerate's plugin set): shard `shard_unit_names` as units of their own before accelerate
    wraps the decoder layers and the root, with the plugin's settings (accelerate leaves modules that are
    already sharded alone). Otherwise everything that is not a decoder layer (~21 % of v2-large) would sit
    in the root unit, gathered on every GPU for the whole step. -> parameter counts {"units", "root"}:
    what the new units hold, and what stays in the root (heads, norms)."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    plugin = getattr(acc.state, "fsdp_plugin", None)
    if plugin is None or plugin.fsdp_version != 2:
        return {}
    run, never = shard_unit_names(lelm)
    kw = {"reshard_after_forward": plugin.reshard_after_forward, "offload_policy": plugin.cpu_offload,
          "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy()}
    units = 0
    for name in run + never:
        module = lelm.get_submodule(name)
        if not isinstance(module, FSDPModule):
            units += sum(p.numel() for p in module.parameters())
            fully_shard(module, **kw)
    layers = sum(p.numel() for m in lelm.modules() if type(m).__name__ == "LlamaDecoderLayer" for p in m.parameters())
    return {"units": units, "root": sum(p.numel() for p in lelm.parameters()) - units - layers}


def clip_grad_norm(acc, optimizer, max_norm: float) -> float:
    """Clip the gradients of the optimizer's parameters to `max_norm` (inf: only measure) -> their total
    norm before clipping.

    The parameters come from the optimizer: under FSDP2 a forward without gradients (evaluation, a full
    finetune's reference log-probs) leaves the root unit gathered, and the module then lists its
    unsharded stand-ins, not the parameters that train. Sharded (DTensor) gradients are measured here:
    each element lives on exactly one rank, so the local squares summed over the ranks give the norm
    (accelerate's path through torch's norm over several fully_shard meshes left the heads out)."""
    from torch.distributed.tensor import DTensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    grads = [p.grad for p in params if p.grad is not None]
    if not any(isinstance(g, DTensor) for g in grads):
        return float(acc.clip_grad_norm_(params, max_norm))
    acc.unscale_gradients()
    local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    sq = torch.zeros(1, dtype=torch.float64, device=acc.device)
    for g, part in zip(grads, local):
        if isinstance(g, DTensor) or acc.is_main_process:  # a plain (replicated) gradient counts once
            sq += part.double().pow(2).sum()
    total = float(acc.reduce(sq, reduction="sum").sqrt())
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_(local, coef)  # in place on the local shards
    return total
