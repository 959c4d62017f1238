"""Listening samples during training: a few fixed prompts generated and decoded at sample points.

Sample 0 uses the first training song's own lyrics and description, to hear what the run learns;
the others are fixed prompts in SongGeneration's lyric grammar. Files `<run>/samples/step-N_K.wav`,
each announced by a `sample` event. Generation leaves torch's RNG and the model's mode as they were,
so samples never change the training that follows.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

import torch

from core.fsutil import atomic_write_bytes
from core.sampling import from_section
from core.training.safe_state import guarded_write

# Fixed sample prompts (lyrics in SongGeneration's grammar, description tags). Sample 0 uses the
# first training song's own lyrics and description instead, to hear what the run learns.
SAMPLE_PROMPTS = [
    ("[intro-short] ; [verse] the city lights are calling me home.i walk the empty streets alone ; "
     "[chorus] hold on to the night.we are young and the sky is bright ; [outro-short]",
     "female, pop, happy, piano, the bpm is 120."),
    ("[intro-short] ; [verse] rain on the window.coffee gone cold ; [chorus] sing it slow.let it go ; [outro-short]",
     "male, folk, sad, acoustic guitar, the bpm is 90."),
    ("[intro-short] ; [verse] fire in the engine.wheels on the road ; [chorus] run run run.never look back ; "
     "[outro-short]", "male, rock, energetic, electric guitar, the bpm is 140."),
]


class SampleWriter:
    """Generates the run's samples with its LeLM (main process only); the codec is loaded on first use."""

    def __init__(self, cfg, lelm, train_split, out_dir: Path):
        self.cfg, self.lelm, self.out_dir = cfg, lelm, out_dir
        self.codec = None
        first = train_split.with_format(None)[0]
        prompts = [(first.get("lyrics") or SAMPLE_PROMPTS[0][0], first.get("description"))] + list(SAMPLE_PROMPTS)
        self.prompts: list[tuple[str, Optional[str]]] = prompts[:cfg.training.num_samples]

    @torch.no_grad()
    def write(self, step: int, reason: str, autocast: Callable[[], ContextManager],
              event: Callable[..., Any]) -> list[str]:
        import soundfile as sf

        from core.text.rules import song_text

        if self.codec is None:
            from core.codec import get_codec
            self.codec = get_codec(self.cfg)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        gen, lelm = self.cfg.generation, self.lelm
        frames = max(1, int(round(self.cfg.training.sample_seconds * lelm.config.frame_rate)))
        frames = min(frames, lelm.config.max_frames)
        was_training = lelm.training
        lelm.eval()
        rng_state = torch.get_rng_state()
        files = []
        try:
            for k, (lyrics, desc) in enumerate(self.prompts):
                lyr, d = song_text(lyrics, desc, lelm.version)  # as the song was trained
                t0 = time.time()
                with autocast():
                    codes = lelm.generate(lyr, d, prompt=None, max_frames=frames, seed=gen.seed + k,
                                          **from_section(gen).kwargs())
                wav, sr = self.codec.decode(codes[0].cpu())
                path = self.out_dir / f"step-{step}_{k}.wav"
                # encoded in memory, then written as one file: libsndfile reports a full disk as a bare
                # "System error"; a Python write names it (ENOSPC) and guarded_write says which file
                buf = io.BytesIO()
                sf.write(buf, wav.detach().float().cpu().numpy().T, sr, format="WAV")
                guarded_write(path, lambda: atomic_write_bytes(path, buf.getvalue()))
                files.append(str(path))
                event("sample", step=step, index=k, path=str(path), lyrics=lyrics, description=desc,
                      frames=int(codes.shape[-1]), seconds=round(time.time() - t0, 2), reason=reason,
                      codec=getattr(self.codec, "id", None), demo_codec=bool(getattr(self.codec, "is_demo", False)))
        finally:
            torch.set_rng_state(rng_state)
            if was_training:
                lelm.train()
        return files
