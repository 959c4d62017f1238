"""Sampling as SongGeneration does it.

Batch of two (conditional, unconditional) with a KV cache per stack; per step the guided scores
`uncond + cfg_coef * (cond - uncond)` at the last position; a repetition penalty over the tokens
of the last `record_window` steps (score / 1.1, applied to the guided scores, negatives included:
upstream's quirk kept); the prompt's mixed tokens banned on the mixed stream; the mixed stream
sampled with temperature / top-k (or top-p), vocal and bgm taken greedily (top-p, when set,
applies to all streams); delay-pattern slots forced EMPTY; a stream that emitted EOS stays EMPTY.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch
from transformers import DynamicCache

from .conditioners import Conditions
from .pattern import EMPTY, EOS

if TYPE_CHECKING:
    from .lelm import LeLM

UNKNOWN = -1
REPETITION_PENALTY = 1.1
MUSICALITY_TOP = "[Musicality-very-high]"
NEGATIVE_DESCRIPTION = "[Musicality-very-low], ."


def null_description(description: Optional[str], version: str) -> Optional[str]:
    """The unconditional description: None, or for v2 the negative musicality prompt."""
    if version == "v2" and description and MUSICALITY_TOP in description:
        return NEGATIVE_DESCRIPTION
    return None


def normalize_prompt(prompt: Optional[torch.Tensor], depth: int) -> Optional[torch.Tensor]:
    if prompt is None:
        return None
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0)
    if prompt.dim() != 3 or prompt.shape[0] != 1 or prompt.shape[1] != depth:
        raise ValueError(f"prompt must be [{depth}, P] or [1, {depth}, P], got {tuple(prompt.shape)}")
    return prompt.long()


def sample_top_k(probs: torch.Tensor, k: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    values, indices = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)
    choice = torch.multinomial(values / values.sum(-1, keepdim=True), 1, generator=generator)
    return indices.gather(-1, choice).squeeze(-1)


def sample_top_p(probs: torch.Tensor, p: float, generator: Optional[torch.Generator]) -> torch.Tensor:
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    cum = torch.cumsum(sorted_probs, dim=-1)
    # Keep the smallest prefix whose mass reaches p (the first token always stays).
    sorted_probs = torch.where(cum - sorted_probs > p, torch.zeros_like(sorted_probs), sorted_probs)
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(-1, keepdim=True), 1, generator=generator)
    return order.gather(-1, choice).squeeze(-1)


def choose_tokens(scores: torch.Tensor, *, greedy: bool, temperature: float, top_k: int, top_p: float,
                  generator: Optional[torch.Generator]) -> torch.Tensor:
    """scores [K, V] -> tokens [K]."""
    if greedy:
        return scores.argmax(-1)
    probs = torch.softmax(scores / temperature, dim=-1)
    if top_p > 0.0:
        return sample_top_p(probs, top_p, generator)
    out = scores.argmax(-1)  # vocal / bgm: top-1
    first = probs[:1]
    if top_k > 0:
        out[0] = sample_top_k(first, top_k, generator)[0]
    else:
        out[0] = torch.multinomial(first, 1, generator=generator)[0, 0]
    return out


def apply_repetition_penalty(scores: torch.Tensor, history: list[torch.Tensor], window: int) -> torch.Tensor:
    if window <= 0 or not history:
        return scores
    recent = torch.stack(history[-window:], dim=1)  # [K, w]
    for q in range(scores.shape[0]):
        ids = recent[q][recent[q] < EOS].unique()
        if ids.numel():
            scores[q, ids] = scores[q, ids] / REPETITION_PENALTY
    return scores


@torch.no_grad()
def generate(model: "LeLM", lyrics: Optional[str], description: Optional[str], prompt: Optional[torch.Tensor] = None,
             *, max_frames: int, cfg_coef: float = 1.5, temperature: float = 1.0, top_k: int = 50,
             top_p: float = 0.0, greedy: bool = False, record_window: int = 50, seed: Optional[int] = None,
             on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> torch.LongTensor:
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    K, dev = model.depth, model.device
    was_training = model.training
    model.eval()
    prompt = normalize_prompt(prompt, K)
    cond_prompt = prompt if prompt is not None else model.empty_prompt(1)
    cond = Conditions([lyrics, None], [description, null_description(description, model.version)],
                      torch.cat([cond_prompt, model.empty_prompt(1)], dim=0))
    banned = None
    if prompt is not None:
        mixed = prompt[0, 0]
        banned = mixed[mixed < EOS].unique().to(dev)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=dev)
        generator.manual_seed(int(seed))

    pattern = model.pattern
    T = int(max_frames)
    S = pattern.num_steps(T)
    seq = torch.full((1, K, S), UNKNOWN, dtype=torch.long, device=dev)
    seq[:, :, 0] = EMPTY
    caches = (DynamicCache(), DynamicCache())
    prefix = model.condition_prefix(cond)
    ended = torch.zeros(K, dtype=torch.bool, device=dev)
    history: list[torch.Tensor] = []
    prev = 0
    try:
        for offset in range(1, S):
            step_input = seq[:, :, prev:offset].expand(2, -1, -1)
            logits = model.forward_steps(step_input, prefix if prev == 0 else None, caches)[:, :, -1]  # [2, K, V]
            scores = logits[1] + (logits[0] - logits[1]) * cfg_coef
            scores = apply_repetition_penalty(scores, history, record_window)
            if banned is not None and banned.numel():
                scores[0, banned] = float("-inf")
            if on_step is not None:
                on_step(offset, scores)
            tokens = choose_tokens(scores, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                                   generator=generator)
            for q in range(K):
                if not pattern.valid_slot(offset, q, T):
                    tokens[q] = EMPTY
            tokens[ended] = EMPTY
            ended |= tokens == EOS
            seq[0, :, offset] = tokens
            history.append(tokens)
            prev = offset
            if progress is not None:
                progress(offset, S - 1)
            if bool(ended.all()):
                break
    finally:
        model.train(was_training)

    codes = pattern.revert(seq, T)
    codes[codes == UNKNOWN] = EMPTY
    eos_frames = [int((codes[0, q] == EOS).nonzero()[0]) for q in range(K) if bool((codes[0, q] == EOS).any())]
    if eos_frames:
        codes = codes[..., :min(eos_frames)]
    return codes
