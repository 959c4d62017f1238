"""A brief pre-training of the DEMO model, so that it is a base LoRA can adapt.

Why: with random weights the demo model predicts every one of its 16385 codes with almost the same
probability (loss ln 16385 = 9.70), and its output heads are frozen in a LoRA run, so adapters on the
attention / MLP layers can hardly move that: a Quick-look LoRA run went 9.74 -> 9.55 in 30 steps and
looked broken. A real SongGeneration checkpoint knows its codec's tokens; this gives the demo model
the same kind of start. It is trained (full, AdamW) on synthetic songs made here -- drums, bass,
chords and a vibrato melody, in verse / chorus sections at varied tempi, keys and mixes -- encoded by
the demo codec, with the bundled demo lyrics as conditions. None of the user's songs is involved, so
a finetune still has everything about them to learn.

Deterministic from the recipe and the demo seed. The result is cached once per machine (safetensors,
keyed by the recipe, the demo config and tokenizer) under `cache_dir()`, so every new workspace
(and every studio sandbox) reuses it instead of training again.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from core.fsutil import atomic_write_bytes, atomic_write_json

# Bump "version" whenever what the recipe produces changes (the cache key includes it).
RECIPE = {"version": 1, "songs": 8, "seconds": 12.0, "steps": 100, "batch": 4, "frames": 64,
          "lr": 3e-3, "warmup": 5}
# The pre-training sequence: the demo config pads every item to 600 lyric + 100 description + 252 prompt
# positions and delays two streams by 250 frames, ~1270 positions for a 64-frame window. None of
# these lengths is a parameter (the shapes are the same), so pre-training runs on a short-context
# twin sharing the weights -- about 8x fewer positions -- and the weights go back to the demo model.
SHORT_CONTEXT = {"delays": [0, 4, 4], "lyric_max_len": 96, "desc_max_len": 24, "prompt_len": 1.0}
SR = 48000
DESCRIPTIONS = ["female, pop, piano", "male, rock, guitar, energetic", "female, ballad, sad, piano",
                "male, dance, electronic, happy", "female, folk, acoustic guitar, calm", "male, hip hop, drums"]


def cache_dir() -> Path:
    """Where machine-wide studio caches live: $SONGGEN_STUDIO_CACHE, else the user's cache folder."""
    env = os.environ.get("SONGGEN_STUDIO_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "songgen-studio"


# ---- the synthetic corpus -------------------------------------------------------------------
def _tone(freq: np.ndarray, sr: int, harmonics: tuple[float, ...]) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics))


def _decay(n: int, sr: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * sr))


