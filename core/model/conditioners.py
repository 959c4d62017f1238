"""The three conditioners and condition dropout.

Naming trap kept from the official checkpoints: the conditioner called `description` holds the
**lyrics**; the one called `type_info` holds the **style description**. Each returns the same
tensor for both transformer stacks, except the prompt, which gives one tensor per stack.
Condition masks exist upstream but are never used (attention is purely causal over the prefix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from core.model.pattern import EMPTY, EOS
from core.model.text import NUM_STRUCTURE_EMBEDDINGS, TextTokenizer


class LyricsConditioner(nn.Module):
    """Official name `description` (QwTokenizerConditioner): lyric ids + structure ids -> [B, max_len, D]."""

    def __init__(self, tokenizer: TextTokenizer, vocab_rows: int, dim: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.output_proj = nn.Embedding(vocab_rows, dim, padding_idx=tokenizer.pad_id)
        self.structure_emb = nn.Embedding(NUM_STRUCTURE_EMBEDDINGS, dim, padding_idx=0)

    def forward(self, lyrics: Sequence[Optional[str]]) -> torch.Tensor:
        batch = self.tokenizer(lyrics)
        dev = self.output_proj.weight.device
        return self.output_proj(batch.ids.to(dev)) + self.structure_emb(batch.structure.to(dev))


class DescriptionConditioner(nn.Module):
    """Official name `type_info` (QwTextConditioner): style-description ids -> [B, max_len, D]."""

    def __init__(self, tokenizer: TextTokenizer, vocab_rows: int, dim: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.output_proj = nn.Embedding(vocab_rows, dim, padding_idx=tokenizer.pad_id)

    def forward(self, descriptions: Sequence[Optional[str]]) -> torch.Tensor:
        batch = self.tokenizer(descriptions)
        return self.output_proj(batch.ids.to(self.output_proj.weight.device))


class PromptConditioner(nn.Module):
    """Official name `prompt_audio` (QuantizedEmbeddingConditioner): prompt tokens [B, 3, P] -> two [B, max_len, D]."""

    def __init__(self, dim: int, code_size: int, depth: int, max_len: int):
        super().__init__()
        self.max_len = int(max_len)
        self.EOT_emb = nn.Parameter(torch.randn(1, dim))
        self.layer2_EOT_emb = nn.Parameter(torch.randn(1, dim))
        self.emb = nn.ModuleList(nn.Embedding(code_size + 2, dim, padding_idx=code_size + 1) for _ in range(depth))

    def process_tokens(self, prompt: torch.Tensor) -> torch.Tensor:
        """EOS column first; a stream whose first token is EMPTY is absent (all EMPTY); pad/cut to max_len - 1."""
        B, K, _ = prompt.shape
        eos = prompt.new_full((B, K, 1), EOS)
        tokens = torch.cat([eos, prompt], dim=-1)
        absent = prompt[:, :, :1] == EMPTY
        tokens = torch.where(absent, torch.full_like(tokens, EMPTY), tokens)
        n = self.max_len - 1
        if tokens.shape[-1] >= n:
            return tokens[..., :n]
        return torch.cat([tokens, tokens.new_full((B, K, n - tokens.shape[-1]), EMPTY)], dim=-1)

    def forward(self, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.process_tokens(prompt).to(self.EOT_emb.device)
        B = tokens.shape[0]
        eot1 = self.EOT_emb.unsqueeze(0).expand(B, -1, -1)
        eot2 = self.layer2_EOT_emb.unsqueeze(0).expand(B, -1, -1)
        s1 = torch.cat([eot1, self.emb[0](tokens[:, 0])], dim=1)
        s2 = torch.cat([eot2, sum(self.emb[k](tokens[:, k]) for k in range(1, tokens.shape[1]))], dim=1)
        return s1, s2


class ConditionerProvider(nn.Module):
    def __init__(self, prompt_audio: PromptConditioner, lyrics: LyricsConditioner, description: DescriptionConditioner):
        super().__init__()
        # Insertion order = the official state-dict order.
        self.conditioners = nn.ModuleDict({"prompt_audio": prompt_audio, "description": lyrics, "type_info": description})


@dataclass
class Conditions:
    """What one batch is conditioned on. `prompt` [B, 3, P] long (EMPTY rows = absent)."""

    lyrics: list[Optional[str]]
    descriptions: list[Optional[str]]
    prompt: torch.Tensor


class ConditionDropout:
    """Condition dropout in train mode, reproducible from its own generator.

    Per sample, with p = `classifier_free_guidance.training_dropout`, every condition of that sample is
    dropped; then per batch, one coin per attribute (`attribute_dropout`): lyrics (`description`),
    style description (`type_info`), prompt (`prompt_audio`).
    """

    def __init__(self, cfg_p: float, attribute_p: dict[str, float], seed: int = 0):
        self.cfg_p = float(cfg_p)
        self.attribute_p = dict(attribute_p)
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _coin(self, p: float) -> bool:
        return bool(torch.rand((), generator=self.generator).item() < p)

    def __call__(self, cond: Conditions) -> Conditions:
        lyrics, descs = list(cond.lyrics), list(cond.descriptions)
        prompt = cond.prompt.clone()
        for b in range(len(lyrics)):
            if self._coin(self.cfg_p):
                lyrics[b], descs[b] = None, None
                prompt[b] = EMPTY
        if self._coin(self.attribute_p.get("description", 0.0)):
            lyrics = [None] * len(lyrics)
        if self._coin(self.attribute_p.get("type_info", 0.0)):
            descs = [None] * len(descs)
        if self._coin(self.attribute_p.get("prompt_audio", 0.0)):
            prompt[:] = EMPTY
        return Conditions(lyrics, descs, prompt)
