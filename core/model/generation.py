"""Sampling as SongGeneration does it, for one song or a batch of songs in one pass.

Rows 0..B-1 conditional, B..2B-1 unconditional, with a KV cache per stack; per step the guided scores
`uncond + cfg_coef * (cond - uncond)` at the last position; a repetition penalty over the tokens
of the last `record_window` steps (score / 1.1, applied to the guided scores, negatives included:
upstream's quirk kept); the prompt's mixed tokens banned on the mixed stream; the mixed stream
sampled with temperature / top-k (or top-p), vocal and bgm taken greedily (top-p, when set,
applies to all streams); delay-pattern slots forced EMPTY; a stream that emitted EOS stays EMPTY.

Speed (same tokens): conditions are encoded once; a head runs only for streams that can still emit a
token at this step (not a delay slot, not ended in every row); in float32 the guidance is applied to
the head's input (the heads are linear: head(u + c(h - u)) = head(u) + c(head(h) - head(u)) up to
rounding), so a head reads its 16385 x D weight for one row per song, not two; the cache is
"preallocated" (the CPU default: fast_step.FrameStep, KV in buffers, no transformers call per frame),
transformers' StaticCache ("static"; on CUDA the one-frame step is compiled and CUDA-graphed),
DynamicCache ("dynamic") or "int8" (FrameStep with K/V stored in int8, one scale per row, head and
position: a quarter of a float32 cache, half of bf16; tokens close to, not equal to, a float cache:
tests/test_int8_cache.py); the cache is in the model's dtype otherwise; on a CPU the heads read a transposed copy of their weights, one row at a
time (a GEMV over contiguous rows, ~3x faster than `linear`, and a row's numbers do not depend on
the batch). With FrameStep, work no head needs yet waits for one chunk: the sub stack over the steps where
only the mixed stream can emit (the delay), the main stack run ahead once the mixed stream is over (its
inputs are EMPTY from then on); the prefill is FrameStep's own chunk. precision="bf16" (a float32 model on a CPU whose bf16 matmul is faster: the caller passes
core.training.precision's verdict) reads bf16 copies of the layer and head weights, half the bytes
of a frame; logits within a few percent of float32's (tests/test_generation_precision.py).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

import torch
from transformers import DynamicCache, StaticCache

from core.model.conditioners import Conditions
from core.model.fast_step import FrameStep, rows_matmul
from core.model.pattern import EMPTY, EOS
from core.sampling import SAMPLING

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from core.model.lelm import LeLM

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
    return prompt.long().cpu()


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
    if top_p > 0.0:
        return sample_top_p(torch.softmax(scores / temperature, dim=-1), top_p, generator)
    out = scores.argmax(-1)  # vocal / bgm: top-1
    # Only the mixed stream is sampled (x / 1.0 is x: no copy for the default temperature).
    first = torch.softmax(scores[:1] if temperature == 1.0 else scores[:1] / temperature, dim=-1)
    if top_k > 0:
        out[0] = sample_top_k(first, top_k, generator)[0]
    else:
        out[0] = torch.multinomial(first, 1, generator=generator)[0, 0]
    return out


def apply_repetition_penalty(scores: torch.Tensor, history: list[torch.Tensor] | torch.Tensor,
                             window: int) -> torch.Tensor:
    """scores [..., K, V]; history: a list of tokens [..., K] per step, or those steps as one tensor
    [..., K, steps] -> score / 1.1 for the ids (< EOS) seen in the last `window` steps (`scores` is
    changed in place and returned)."""
    steps = history.shape[-1] if torch.is_tensor(history) else len(history)
    if window <= 0 or steps == 0:
        return scores
    recent = history[..., -window:] if torch.is_tensor(history) else torch.stack(history[-window:], dim=-1)
    # Only the w seen ids per stream are touched (not a [..., K, V] mask): each is divided once from
    # its original score, so an id seen several times gets the same value written several times.
    ids = recent.clamp(max=EOS)  # EMPTY lands on EOS, which (like a real EOS) is never penalized
    seen = scores.gather(-1, ids)
    # in place: generation builds `scores` afresh every frame, so no [B, K, V] copy per frame
    return scores.scatter_(-1, ids, torch.where(ids < EOS, seen / REPETITION_PENALTY, seen))


class _Heads:
    """The output heads for generation; a row's logits never depend on the other songs in the batch.

    float32 on a CPU: one (guided) row at a time through the row matmul (no weight copy). bf16 weights
    (`weights`): a song's cond and uncond rows through one oneDNN read of the bf16 copy (fast_step.rows_matmul),
    logits in float32 and combined there, as upstream does in bf16."""

    def __init__(self, model: "LeLM", weights: Optional[torch.dtype] = None):
        self.modules = model.heads()
        cpu = model.device.type == "cpu"
        plain = [type(m) is torch.nn.Linear and m.bias is None for m in self.modules]
        self.pairs = [rows_matmul(m.weight.to(weights), torch.float32, 2) if weights is not None and ok else None
                      for m, ok in zip(self.modules, plain)]
        self.rows = [rows_matmul(m.weight, torch.float32, 2) if cpu and ok and weights is None else None
                     for m, ok in zip(self.modules, plain)]

    @property
    def guides_hidden(self) -> bool:
        """Whether guidance may go to the heads' input (float32 heads), else to their logits."""
        return all(p is None for p in self.pairs)

    def __call__(self, q: int, h: torch.Tensor) -> torch.Tensor:
        pair, rows = self.pairs[q], self.rows[q]
        if pair is not None:  # h: [2B] rows, song b's pair is rows b and B + b
            B = h.shape[0] // 2
            if B == 1:
                return pair(h)
            out = torch.stack([pair(h[b::B]) for b in range(B)], dim=1)  # [2, B, V]
            return out.flatten(0, 1)
        if rows is None:
            return self.modules[q](h).float()
        return torch.cat([rows(row) for row in h.split(1)])  # each row alone: the same sums in any batch