def synth_song(seed: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A deterministic 'song' [2, N]: sections (verse quieter, chorus fuller), drums on the beat, a
    bass line, chords and a vibrato melody centred like a vocal, the rest panned."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    bpm = float(rng.uniform(72, 150))
    beat = 60.0 / bpm
    root = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.6 else [0, 2, 3, 5, 7, 8, 10])
    # sections of 4 or 8 beats alternate verse / chorus; the chorus is louder and brighter
    bar = 4 * beat
    section = np.floor(t / (bar * int(rng.choice([2, 4])))).astype(int)
    chorus = (section + int(rng.integers(0, 2))) % 2 == 1
    beats = (t / beat).astype(int)
    degrees = rng.integers(0, 7, size=beats.max() + 2)
    melody_f = 2 * root * 2 ** (scale[degrees[beats]] / 12) * (1 + chorus * 1.0)
    melody_f = melody_f * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))  # vibrato
    phrase = 0.5 + 0.5 * np.cos(np.pi * ((t / bar) % 2))  # phrases breathe
    melody = _tone(melody_f, sr, (0.3, 0.15, 0.08, 0.04)) * phrase * (0.6 + 0.4 * chorus)
    melody *= (rng.random(beats.max() + 2)[beats] > 0.15)  # a few rests
    chord_root = root * 2 ** (scale[(degrees[(beats // 4) * 4] % 7)] / 12)
    chords = sum(_tone(chord_root * r, sr, (0.06, 0.02)) for r in (1.0, 1.26, 1.5)) * (0.5 + 0.5 * chorus)
    bass = _tone(chord_root / 2, sr, (0.25, 0.1))
    drums = np.zeros(n)
    hit = int(0.25 * sr)
    kick = np.sin(2 * np.pi * 55 * np.arange(hit) / sr * (1 + 2 * _decay(hit, sr, 0.02))) * _decay(hit, sr, 0.08)
    noise = rng.standard_normal(hit)
    for k in range(int(seconds / beat * 2)):
        s = int(k * beat / 2 * sr)
        m = min(hit, n - s)
        if m <= 0:
            break
        if k % 2 == 0:
            drums[s:s + m] += (0.5 if (k // 2) % 2 == 0 else 0.0) * kick[:m]
            drums[s:s + m] += (0.0 if (k // 2) % 2 == 0 else 0.3) * noise[:m] * _decay(m, sr, 0.05)
        drums[s:s + m] += 0.08 * noise[:m] * _decay(m, sr, 0.01) * (1 + chorus[s])  # hi-hat
    pan = float(rng.uniform(0.3, 0.7))
    left = melody + 2 * pan * chords + 0.8 * bass + 2 * (1 - pan) * drums * 0.7
    right = melody + 2 * (1 - pan) * chords + 0.8 * bass + 2 * pan * drums * 0.7
    fade = np.minimum(1.0, np.minimum(t / 0.5, (seconds - t) / 0.5))
    out = np.stack([left, right]) * fade * float(rng.uniform(0.3, 0.9))
    return (out / max(1.0, float(np.abs(out).max()) / 0.95)).astype(np.float32)


def corpus(recipe: dict = RECIPE, seed: int = 0) -> list[torch.Tensor]:
    """The synthetic songs as demo-codec tokens: a list of long [3, T]."""
    from core.codec.demo import DemoCodec

    codec = DemoCodec()
    return [codec.encode(torch.from_numpy(synth_song(seed * 1000 + i, recipe["seconds"])))
            for i in range(recipe["songs"])]


def _lyric_sheets() -> list[str]:
    from core.model.demo import ASSETS

    lines = (ASSETS / "tokenizer_corpus.txt").read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.startswith("[")]


def short_context_twin(model):
    """A LeLM with the same parameters (copied) and the SHORT_CONTEXT sequence lengths."""
    import dataclasses

    c = dict(SHORT_CONTEXT)
    cfg = dataclasses.replace(model.config, **c, prompt_max_len=int(round(c["prompt_len"] * model.config.frame_rate)) + 2)
    twin = type(model).build(cfg, model.version)
    twin.load_state_dict(model.state_dict())
    twin.reset_rotary()
    twin.is_demo = True
    return twin


# ---- training -------------------------------------------------------------------------------
def pretrain(model, recipe: dict = RECIPE, seed: int = 0,
             log: Optional[Callable[[str], None]] = None) -> dict:
    """Train `model` (a LeLM, in place, on the CPU) on the synthetic corpus. -> {"first", "last", "seconds"}."""
    from core.data.batch import collate
    from core.training.evaluate import BatchLoss

    t0 = time.time()
    full = model
    model = short_context_twin(full)
    songs = corpus(recipe, seed)
    sheets = _lyric_sheets()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    step_loss = BatchLoss(model, model)
    step_loss.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    warm, steps, W = recipe["warmup"], recipe["steps"], recipe["frames"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    losses = []
    for step in range(steps):
        items = []
        for _ in range(recipe["batch"]):
            i = int(torch.randint(len(songs), (1,), generator=g))
            codes = songs[i]
            start = int(torch.randint(codes.shape[-1] - W, (1,), generator=g))
            # windows inside the song: no end-of-song target (the demo keeps generating to the asked length)
            items.append({"codes": codes[:, start:start + W], "reaches_end": False, "prompt": None,
                          "lyrics": sheets[i % len(sheets)], "description": DESCRIPTIONS[i % len(DESCRIPTIONS)]})
        batch = collate(items, model.config.prompt_frames, model.version)
        model.seed_condition_dropout(seed * 100003 + step)
        per_stream, _ = step_loss(**batch)
        loss = per_stream.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if log and (step % 10 == 0 or step == steps - 1):
            log(f"demo pre-training step {step + 1}/{steps}: loss {losses[-1]:.3f}")
    full.load_state_dict(model.state_dict())
    full.eval()
    return {"first": losses[0], "last": sum(losses[-5:]) / len(losses[-5:]), "seconds": time.time() - t0}


def cache_key(config_text: str, tokenizer_dir: Path, seed: int, recipe: dict = RECIPE) -> str:
    h = hashlib.sha256(json.dumps({"recipe": recipe, "seed": seed}, sort_keys=True).encode())
    h.update(config_text.encode("utf-8"))
    for name in sorted(p.name for p in tokenizer_dir.iterdir() if p.is_file()):
        h.update(name.encode())
        h.update((tokenizer_dir / name).read_bytes())
    return h.hexdigest()[:16]


def pretrained_weights(model, config_text: str, tokenizer_dir: Path, seed: int,
                       log: Optional[Callable[[str], None]] = None) -> dict:
    """Bring the freshly initialised demo `model` to its pre-trained weights: from the machine cache
    when there, else by `pretrain` (then cached). -> {"key", "cached": bool, ...pretrain figures}."""
    from safetensors.torch import load_file, save

    key = cache_key(config_text, tokenizer_dir, seed)
    path = cache_dir() / f"demo-base-{key}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            state = load_file(str(path))
            missing, unexpected = model.load_state_dict(state, strict=False)
            if not missing and not unexpected:
                return {**json.loads(meta_path.read_text(encoding="utf-8")), "key": key, "cached": True}
        except Exception as err:  # a damaged cache entry is rebuilt, never trusted
            if log:
                log(f"demo pre-training cache {path} unreadable ({err}); training again")
    info = pretrain(model, seed=seed, log=log)
    try:
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        atomic_write_bytes(path, save(state))  # the weights first: an entry counts once its json exists
        atomic_write_json(meta_path, info, indent=None)
    except OSError as err:  # a read-only home: the workspace copy still holds the weights
        if log:
            log(f"could not cache the pre-trained demo base in {path.parent}: {err}")
    return {**info, "key": key, "cached": False}


def _say(msg: str) -> None:
    print(f"[demo model] {msg}", file=sys.stderr, flush=True)


def _pretrain_for_sidecar(model, config_text: str, tokenizer_dir: Path, seed: int) -> dict:
    _say(f"first use: pre-training the demo model on synthetic songs ({RECIPE['steps']} steps, once per "
         "machine; cached)")
    info = pretrained_weights(model, config_text, tokenizer_dir, seed, log=_say)
    how = "from the cache" if info["cached"] else f"in {info['seconds']:.0f} s"
    _say(f"pre-trained ({how}): loss {info['first']:.2f} -> {info['last']:.2f}")
    return {"recipe": RECIPE["version"], "cache_key": info["key"], "steps": RECIPE["steps"],
            "loss_first": round(info["first"], 4), "loss_last": round(info["last"], 4)}


def ensure_demo_model(workspace: str | os.PathLike) -> Path:
    """The pre-trained demo checkpoint folder under `workspace`, created on first use."""
    from core.model.demo import demo_weights_state, ensure_demo_runtime, write_demo_weights

    ckpt = ensure_demo_runtime(workspace)
    state = demo_weights_state(ckpt)
    if state is None or not state.get("pretrained"):
        write_demo_weights(ckpt, pretrain=_pretrain_for_sidecar)
    return ckpt


def create_demo_model(root: Path) -> Path:
    """A pre-trained demo runtime + checkpoint at `root` (outside a workspace; benchmarks)."""
    from core.model.demo import create_demo_model as create

    return create(root, pretrain=_pretrain_for_sidecar)
