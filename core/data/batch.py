"""A batch of token items as the model takes it: codes padded with EMPTY, prompts cut to the model's prompt
length, lyrics and descriptions in the form SongGeneration was trained on. Used by SFT and DPO alike."""
from __future__ import annotations

from typing import Any

import torch

from core.text.rules import song_text
from core.tokens import EMPTY


def collate(items: list[dict[str, Any]], prompt_frames: int, version: str) -> dict[str, Any]:
    """Pad codes with EMPTY to the longest window; prompts to `prompt_frames`; model-ready texts
    (`song_text`: an instrumental song is conditioned as upstream's bgm generation)."""
    B = len(items)
    T = max(it["codes"].shape[-1] for it in items)
    codes = torch.full((B, 3, T), EMPTY, dtype=torch.long)
    prompt = torch.full((B, 3, prompt_frames), EMPTY, dtype=torch.long)
    lengths = torch.zeros(B, dtype=torch.long)
    reaches_end = torch.zeros(B, dtype=torch.bool)
    lyrics, descs = [], []
    for b, it in enumerate(items):
        n = it["codes"].shape[-1]
        codes[b, :, :n] = it["codes"]
        lengths[b] = n
        reaches_end[b] = bool(it["reaches_end"])
        if it["prompt"] is not None:
            p = it["prompt"][:, :prompt_frames]
            prompt[b, :, :p.shape[-1]] = p
        lyr, desc = song_text(it["lyrics"], it["description"], version)
        lyrics.append(lyr)
        descs.append(desc)
    return {"codes": codes, "lengths": lengths, "reaches_end": reaches_end, "prompt": prompt,
            "lyrics": lyrics, "descriptions": descs}

