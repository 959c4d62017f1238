"""The precision a run computes in, chosen by measurement on this machine.

On a GPU, "auto" is bf16 (fp16 where the card has no bf16). On a CPU it depends on the chip: with bf16 units
(Intel AMX / AVX512-BF16, recent AMD) a bf16 matmul runs several times faster than fp32; without them it is
slower than fp32. So "auto" measures both matmul peaks once per machine (core.training.estimate.matmul_peak,
cached in `<workspace>/cache/matmul_peak.json`) and picks bf16 only where it is at least BF16_MARGIN faster.
"no" / "bf16" / "fp16" in the config are always obeyed, and SONGGEN_CPU_PRECISION=fp32|bf16 forces the CPU
verdict for "auto" (the test suite pins fp32 so its figures do not depend on the CPU it runs on).

In bf16 on a CPU, the attention kernel is chosen the same way (`cpu_attention`): core.model.attention's query
blocks where they train faster than SDPA here (AVX512-BF16 without AMX), SDPA where not (AMX runs SDPA's flash
kernel on its tiles).

Processes of one launch must agree: with several processes, "auto" only reads the cached verdict (it never
measures, where two ranks could measure different things) and stays fp32 when nothing is cached yet.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

BF16_MARGIN = 1.25  # bf16 must beat fp32 by this much: a near tie is not worth bf16's rounding
BLOCKS_MARGIN = 1.05  # the query blocks must beat SDPA by this much (a tie keeps the library's kernel)
ENV = "SONGGEN_CPU_PRECISION"


@dataclass(frozen=True)
class Choice:
    mixed_precision: str            # what accelerate is given: "no" | "bf16" | "fp16"
    reason: str                     # one line for the run log and the Train tab
    fp32_flops: Optional[float] = None
    bf16_flops: Optional[float] = None

    @property
    def dtype(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mixed_precision, torch.float32)


def cpu_choice(cache_file: Optional[Path] = None, *, measure: bool = True) -> Choice:
    """bf16 or fp32 for this CPU (the verdict "auto" uses). `measure=False` only reads the cache."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("fp32", "bf16"):
        return Choice("bf16" if forced == "bf16" else "no", f"{forced} ({ENV}={forced})")
    from core.training.estimate import matmul_peak, cached_peak

    if measure:
        f32 = matmul_peak("cpu", torch.float32, cache_file)
        b16 = matmul_peak("cpu", torch.bfloat16, cache_file)
    else:
        f32, b16 = cached_peak("cpu", torch.float32, cache_file), cached_peak("cpu", torch.bfloat16, cache_file)
        if not f32 or not b16:
            return Choice("no", "fp32 (several processes and no cached bf16 measurement on this machine yet)")
    ratio = b16 / max(f32, 1.0)
    if ratio >= BF16_MARGIN:
        return Choice("bf16", f"bf16 (auto: bf16 matmul {ratio:.1f}x fp32 on this CPU)", f32, b16)
    return Choice("no", f"fp32 (auto: bf16 matmul only {ratio:.2f}x fp32 on this CPU)", f32, b16)


def choose(setting: str, *, device: str = "cpu", cache_file: Optional[Path] = None,
           processes: int = 1) -> Choice:
    """`training.mixed_precision` resolved for this machine, with the reason."""
    if setting != "auto":
        return Choice(setting, f"{setting} (set in the config)")
    if device.startswith("cuda") and torch.cuda.is_available():
        mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Choice(mp, f"{mp} (auto on this GPU)")
    return cpu_choice(cache_file, measure=processes <= 1)


def cpu_attention(cache_file: Optional[Path] = None, *, measure: bool = True) -> tuple[bool, str]:
    """-> (whether CPU bf16 training attention runs in core.model.attention's query blocks, the reason), from
    both kernels timed once per machine (cached beside the matmul peaks). `measure=False` (several processes,
    which must agree) only reads the cache, and keeps SDPA while nothing is cached."""
    from core.model import attention
    from core.training.estimate import cached_values, machine_key, measured_once

    base = machine_key("cpu", torch.bfloat16)
    keys = (f"{base} | causal attention blocks s", f"{base} | causal attention sdpa s")
    timed = measured_once(keys, attention.measure, cache_file) if measure else cached_values(keys, cache_file)
    if timed is None:
        return False, "attention SDPA (several processes and no cached attention measurement yet)"
    blocks, sdpa = timed
    speedup = sdpa / max(blocks, 1e-9)
    if speedup >= BLOCKS_MARGIN:
        return True, f"attention in query blocks ({speedup:.2f}x SDPA on this CPU)"
    return False, f"attention SDPA (query blocks {speedup:.2f}x SDPA on this CPU)"
