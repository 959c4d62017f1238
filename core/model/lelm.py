"""LeLM: SongGeneration's language model, state-dict compatible with the official checkpoints.

Two Llama decoders (built from `transformers`, parameter names as `LlamaForCausalLM`):
`transformer` reads the mixed stream and predicts it; `transformer2` reads
MLP([vocal+bgm embeddings, transformer's normed hidden state]) and predicts vocal and bgm through
`linears`. Conditions (lyrics | prompt | description) are prepended along time.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from core.model import attention
from core.model.conditioners import (ConditionDropout, ConditionerProvider, Conditions, DescriptionConditioner,
                           LyricsConditioner, PromptConditioner)
from core.model.loss import CHUNK_BYTES, linear_cross_entropy
from core.model.official_config import CheckpointError, OfficialConfig
from core.model.pattern import EMPTY, DelayPattern
from core.model.text import TextTokenizer, description_tokenizer, lyric_tokenizer
from core.sampling import SAMPLING

log = logging.getLogger(__name__)


def llama_config(cfg: OfficialConfig, sub: bool) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=cfg.code_size + 1,
        hidden_size=cfg.dim,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers_sub if sub else cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,  # plain multi-head attention, no GQA
        max_position_embeddings=cfg.max_position_embeddings_sub if sub else cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta_sub if sub else cfg.rope_theta},
        rms_norm_eps=1e-5,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        use_cache=False,
        attn_implementation=attention.NAME,  # SDPA, or query blocks for CPU bf16 training (core.model.attention)
    )


class LeLM(nn.Module):
    def __init__(self, config: OfficialConfig, version: str, lyric_tok: TextTokenizer, desc_tok: TextTokenizer):
        super().__init__()
        self.config = config
        self.version = version
        self.pattern = DelayPattern(config.delays)
        D, C, K = config.dim, config.code_size, config.code_depth
        self.code_size, self.depth = C, K
        self.condition_dropout = ConditionDropout(config.cfg_dropout, config.attribute_dropout)

        self.condition_provider = ConditionerProvider(
            PromptConditioner(D, C, K, config.prompt_max_len),
            LyricsConditioner(lyric_tok, len(lyric_tok), D),
            DescriptionConditioner(desc_tok, len(desc_tok), D),
        )
        self.emb = nn.ModuleList([nn.Embedding(C + 2, D)])
        self.transformer = LlamaForCausalLM(llama_config(config, sub=False))
        self.mlp = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, D))
        self.layer2_emb = nn.ModuleList(nn.Embedding(C + 2, D) for _ in range(K))  # index 0 unused, kept for the layout
        self.transformer2 = LlamaForCausalLM(llama_config(config, sub=True))
        if config.norm_first:
            self.out_norm = nn.LayerNorm(D)  # unused in forward; exists in official checkpoints
        self.linears = nn.ModuleList(nn.Linear(D, C + 1, bias=False) for _ in range(K - 1))

        # Bookkeeping for save_pretrained / describe.
        self.checkpoint_dtype: torch.dtype = torch.float32
        self.source_dir: Optional[Path] = None
        self.notes: list[str] = []
        self.is_demo = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: OfficialConfig, version: str) -> "LeLM":
        root = config.runtime_root
        lyr = lyric_tokenizer(root / config.lyric_token_path, config.lyric_max_len, config.structure_tags, version)
        desc = description_tokenizer(root / config.desc_token_path, config.desc_max_len, version)
        return cls(config, version, lyr, desc)

    @classmethod
    def from_pretrained(cls, ckpt_dir: str | Path, runtime_root: Optional[str | Path] = None,
                        version: Optional[str] = None, dtype: Optional[torch.dtype] = torch.float32,
                        device: Optional[str | torch.device] = None) -> "LeLM":
        from core.model.checkpoint import load_pretrained
        return load_pretrained(cls, ckpt_dir, runtime_root=runtime_root, version=version, dtype=dtype, device=device)

    def save_pretrained(self, out_dir: str | Path, dtype: Optional[torch.dtype] = None) -> Path:
        from core.model.checkpoint import save_pretrained
        return save_pretrained(self, out_dir, dtype=dtype)

    def reset_rotary(self) -> None:
        """(Re)create the RoPE buffers (not in the state dict) on the parameters' device."""
        for stack in (self.transformer, self.transformer2):
            dev = stack.model.norm.weight.device
            stack.model.rotary_emb = LlamaRotaryEmbedding(config=stack.config).to(dev)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.emb[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.emb[0].weight.dtype

    @property
    def lyric_tokenizer(self) -> TextTokenizer:
        return self.condition_provider.conditioners["description"].tokenizer

    @property
    def description_tokenizer(self) -> TextTokenizer:
        return self.condition_provider.conditioners["type_info"].tokenizer

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.state_dict().values())

    def gradient_checkpointing_enable(self) -> None:
        for stack in (self.transformer, self.transformer2):
            # transformers >= 5.2x renamed the API; older 5.x only has the gradient_ spelling.
            if hasattr(stack, "activation_checkpointing_enable"):
                stack.activation_checkpointing_enable({"use_reentrant": False})
            else:
                stack.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def gradient_checkpointing_disable(self) -> None:
        for stack in (self.transformer, self.transformer2):
            if hasattr(stack, "activation_checkpointing_disable"):
                stack.activation_checkpointing_disable()
            else:
                stack.gradient_checkpointing_disable()

    def unused_parameter_names(self) -> list[str]:
        """Parameters that exist in the official layout but never take part in forward."""
        names = ["transformer.model.embed_tokens.weight", "transformer2.model.embed_tokens.weight",
                 "transformer2.lm_head.weight", "layer2_emb.0.weight"]
        if hasattr(self, "out_norm"):
            names += ["out_norm.weight", "out_norm.bias"]
        return names

    # ------------------------------------------------------------------ condition dropout
    def seed_condition_dropout(self, seed: int) -> None:
        self.condition_dropout.seed(seed)

    def condition_dropout_state(self) -> dict:
        return {"generator": self.condition_dropout.state()}

    def load_condition_dropout_state(self, state: dict) -> None:
        self.condition_dropout.load_state(state["generator"])

    # ------------------------------------------------------------------ inputs
    def check_codes(self, codes: torch.Tensor, name: str = "codes") -> None:
        if codes.dim() != 3 or codes.shape[1] != self.depth:
            raise ValueError(f"{name} must be [B, {self.depth}, T] (mixed, vocal, bgm), got {tuple(codes.shape)}")
        if codes.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"{name} must be an integer tensor, got {codes.dtype}")
        bad = (codes < 0) | (codes > EMPTY)
        if bool(bad.any()):
            b, q, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"{name}[{b}, {q}, {t}] = {int(codes[b, q, t])} is out of range: values must be 0..16383 "
                             f"(codes), 16384 (EOS) or 16385 (empty)")

    def empty_prompt(self, batch: int) -> torch.Tensor:
        return torch.full((batch, self.depth, self.config.prompt_frames), EMPTY, dtype=torch.long)

    def make_conditions(self, lyrics: Sequence[Optional[str]], descriptions: Sequence[Optional[str]],
                        prompt: Optional[torch.Tensor], batch: int) -> Conditions:
        lyrics, descriptions = list(lyrics), list(descriptions)
        if len(lyrics) != batch or len(descriptions) != batch:
            raise ValueError(f"got {len(lyrics)} lyrics and {len(descriptions)} descriptions for a batch of {batch}")
        if prompt is None:
            prompt = self.empty_prompt(batch)
        else:
            if prompt.dim() != 3 or prompt.shape[0] != batch or prompt.shape[1] != self.depth:
                raise ValueError(f"prompt must be [{batch}, {self.depth}, P], got {tuple(prompt.shape)}")
            self.check_codes(prompt, "prompt")
            prompt = prompt.long()
        return Conditions(lyrics, descriptions, prompt)

    def condition_prefix(self, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        """The prepended condition vectors for the main and the sub stack: two [B, P, D]."""
        cp = self.condition_provider.conditioners
        lyr = cp["description"](cond.lyrics)
        p1, p2 = cp["prompt_audio"](cond.prompt)
        desc = cp["type_info"](cond.descriptions)
        parts = {"description": (lyr, lyr), "prompt_audio": (p1, p2), "type_info": (desc, desc)}
        first = [parts[name][0] for name in self.config.prepend]
        second = [parts[name][1] for name in self.config.prepend]
        return torch.cat(first, dim=1), torch.cat(second, dim=1)

    # ------------------------------------------------------------------ forward
    def heads(self) -> list[nn.Module]:
        """Output head per stream: mixed reads the main stack, vocal and bgm the sub stack."""
        return [self.transformer.lm_head, *self.linears]

    def hidden_steps(self, sequence: torch.Tensor, prefix: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                     caches: Optional[tuple] = None, positions: Optional[torch.Tensor] = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Delayed sequence [B, K, S] (+ prefix) -> the two stacks' normed hidden states on the S steps."""
        x1 = self.emb[0](sequence[:, 0])
        x2 = sum(self.layer2_emb[k](sequence[:, k]) for k in range(1, self.depth))
        n_prefix = 0
        if prefix is not None:
            n_prefix = prefix[0].shape[1]
            x1 = torch.cat([prefix[0].to(x1.dtype), x1], dim=1)
            x2 = torch.cat([prefix[1].to(x2.dtype), x2], dim=1)
        use_cache = caches is not None
        pos = None if positions is None else positions[None]
        h1 = self.transformer.model(inputs_embeds=x1, cache=caches[0] if use_cache else None,
                                    use_cache=use_cache, position_ids=pos).last_hidden_state
        z = self.mlp(torch.cat([x2, h1], dim=-1))
        h2 = self.transformer2.model(inputs_embeds=z, cache=caches[1] if use_cache else None,
                                     use_cache=use_cache, position_ids=pos).last_hidden_state
        # The prefix outputs are never used.
        return h1[:, n_prefix:], h2[:, n_prefix:]

    def forward_steps(self, sequence: torch.Tensor, prefix: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                      caches: Optional[tuple] = None) -> torch.Tensor:
        """Delayed sequence [B, K, S] (+ prefix) -> per-step logits [B, K, S, C+1] in float32."""
        h1, h2 = self.hidden_steps(sequence, prefix, caches)
        logits = [head(h1 if q == 0 else h2) for q, head in enumerate(self.heads())]
        return torch.stack(logits, dim=1).float()

    def _teacher_forced_hidden(self, codes: torch.Tensor, lyrics: Sequence[Optional[str]],
                               descriptions: Sequence[Optional[str]], prompt: Optional[torch.Tensor]
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_codes(codes)
        B = codes.shape[0]
        cond = self.make_conditions(lyrics, descriptions, prompt, B)
        if self.training:
            cond = self.condition_dropout(cond)
        prefix = self.condition_prefix(cond)
        return self.hidden_steps(self.pattern.build(codes.long().to(self.device)), prefix)

    def compute_predictions(self, codes: torch.Tensor, lyrics: Sequence[Optional[str]],
                            descriptions: Sequence[Optional[str]], prompt: Optional[torch.Tensor] = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits aligned with `codes`: ([B, K, T, C+1] float32, mask [B, K, T] bool)."""
        h1, h2 = self._teacher_forced_hidden(codes, lyrics, descriptions, prompt)
        logits = [head(h1 if q == 0 else h2) for q, head in enumerate(self.heads())]
        return self.pattern.align_logits(torch.stack(logits, dim=1).float(), codes.shape[-1])

    def compute_loss(self, targets: torch.Tensor, lyrics: Sequence[Optional[str]],
                     descriptions: Sequence[Optional[str]], prompt: Optional[torch.Tensor] = None, *,
                     chunked: Optional[bool] = None, chunk_bytes: int = CHUNK_BYTES
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss without [B, K, T, V] logits -> (mean CE per stream [K], valid targets per stream [K]).

        Equal to `masked_ce(*compute_predictions(...))`: each stream's head runs only on its valid
        targets (not EMPTY), through `linear_cross_entropy` (chunked when that saves memory).
        """
        h1, h2 = self._teacher_forced_hidden(targets, lyrics, descriptions, prompt)
        T = targets.shape[-1]
        targets = targets.to(self.device).long()
        losses, counts = [], []
        for q, head in enumerate(self.heads()):
            d = self.pattern.delays[q]
            h = (h1 if q == 0 else h2)[:, d:d + T]  # the output step that predicts frame t is t + d_q
            valid = targets[:, q] != EMPTY
            n = int(valid.sum())
            counts.append(n)
            if n == 0:
                losses.append(h.sum() * 0.0)  # keeps the graph, contributes 0
                continue
            losses.append(linear_cross_entropy(h[valid], head, targets[:, q][valid], chunked=chunked,
                                               chunk_bytes=chunk_bytes))
        return torch.stack(losses).float(), torch.tensor(counts, device=self.device, dtype=torch.float32)

    # ------------------------------------------------------------------ generation
    def generate(self, lyrics: Optional[str], description: Optional[str], prompt: Optional[torch.Tensor] = None, *,
                 max_frames: int, cfg_coef: float = SAMPLING.cfg_coef, temperature: float = SAMPLING.temperature,
                 top_k: int = SAMPLING.top_k, top_p: float = SAMPLING.top_p, greedy: bool = False,
                 record_window: int = SAMPLING.record_window, seed: Optional[int] = None,
                 cache: str = "auto", compile: Optional[bool | str] = None, precision: Optional[str] = None,
                 on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> torch.LongTensor:
        """Guided, KV-cached generation as SongGeneration samples -> codes [1, 3, T] cut at the earliest EOS.
        precision "bf16": bf16 weight copies on a CPU (core.model.generation.resolve_weights)."""
        from core.model.generation import generate
        return generate(self, lyrics, description, prompt, max_frames=max_frames, cfg_coef=cfg_coef,
                        temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                        record_window=record_window, seed=seed, cache=cache, compile=compile,
                        precision=precision, on_step=on_step, progress=progress)

    def generate_batch(self, lyrics: Sequence[Optional[str]], descriptions: Sequence[Optional[str]],
                       prompts: Optional[Sequence[Optional[torch.Tensor]]] = None, **kw) -> list[torch.LongTensor]:
        """Several songs in one pass (seed sweeps, several lyrics): see generation.generate_batch."""
        from core.model.generation import generate_batch
        return generate_batch(self, lyrics, descriptions, prompts, **kw)
