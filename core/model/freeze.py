"""Hold the main stack fixed: the "modular extension" stage of LeVo (reference lelm.md §4).

That stage trains only the track-specific side: `transformer2`, the fusion `mlp`, the vocal/bgm
input embeddings `layer2_emb` and the output heads `linears`. Everything else is frozen: the main
stack (`transformer.*`, `emb.*`) and every condition table (lyrics and description embeddings,
structure embeddings, the prompt's `EOT_emb` / `layer2_EOT_emb` and its code embeddings), since the
lyrics and description tables feed the main stack and the prompt tables belong to the condition
provider the stage leaves alone. Parameters that never take part in the forward pass
(`transformer2.lm_head`, both `embed_tokens`, `layer2_emb.0`, `out_norm`) stay frozen too.
With these frozen, the main stack's outputs (stream-0 logits and hidden states) are the same
bits after any number of training steps.
"""
from __future__ import annotations

from torch import nn

SUB_STACK_PREFIXES = ("transformer2.", "mlp.", "layer2_emb.", "linears.")


def sub_stack_parameter_names(lelm: nn.Module) -> list[str]:
    """Names of the parameters the modular-extension stage trains, in state-dict order."""
    unused = set(lelm.unused_parameter_names())
    return [n for n, _ in lelm.named_parameters() if n.startswith(SUB_STACK_PREFIXES) and n not in unused]


def freeze_main_stack(lelm: nn.Module) -> list[str]:
    """Freeze everything but the sub stack side (see the module doc); returns the trainable names."""
    keep = set(sub_stack_parameter_names(lelm))
    for name, p in lelm.named_parameters():
        p.requires_grad_(name in keep)
    return [n for n, _ in lelm.named_parameters() if n in keep]


def sub_stack_parameter_count(config) -> int:
    """How many parameters `freeze_main_stack` leaves trainable, from an OfficialConfig (no model built)."""
    D, C = config.dim, config.code_size
    fusion = 2 * D * D + D + D * D + D                # mlp.0 (2D -> D) and mlp.2 (D -> D), with biases
    return (config.num_layers_sub * config.layer_parameters + D + fusion + (config.code_depth - 1) * (C + 2) * D
            + (config.code_depth - 1) * (C + 1) * D)
