"""Test generation, A/B listening and LoRA strength sweeps.

    python -m core generate --config cfg.yaml [--lyrics ... --description ... --prompt-audio f.wav]
                            [--checkpoint <run>/checkpoints/step-N] [--ab [--compare-to base|DIR]]
                            [--sweep 0,0.5,1] [--seed 0] [--max-seconds 10] [--gen-type mixed|vocal|bgm|separate]

One song: lyrics + description (+ a prompt: an audio file, encoded with the codec and cut to the
model's prompt length, or a saved [3, P] token file) -> the model's `generate` -> the codec's
`decode` -> a wav/flac file, with a JSON of every setting beside it and the tokens as .npy.

Generation types as upstream: `mixed` (both tracks), `vocal` (accompaniment silenced), `bgm`
(accompaniment-only text rules, vocal silenced), `separate` (three files: mix, `_vocal`, `_bgm`).
Single-track rendering uses the codec's own `track=` option (the official codec replaces the other
track with upstream's silence tokens); the demo codec renders special ids as silence, so the other
track is blanked with them.

Runs of several models on the same song (single, A/B, strength sweep) with their manifest are in
core.export.compare.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from core.errors import StudioError
from core.fsutil import slugify
from core.sampling import GEN_TYPES, Sampling, from_section
from core.tokens import EMPTY

log = logging.getLogger(__name__)

# file suffix and codec track per generation type
TRACKS = {"mixed": [("", "both")], "vocal": [("_vocal", "vocal")], "bgm": [("_bgm", "bgm")],
          "separate": [("", "both"), ("_vocal", "vocal"), ("_bgm", "bgm")]}
AUDIO_FORMATS = ("wav", "flac")
DEFAULT_LYRICS = ("[intro-short] ; [verse] the city lights are calling me home.i walk the empty streets alone ; "
                  "[chorus] hold on to the night.we are young and the sky is bright ; [outro-short]")


class GenerationError(StudioError, RuntimeError):
    """Generation settings or inputs that cannot be used; the message says what to change."""
    code = "generation"


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    """Which weights to generate with: the base (checkpoint None), a LoRA adapter at a strength, or a
    full checkpoint folder."""
    label: str
    checkpoint: Optional[str] = None
    strength: float = 1.0

    def describe(self) -> dict[str, Any]:
        d = {"label": self.label, "checkpoint": self.checkpoint}
        if self.checkpoint is not None:
            from core.export.merge import checkpoint_kind
            d["kind"] = checkpoint_kind(self.checkpoint)
            if d["kind"] == "lora":
                d["strength"] = self.strength
        else:
            d["kind"] = "base"
        return d


def checkpoint_label(ckpt: str | Path) -> str:
    """A short name a listener recognises: `step-40`, or `<run>-step-40` when given `taken` names clash."""
    p = Path(ckpt).expanduser()
    return slugify(p.name, "model", 120)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelLoader:
    """Loads the base model once and applies LoRA adapters / full checkpoints on demand."""

    def __init__(self, cfg, base_dir: Optional[str | Path] = None, device: Optional[str] = None,
                 dtype: Optional[torch.dtype] = None):
        from core.training.base_model import resolve_base_model

        self.cfg = cfg
        self.base_dir = Path(base_dir) if base_dir else Path(resolve_base_model(cfg))
        self.runtime_root = cfg.paths.runtime_path or None
        self.device = device or default_device()
        self.dtype = dtype or (torch.bfloat16 if str(self.device).startswith("cuda") else torch.float32)
        self._base = None
        self._lora: Optional[tuple[str, Any, Any]] = None  # (checkpoint, PeftModel, LeLM) on the shared base

    def base(self):
        if self._base is None:
            from core.model import LeLM
            self._base = LeLM.from_pretrained(self.base_dir, runtime_root=self.runtime_root, dtype=self.dtype,
                                              device=self.device)
        return self._base

    def _adapter(self, checkpoint: str) -> tuple[str, Any, Any]:
        """The LoRA of `checkpoint` on the shared base, loaded once while it is the one in use."""
        from core.model.lora import load_lora

        if self._lora is None or self._lora[0] != str(checkpoint):
            self.release()
            peft_model, lelm = load_lora(self.base_dir, checkpoint, base_model=self.base())
            self._lora = (str(checkpoint), peft_model, lelm)
        return self._lora

    def release(self) -> None:
        """Take a loaded LoRA off the base again (the base layers are restored in place)."""
        if self._lora is not None:
            self._lora[1].unload()
            self._lora = None

    @contextmanager
    def use(self, spec: ModelSpec) -> Iterator[Any]:
        """The LeLM for `spec`. A LoRA stays on the shared base across specs (a sweep or an A/B loads it
        once and only changes its scale); the base side then runs with the adapter disabled."""
        from core.export.merge import checkpoint_kind
        from core.model.lora import set_lora_strength

        if spec.checkpoint is None:
            if self._lora is None:
                yield self.base()
            else:
                with self._lora[1].disable_adapter():
                    yield self._lora[2]
            return
        if checkpoint_kind(spec.checkpoint) == "full":
            from core.model import LeLM
            model = LeLM.from_pretrained(spec.checkpoint, runtime_root=self.runtime_root, dtype=self.dtype,
                                         device=self.device)
            try:
                yield model
            finally:
                del model
            return
        _, peft_model, lelm = self._adapter(spec.checkpoint)
        set_lora_strength(peft_model, spec.strength)
        yield lelm

    @contextmanager
    def together(self, specs: list[ModelSpec]) -> Iterator[Optional[tuple[Any, list[str]]]]:
        """(LeLM, one peft adapter name per spec) when the specs are the base and/or one LoRA checkpoint at
        any strengths: they can be generated in one batch (peft mixed-adapter rows; each extra strength is a
        copy of the loaded adapter under its own name and scale, not read from disk again; strength 0 = the
        base rows).
        None when they cannot: a full checkpoint is other weights, so it gets its own pass."""
        from core.export.merge import checkpoint_kind
        from core.model.generation import BASE_ADAPTER
        from core.model.lora import copy_adapter, set_lora_strength

        ckpts = {s.checkpoint for s in specs if s.checkpoint is not None}
        if len(specs) < 2 or len(ckpts) != 1 or checkpoint_kind(next(iter(ckpts))) != "lora":
            yield None
            return
        ckpt = ckpts.pop()
        _, peft_model, lelm = self._adapter(ckpt)
        main = peft_model.active_adapter
        strengths = sorted({float(s.strength) for s in specs if s.checkpoint is not None and s.strength != 0})
        names = {strength: main if k == 0 else f"strength{k}" for k, strength in enumerate(strengths)}
        extra = list(names.values())[1:]
        try:
            copy_adapter(peft_model, main, extra)
            for strength, name in names.items():
                set_lora_strength(peft_model, strength, adapter=name)
            yield lelm, [BASE_ADAPTER if s.checkpoint is None or s.strength == 0 else names[float(s.strength)]
                         for s in specs]
        finally:
            for name in extra:
                if name in peft_model.peft_config:  # a copy that failed midway added only some
                    peft_model.delete_adapter(name)
            peft_model.set_adapter(main)


# ---------------------------------------------------------------------------------------------
# Settings, prompt, rendering
# ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Settings(Sampling):
    """One generation: what to sing (lyrics, description, prompt), how to draw it (the Sampling fields it
    inherits), what to render and how long."""
    lyrics: Optional[str]
    description: Optional[str]
    seed: int = 0
    gen_type: str = GEN_TYPES[0]
    max_frames: Optional[int] = None
    prompt_audio: Optional[str] = None
    prompt_tokens: Optional[str] = None
    audio_format: str = "wav"
    kv_cache: str = "auto"
    precision: str = "fp32"  # the CPU frame step's weights, fp32 or bf16 (generation_precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generation_precision(cfg) -> str:
    """"bf16" where the run's precision setting (training.mixed_precision; "auto": this CPU's measured, cached
    verdict, or SONGGEN_CPU_PRECISION) picks bf16 on a CPU, else "fp32". A GPU generates in the dtype the
    model is loaded in (bf16), whatever this says."""
    from core.training.estimate import PEAK_CACHE
    from core.training.precision import choose

    choice = choose(cfg.training.mixed_precision, device="cpu", cache_file=cfg.workspace_dir() / PEAK_CACHE)
    return "bf16" if choice.mixed_precision == "bf16" else "fp32"


def settings_from_config(cfg, **overrides: Any) -> Settings:
    g = cfg.generation
    s = Settings(lyrics=g.lyrics if g.lyrics is not None else DEFAULT_LYRICS, description=g.description, seed=g.seed,
                 gen_type=g.gen_type, prompt_audio=g.prompt_audio, prompt_tokens=g.prompt_tokens,
                 audio_format=g.audio_format, kv_cache=g.kv_cache, precision=generation_precision(cfg),
                 **from_section(g).kwargs())
    for k, v in overrides.items():
        if v is not None:
            setattr(s, k, v)
    if s.problems():
        raise GenerationError("; ".join(s.problems()))
    if s.gen_type not in GEN_TYPES:
        raise GenerationError(f"gen_type {s.gen_type!r} is not one of {', '.join(GEN_TYPES)}")
    if s.audio_format not in AUDIO_FORMATS:
        raise GenerationError(f"audio format {s.audio_format!r} is not one of {', '.join(AUDIO_FORMATS)}")
    if s.prompt_audio and s.prompt_tokens:
        raise GenerationError("give a prompt audio file or prompt tokens, not both")
    return s


def frames_for(model, settings: Settings, max_seconds: Optional[float]) -> int:
    limit = int(model.config.max_frames)
    if settings.max_frames is not None and settings.max_frames > 0:
        return min(int(settings.max_frames), limit)
    if max_seconds is not None:
        return max(1, min(limit, int(round(max_seconds * model.config.frame_rate))))
    return limit


@dataclass
class Prompt:
    tokens: Optional[torch.Tensor] = None   # [3, P] long
    audio: Optional[torch.Tensor] = None    # [2, n] float at the codec's rate (in-context audio for decode)
    source: Optional[str] = None


def _fit_prompt(tokens: torch.Tensor, frames: int, source: str) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    if tokens.dim() == 3 and tokens.shape[0] == 1:
        tokens = tokens[0]
    if tokens.dim() != 2 or tokens.shape[0] != 3:
        raise GenerationError(f"{source}: prompt tokens must be [3, P] (mixed, vocal, bgm), got {tuple(tokens.shape)}")
    if tokens.dtype.is_floating_point:
        raise GenerationError(f"{source}: prompt tokens must be integers, got {tokens.dtype}")
    tokens = tokens.long()
    if bool(((tokens < 0) | (tokens > EMPTY)).any()):
        raise GenerationError(f"{source}: prompt token values must be 0..16385")
    out = torch.full((3, frames), EMPTY, dtype=torch.long)
    n = min(frames, tokens.shape[1])
    out[:, :n] = tokens[:, :n]
    return out


def load_prompt(settings: Settings, codec, model) -> Prompt:
    """The [3, P] prompt for the model (P = the model's prompt frames, 10 s for released models)."""
    frames = int(model.config.prompt_frames)
    if settings.prompt_tokens:
        path = Path(settings.prompt_tokens).expanduser()
        if not path.is_file():
            raise GenerationError(f"prompt tokens file {path} not found")
        if path.suffix == ".npy":
            arr = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix in (".pt", ".pth"):
            arr = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise GenerationError(f"{path}: prompt tokens must be a .npy or .pt file holding a [3, P] integer array")
        return Prompt(tokens=_fit_prompt(arr, frames, str(path)), source=str(path))
    if settings.prompt_audio:
        from core.audio.io import AudioError, load_for_codec

        path = Path(settings.prompt_audio).expanduser()
        try:
            wav = load_for_codec(path, target_sr=codec.sample_rate)
        except (AudioError, OSError) as err:
            raise GenerationError(f"prompt audio {path}: {err}") from None
        seconds = frames / float(model.config.frame_rate)
        seg = wav[:, : int(round(seconds * codec.sample_rate))]
        if seg.shape[-1] < codec.sample_rate:
            raise GenerationError(f"prompt audio {path} is shorter than 1 s; give {seconds:g} s of the song's style")
        tokens = codec.encode(seg)
        return Prompt(tokens=_fit_prompt(tokens, frames, str(path)), audio=seg, source=str(path))
    return Prompt()


def decode_track(codec, tokens: torch.Tensor, track: str, prompt_audio: Optional[torch.Tensor] = None,
                 seed: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """tokens [3, T] -> (wav [2, N], sr) for track "both", "vocal" or "bgm"."""
    params = inspect.signature(codec.decode).parameters
    kw: dict[str, Any] = {}
    if "seed" in params and seed is not None:
        kw["seed"] = int(seed)
    if track == "both":
        return codec.decode(tokens, prompt=prompt_audio, **kw)
    if "track" in params:
        return codec.decode(tokens, prompt=prompt_audio, track=track, **kw)
    if getattr(codec, "is_demo", False):
        t = tokens.clone()
        t[2 if track == "vocal" else 1] = EMPTY  # the demo codec renders special ids as silence
        return codec.decode(t, prompt=prompt_audio, **kw)
    raise GenerationError(f"the codec {getattr(codec, 'id', codec)!r} cannot render one track alone; "
                          "use gen_type mixed")


def write_audio(path: Path, wav: torch.Tensor, sr: int) -> None:
    import soundfile as sf

    data = wav.detach().float().cpu().numpy().T
    if data.size:
        data = np.clip(data, -1.0, 1.0)
    sf.write(str(path), data, sr, format=path.suffix[1:].upper(), subtype="PCM_16")


def tokens_hash(tokens: torch.Tensor) -> str:
    return hashlib.sha256(tokens.detach().cpu().long().numpy().tobytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# One song
# ---------------------------------------------------------------------------------------------
def _model_inputs(model, settings: Settings, prompt: Prompt,
                  max_seconds: Optional[float]) -> tuple[str, str, Optional[torch.Tensor], int, dict[str, Any]]:
    """What one song gives `model`: (lyrics, description) in the model's trained form, the prompt tokens on
    its device, the frame budget and the sampling settings; the same for one model and for a batch."""
    from core.text.rules import model_text

    lyrics, desc = model_text(settings.lyrics, settings.description, model.version, settings.gen_type)
    p = prompt.tokens[None].to(model.device) if prompt.tokens is not None else None
    return lyrics, desc, p, frames_for(model, settings, max_seconds), {**settings.kwargs(), "cache": settings.kv_cache,
                                                                       "precision": settings.precision}


def generate_together(model, adapters: list[str], settings: Settings, prompt: Prompt, max_seconds: Optional[float],
                      progress: Optional[Callable[[int, int], None]] = None) -> tuple[list[torch.Tensor], float]:
    """The same song once per adapter name (ModelLoader.together) in one batch -> (codes per song, seconds).
    Every row has the settings' seed, so each equals its own one-model run."""
    lyrics, desc, p, frames, sampling = _model_inputs(model, settings, prompt, max_seconds)
    n = len(adapters)
    t0 = time.time()
    codes = model.generate_batch([lyrics] * n, [desc] * n, [p] * n, max_frames=frames, seeds=[settings.seed] * n,
                                 adapters=adapters, progress=progress, **sampling)
    return codes, time.time() - t0


@dataclass
class SongResult:
    name: str
    files: list[str]
    tokens_file: str
    settings_file: str
    frames: int
    seconds_audio: float
    seconds_wall: float
    tokens_sha: str
    model: dict[str, Any]
    val_loss: Optional[float] = None
    val_loss_per_stream: Optional[list[float]] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_song(model, codec, settings: Settings, out_dir: Path, name: str, *, prompt: Optional[Prompt] = None,
                  model_info: Optional[dict[str, Any]] = None, max_seconds: Optional[float] = None,
                  extra: Optional[dict[str, Any]] = None,
                  progress: Optional[Callable[[int, int], None]] = None,
                  generated: Optional[tuple[torch.Tensor, float]] = None,
                  before_decode: Optional[Callable[[], None]] = None) -> SongResult:
    """Generate one song with `model` and write `<name>[_vocal|_bgm].<ext>`, `<name>.json`, `<name>.tokens.npy`.
    generated: (codes, seconds) already made by generate_together; only written here. before_decode: told
    when the frames are done and decoding starts (a stage without frame counts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt = prompt or load_prompt(settings, codec, model)
    lyrics, desc, p, frames, sampling = _model_inputs(model, settings, prompt, max_seconds)
    t0 = time.time()
    if generated is None:
        codes = model.generate(lyrics, desc, p, max_frames=frames, seed=settings.seed, progress=progress, **sampling)
    else:
        codes, t0 = generated[0], t0 - generated[1]
    tokens = codes[0].cpu()
    if before_decode is not None:
        before_decode()
    files, sr, n_samples = [], None, 0
    for suffix, track in TRACKS[settings.gen_type]:
        wav, sr = decode_track(codec, tokens, track, prompt.audio, settings.seed)
        path = out_dir / f"{name}{suffix}.{settings.audio_format}"
        write_audio(path, wav, sr)
        files.append(path.name)
        n_samples = max(n_samples, wav.shape[-1])
    tokens_file = out_dir / f"{name}.tokens.npy"
    np.save(tokens_file, tokens.numpy().astype(np.int64), allow_pickle=False)
    res = SongResult(name=name, files=files, tokens_file=tokens_file.name, settings_file=f"{name}.json",
                     frames=int(tokens.shape[-1]), seconds_audio=round(n_samples / sr, 3) if sr else 0.0,
                     seconds_wall=round(time.time() - t0, 2), tokens_sha=tokens_hash(tokens),
                     model=model_info or {"label": "model"})
    record = {"song": res.to_dict(), "settings": settings.to_dict(), "model_lyrics": lyrics,
              "model_description": desc, "max_frames": frames, "prompt": prompt.source,
              "model_version": model.version, "model_is_demo": bool(getattr(model, "is_demo", False)),
              "codec": getattr(codec, "id", type(codec).__name__),
              "codec_is_demo": bool(getattr(codec, "is_demo", False)),
              "ended_early": int(tokens.shape[-1]) < frames}
    if extra:
        record.update(extra)
    (out_dir / res.settings_file).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    return res
