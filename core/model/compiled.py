"""`training.compile`: the two Llama stacks' forward through `torch.compile` (inductor) in training steps.

The stacks are where a training step spends its FLOPs; the rest of the step (tokenizing the
conditions, condition dropout, the chunked loss over a data-dependent number of targets) stays
eager, and so do forwards without gradients (validation, samples: other graphs, KV caches). Each stack's `forward` is replaced on the instance only, so parameter names, the state dict,
peft's LoRA layers (compiled with the stack) and checkpoints are unchanged.

If compiling fails (no C++ compiler for inductor on a CPU, an unsupported op), the first step logs
one line with the reason and the stacks run eagerly from then on; the step itself is redone eagerly,
so a real error in the model still surfaces with its own message.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

import torch
from torch import nn

log = logging.getLogger(__name__)


def _reason(err: BaseException) -> str:
    """The root cause in one line (dynamo wraps a backend's error in BackendCompilerFailed)."""
    for _ in range(10):
        inner = getattr(err, "inner_exception", None) or err.__cause__
        if inner is None:
            break
        err = inner
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


def compile_stacks(lelm: nn.Module, say: Optional[Callable[[str], None]] = None, backend: str = "inductor") -> None:
    """Compile `lelm.transformer.model` and `lelm.transformer2.model` in place, with an eager fallback."""
    say = say or log.info
    state = {"ok": True}
    for stack in (lelm.transformer.model, lelm.transformer2.model):
        eager = stack.forward
        compiled = torch.compile(eager, backend=backend)

        def forward(*args, _compiled=compiled, _eager=eager, **kwargs):
            if state["ok"] and torch.is_grad_enabled():
                try:
                    return _compiled(*args, **kwargs)
                except torch.OutOfMemoryError:
                    raise
                except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                    state["ok"] = False
                    say(f"training.compile: torch.compile failed ({_reason(err)}); training continues without it")
            return _eager(*args, **kwargs)

        stack.forward = forward  # an instance attribute: uncompile_stacks deletes it
    say(f"training.compile: the Llama stacks run through torch.compile ({backend}); the first steps "
        "include compile time")


def uncompile_stacks(lelm: nn.Module) -> None:
    """Undo compile_stacks (the class's own forward again)."""
    for stack in (lelm.transformer.model, lelm.transformer2.model):
        stack.__dict__.pop("forward", None)
