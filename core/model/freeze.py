"""Hold the main stack fixed: the "modular extension" stage of LeVo (reference lelm.md §4).

That stage trains exactly the track-specific side: `transformer2`, the fusion `mlp`, the vocal/bgm
input embeddings `layer2_emb`, the output heads `linears`, and the prompt's stream-2 tables
(`prompt_audio.layer2_EOT_emb` and the vocal/bgm code tables `prompt_audio.emb.1/.2`), which feed only
the track-specific side (lelm.md §1.6c: stream2 = layer2_EOT_emb ++ emb[1](vocal) + emb[2](bgm)).
Everything that feeds the main stack is frozen: `transformer.*`, `emb.*`, the lyrics / description /
structure tables (one embedding serves both streams) and the prompt's stream-1 tables (`EOT_emb`,
`emb.0`). Parameters that never take part in the forward pass (`transformer2.lm_head`, both
`embed_tokens`, `layer2_emb.0`, `out_norm`) stay frozen too. With these frozen, the main stack's
outputs (stream-0 logits and hidden states) are the same bits after any number of training steps.
LoRA has no such stage: its equivalent is `lora.stacks: transformer2` (core.training.setup refuses
freeze_transformer with LoRA and says so).
"""
from __future__ import annotations

from torch import nn

SUB_STACK_PREFIXES = ("transformer2.", "mlp.", "layer2_emb.", "linears.")
_PROMPT = "condition_provider.conditioners.prompt_audio."


def _track_specific(name: str) -> bool:
    if name.startswith(SUB_STACK_PREFIXES) or name == _PROMPT + "layer2_EOT_emb":
        return True
    # the prompt's code tables: emb.0 (mixed) feeds the main stack, emb.1.. (vocal, bgm) stream 2 only
    return name.startswith(_PROMPT + "emb.") and not name.startswith(_PROMPT + "emb.0.")


def sub_stack_parameter_names(lelm: nn.Module) -> list[str]:
    """Names of the parameters the modular-extension stage trains, in state-dict order."""
    unused = set(lelm.unused_parameter_names())
    return [n for n, _ in lelm.named_parameters() if _track_specific(n) and n not in unused]


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
    side = (config.code_depth - 1) * (C + 2) * D             # layer2_emb.1.. (and, as many, prompt emb.1..)
    return (config.num_layers_sub * config.layer_parameters + D + fusion + 2 * side + D   # + layer2_EOT_emb
            + (config.code_depth - 1) * (C + 1) * D)