class _Stacks:
    """Both stacks over the 2B guided rows with their KV caches; `step` may be compiled (CUDA graphs)."""

    def __init__(self, model: "LeLM", rows: int, max_len: int, cache: str, backend: Optional[str],
                 weights: Optional[torch.dtype] = None):
        self.model = model
        self.weights = weights
        self.max_len = max_len
        self.frame_step: Optional[FrameStep] = None
        self.preallocated = cache in ("preallocated", "int8")
        self.int8 = cache == "int8"
        if cache == "static":
            self.caches = tuple(StaticCache(config=s.config, max_cache_len=max_len)
                                for s in (model.transformer, model.transformer2))
        else:  # FrameStep (preallocated, int8) keeps its own KV buffers: no caches
            self.caches = None if self.preallocated else (DynamicCache(), DynamicCache())
        self.positions = torch.arange(max_len, device=model.device)
        self._step = self._eager_step
        if backend is not None:
            mode = "reduce-overhead" if backend == "inductor" and model.device.type == "cuda" else None
            self._step = torch.compile(self._eager_step, backend=backend, mode=mode, fullgraph=True, dynamic=False)

    def _eager_step(self, sequence: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1, h2 = self.model.hidden_steps(sequence, None, self.caches, positions)
        return h1[:, -1], h2[:, -1]

    def prefill(self, sequence: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor]):
        if self.preallocated:  # FrameStep's own chunk over the prefix, into its KV buffers (in `weights` too)
            self.frame_step = FrameStep(self.model, None, self.max_len, int8=self.int8, weights=self.weights,
                                        rows=sequence.shape[0])
            return self.frame_step.prefill(prefix, sequence)
        n = prefix[0].shape[1] + sequence.shape[-1]
        h1, h2 = self.model.hidden_steps(sequence, prefix, self.caches, self.positions[:n])
        return h1[:, -1], h2[:, -1]

    def advance(self, offset: int, tokens: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor], sub: bool,
                empty_ahead: int):
        """Step `offset` (1: the prefill with the prefix) -> (h1, h2); the sub stack may wait where `sub` is
        False, and the main stack run `empty_ahead` EMPTY positions ahead (FrameStep.step)."""
        if offset == 1:
            return self.prefill(tokens, prefix)
        return self.step(tokens, prefix[0].shape[1] + offset - 1, sub, empty_ahead)

    def close(self) -> None:
        if self.frame_step is not None:
            self.frame_step.close()

    def step(self, tokens: torch.Tensor, position: int, sub: bool = True, empty_ahead: int = 0):
        """-> (h1, h2); with FrameStep, h2 may be None where `sub` is False (FrameStep.step)."""
        if self.frame_step is not None:
            return self.frame_step.step(tokens, sub, empty_ahead)
        out = self._step(tokens, self.positions[position:position + 1])
        # CUDA-graph outputs are overwritten by the next replay: keep our own copy.
        return tuple(t.clone() for t in out) if self._step is not self._eager_step else out


BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@contextmanager
def adapter_rows(model: "LeLM", names: Sequence[str]) -> Iterator[None]:
    """Each song's rows run with its own peft LoRA adapter (BASE_ADAPTER: the base weights).

    peft's LoRA layers take `adapter_names` (one per input row) and apply each adapter to its rows
    only. The names go in through forward pre-hooks on those layers, as peft's own
    `PeftModel.generate(adapter_names=...)` does; here the list is chosen by the input's row count:
    the stacks see 2B rows (cond, uncond), the heads B (guided) or 2B.
    """
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ValueError("adapters were given but the model has no LoRA layers (load it with core.model.lora)")
    known = set().union(*(layer.lora_A.keys() for layer in layers))
    unknown = sorted(set(names) - known - {BASE_ADAPTER})
    if unknown:
        raise ValueError(f"adapter(s) {', '.join(unknown)} are not loaded on the model; loaded: {', '.join(sorted(known))}")
    names = list(names)
    by_rows = {len(names): names, 2 * len(names): names + names}

    def inject(module, args, kwargs):
        rows = args[0].shape[0] if args else kwargs["x"].shape[0]
        if rows not in by_rows:
            raise RuntimeError(f"a LoRA layer got {rows} rows in a batch of {len(names)} songs")
        kwargs["adapter_names"] = by_rows[rows]
        return args, kwargs

    handles = [layer.register_forward_pre_hook(inject, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def resolve_cache(cache: str, device: torch.device) -> str:
    if cache not in ("auto", "preallocated", "static", "dynamic", "int8"):
        raise ValueError(f"cache must be auto, preallocated, static, dynamic or int8, got {cache!r}")
    # auto: static on CUDA (the compiled step needs it); on a CPU the preallocated buffers (attention
    # over the filled part only, no mask, no concatenation, no transformers call per frame).
    if cache == "auto":
        return "static" if device.type == "cuda" else "preallocated"
    return cache


def resolve_compile(compile: Optional[bool | str], device: torch.device, cache: str) -> Optional[str]:
    """-> the torch.compile backend for the one-frame step, or None (eager).

    None = auto (inductor + CUDA graphs on CUDA); True needs CUDA (elsewhere: a log line, eager step);
    a backend name ("eager", "aot_eager", ...) compiles on any device: it checks the graph capture on a CPU.
    Compiling needs the static cache (fixed shapes and addresses).
    """
    if compile is None:
        compile = device.type == "cuda"
    if not compile:
        return None
    if cache != "static":
        log.info("generation: a compiled step needs cache='static'; using the eager step")
        return None
    if compile is True:
        if device.type != "cuda":
            log.info("generation: the compiled (CUDA-graph) step needs CUDA; using the eager step on %s", device)
            return None
        return "inductor"
    return str(compile)


def resolve_weights(precision: Optional[str], model: "LeLM") -> Optional[torch.dtype]:
    """-> the dtype the CPU frame step and heads read their weights in, or None (the model's own weights).

    precision: None / "fp32" (the model's weights, float32 tokens as always) or "bf16": bf16 copies of a
    float32 model's layer and head weights, made once per call (half the bytes read a frame; the caller
    decides where that is faster: core.training.precision's verdict for this CPU). Activations, norms,
    attention and the KV cache stay in the model's dtype, as under autocast. A GPU generates in the
    model's own dtype (bf16 as loaded for generation), so there the setting changes nothing.
    """
    if precision not in (None, "fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    if precision != "bf16" or model.device.type != "cpu" or model.dtype != torch.float32:
        return None
    return torch.bfloat16


@torch.no_grad()
def generate_batch(model: "LeLM", lyrics: Sequence[Optional[str]], descriptions: Sequence[Optional[str]],
                   prompts: Optional[Sequence[Optional[torch.Tensor]]] = None, *, max_frames: int,
                   cfg_coef: float = SAMPLING.cfg_coef, temperature: float = SAMPLING.temperature,
                   top_k: int = SAMPLING.top_k, top_p: float = SAMPLING.top_p, greedy: bool = False,
                   record_window: int = SAMPLING.record_window, seeds: Optional[Sequence[Optional[int]]] = None,
                   cache: str = "auto", compile: Optional[bool | str] = None,
                   adapters: Optional[Sequence[str]] = None, precision: Optional[str] = None,
                   on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
                   progress: Optional[Callable[[int, int], None]] = None) -> list[torch.LongTensor]:
    """B songs in one pass (one forward per frame for all of them) -> B codes [1, 3, T_b], each cut at its
    earliest EOS. Row b draws from its own generator (seeds[b]), so it matches a one-song run with that seed.
    adapters: per song, the peft LoRA adapter it runs with (BASE_ADAPTER for the base), so an A/B of
    base vs LoRA or a strength sweep (one adapter name per strength) shares one pass; see adapter_rows.
    precision: "bf16" reads bf16 copies of a float32 model's weights on a CPU (resolve_weights).
    on_step(step, scores [B, K, V]) sees every stream's guided scores (all heads run then)."""
    if adapters is not None:
        if len(adapters) != len(lyrics):
            raise ValueError(f"need one adapter name per song ({len(lyrics)}), got {len(adapters)}")
        # The compiled CUDA step is not used here: the per-row names enter through module hooks.
        with adapter_rows(model, adapters):
            return generate_batch(model, lyrics, descriptions, prompts, max_frames=max_frames, cfg_coef=cfg_coef,
                                  temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                  record_window=record_window, seeds=seeds, cache=cache, compile=False,
                                  precision=precision, on_step=on_step, progress=progress)
    B = len(lyrics)
    prompts, seeds = _per_song(lyrics, descriptions, prompts, seeds, max_frames)
    K, dev = model.depth, model.device
    cache = resolve_cache(cache, dev)
    backend = resolve_compile(compile, dev, cache)
    was_training = model.training
    model.eval()
    prompts = [normalize_prompt(p, K) for p in prompts]
    cond = _guidance_conditions(model, lyrics, descriptions, prompts)
    banned = _banned_prompt_tokens(prompts, model.code_size + 1, dev)
    generators = [None if seed is None else torch.Generator(device=dev).manual_seed(int(seed)) for seed in seeds]

    pattern = model.pattern
    T = int(max_frames)
    S = pattern.num_steps(T)
    seq = torch.full((B, K, S), UNKNOWN, dtype=torch.long, device=dev)
    seq[:, :, 0] = EMPTY
    prefix = model.condition_prefix(cond)
    stacks = _Stacks(model, 2 * B, prefix[0].shape[1] + S, cache, backend, resolve_weights(precision, model))
    heads = _Heads(model, stacks.weights)
    ended = torch.zeros(B, K, dtype=torch.bool, device=dev)
    # Guiding the heads' input is exact up to rounding for linear heads; in bf16/fp16 (bf16 weights too)
    # the logits are combined in float32 instead, as upstream does.
    guide_hidden = model.dtype == torch.float32 and heads.guides_hidden
    try:
        for offset in range(1, S):
            live, needed, mixed_over = _streams(pattern, offset, T, ended, on_step is not None)
            h1, h2 = stacks.advance(offset, seq[:, :, offset - 1:offset].repeat(2, 1, 1), prefix,
                                    any(q > 0 for q in needed), S - 1 - offset if mixed_over else 0)
            scores = _guided_scores(heads, (h1, h2), needed, K, model.code_size + 1, cfg_coef, guide_hidden)
            # The tokens of steps 1..offset-1 are the history (seq's column 0 is the start slot).
            scores = apply_repetition_penalty(scores, seq[:, :, 1:offset], record_window)
            if banned is not None:
                scores[:, 0] = scores[:, 0].masked_fill(banned, float("-inf"))
            if on_step is not None:
                on_step(offset, scores)
            tokens = _draw(scores, generators, live, ended, greedy=greedy, temperature=temperature, top_k=top_k,
                           top_p=top_p)
            ended |= tokens == EOS
            seq[:, :, offset] = tokens
            if progress is not None:
                progress(offset, S - 1)
            if bool(ended.all()):
                break
    finally:
        stacks.close()
        model.train(was_training)

    codes = pattern.revert(seq, T)
    codes[codes == UNKNOWN] = EMPTY
    return [_cut_at_eos(codes[b:b + 1]) for b in range(B)]


def _streams(pattern, offset: int, T: int, ended: torch.Tensor, all_heads: bool) -> tuple[list[int], Sequence[int], bool]:
    """-> the streams that can emit a token at this step (a frame slot, not ended in every song), the streams
    whose scores are needed (all of them for an on_step hook), and whether the mixed stream is over (ended in
    every song or past its last frame: its tokens, so the main stack's next inputs, are EMPTY from here on)."""
    K = ended.shape[1]
    all_ended = ended.all(0).tolist()  # one read for every stream
    live = [q for q in range(K) if pattern.valid_slot(offset, q, T) and not all_ended[q]]
    return live, range(K) if all_heads else live, all_ended[0] or offset > T


def _guidance_conditions(model: "LeLM", lyrics, descriptions, prompts: list) -> Conditions:
    """The 2B rows of a classifier-free guided pass: each song's conditions, then the same songs unconditioned
    (no lyrics, the null description, an empty prompt)."""
    B = len(lyrics)
    cond_prompt = torch.cat([p if p is not None else model.empty_prompt(1) for p in prompts])
    return Conditions(list(lyrics) + [None] * B,
                      list(descriptions) + [null_description(d, model.version) for d in descriptions],
                      torch.cat([cond_prompt, model.empty_prompt(B)], dim=0))


def _per_song(lyrics, descriptions, prompts, seeds, max_frames: int) -> tuple[list, list]:
    """Checks that every song has its description (and prompt, seed when given) -> (prompts, seeds) lists."""
    B = len(lyrics)
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    if B < 1 or len(descriptions) != B:
        raise ValueError(f"got {len(lyrics)} lyrics and {len(descriptions)} descriptions")
    prompts = list(prompts) if prompts is not None else [None] * B
    seeds = list(seeds) if seeds is not None else [None] * B
    if len(prompts) != B or len(seeds) != B:
        raise ValueError(f"need one prompt and one seed per song ({B}), got {len(prompts)} and {len(seeds)}")
    return prompts, seeds


def _draw(scores: torch.Tensor, generators: list, live: list[int], ended: torch.Tensor, **sampling) -> torch.Tensor:
    """Tokens [B, K] of one step: each row drawn with its own generator; streams with no valid slot at this
    step and streams that already ended get EMPTY."""
    # Every row draws at every step, as a one-song run does: its generator stays in step.
    tokens = torch.stack([choose_tokens(scores[b], generator=g, **sampling) for b, g in enumerate(generators)])
    dead = [q for q in range(scores.shape[1]) if q not in live]
    if dead:
        tokens[:, dead] = EMPTY
    return tokens.masked_fill_(ended, EMPTY)


def _banned_prompt_tokens(prompts: list[Optional[torch.Tensor]], vocab: int, dev) -> Optional[torch.Tensor]:
    """[B, vocab] True where a song's prompt holds that mixed token: the mixed stream may not repeat the
    prompt's tokens. None when no song has a prompt."""
    banned = torch.zeros(len(prompts), vocab, dtype=torch.bool)
    for b, p in enumerate(prompts):
        if p is not None:
            mixed = p[0, 0]
            banned[b, mixed[mixed < EOS]] = True
    return banned.to(dev) if bool(banned.any()) else None


def _guided_scores(heads: "_Heads", hidden: tuple[torch.Tensor, torch.Tensor], streams, K: int, vocab: int,
                   cfg_coef: float, guide_hidden: bool) -> torch.Tensor:
    """Classifier-free guided scores [B, K, vocab] of `streams` (others 0) from both stacks' last hidden
    states [2B, D] (conditioned rows first, then the unconditioned ones)."""
    B = hidden[0].shape[0] // 2
    scores = torch.zeros(B, K, vocab, device=hidden[0].device)
    guided: dict[int, torch.Tensor] = {}  # per stack: vocal and bgm share the sub stack's input
    for q in streams:
        stack = min(q, 1)
        h = hidden[stack]  # [2B, D]
        if guide_hidden:
            if stack not in guided:
                guided[stack] = h[B:] + (h[:B] - h[B:]) * cfg_coef
            scores[:, q] = heads(q, guided[stack])
        else:
            logits = heads(q, h)  # [2B, V]
            scores[:, q] = logits[B:] + (logits[:B] - logits[B:]) * cfg_coef
    return scores


def _cut_at_eos(c: torch.Tensor) -> torch.Tensor:
    """codes [1, K, T] cut at the earliest EOS of any stream."""
    eos = [int((c[0, q] == EOS).nonzero()[0]) for q in range(c.shape[1]) if bool((c[0, q] == EOS).any())]
    return c[..., :min(eos)] if eos else c


def generate(model: "LeLM", lyrics: Optional[str], description: Optional[str], prompt: Optional[torch.Tensor] = None,
             *, max_frames: int, cfg_coef: float = SAMPLING.cfg_coef, temperature: float = SAMPLING.temperature,
             top_k: int = SAMPLING.top_k, top_p: float = SAMPLING.top_p, greedy: bool = False,
             record_window: int = SAMPLING.record_window, seed: Optional[int] = None,
             cache: str = "auto", compile: Optional[bool | str] = None, precision: Optional[str] = None,
             on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
             progress: Optional[Callable[[int, int], None]] = None) -> torch.LongTensor:
    """One song -> codes [1, 3, T] cut at the earliest EOS; on_step(step, scores [K, V])."""
    if prompt is not None and (prompt.dim() not in (2, 3) or (prompt.dim() == 3 and prompt.shape[0] != 1)):
        normalize_prompt(prompt, model.depth)  # raises the message
    hook = None if on_step is None else (lambda s, sc: on_step(s, sc[0]))
    return generate_batch(model, [lyrics], [description], [prompt], max_frames=max_frames, cfg_coef=cfg_coef,
                          temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                          record_window=record_window, seeds=[seed], cache=cache, compile=compile,
                          precision=precision, on_step=hook, progress=progress)[0]
