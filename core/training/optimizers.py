"""Optimizer choice (`training.optimizer`): what fits which card.

- `adamw`: torch AdamW, the fused kernel where the device has one (CUDA, CPU; else foreach).
  12 bytes of state per trainable parameter (fp32 master grads + 2 moments).
- `adamw_8bit`: bitsandbytes' AdamW8bit, moments in 8 bits (~2 bytes per parameter + grads);
  CUDA only (bitsandbytes' 8-bit optimizers; the package is a dependency for training.base_quant).
- `adafactor`: transformers' Adafactor with our learning rate and schedule (relative_step off),
  factored second moment: ~4 bytes per parameter (grads) + rows + columns.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from core.errors import StudioError

OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor")
# Bytes of optimizer state (moments) per trainable parameter, for the memory estimate (grads apart).
STATE_BYTES = {"adamw": 8.0, "adamw_8bit": 2.0, "adafactor": 0.1}


class OptimizerError(StudioError, ValueError):
    """A choice this machine cannot run; the message says what to pick instead."""
    code = "optimizer"


def build_optimizer(name: str, groups: Sequence[dict[str, Any]], *, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8, device: str | torch.device = "cpu") -> torch.optim.Optimizer:
    """`groups`: torch param groups (each may carry its own weight_decay)."""
    device = torch.device(device)
    groups = [dict(g) for g in groups]
    if name == "adamw":
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
        except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw_8bit":
        if device.type != "cuda":
            raise OptimizerError(f"training.optimizer: adamw_8bit (bitsandbytes) runs on CUDA GPUs only, this run is on "
                                 f"{device.type}; choose adamw or adafactor")
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise OptimizerError("training.optimizer: adamw_8bit needs bitsandbytes, which is not installed: "
                                 "pip install bitsandbytes (CUDA), or choose adamw / adafactor") from exc
        return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas, eps=eps)
    if name == "adafactor":
        from transformers.optimization import Adafactor
        # Our scheduler owns the learning rate: no relative step, no parameter scaling.
        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise OptimizerError(f"training.optimizer: {name!r} is not one of {', '.join(OPTIMIZERS)}")
