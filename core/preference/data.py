"""Pairs as training data: the train / held-out split, the crop rule and the pair batch.

Split: a prompt's pairs are held out or trained on by a hash of the prompt's text (lyrics and description,
`core.preference.pairs.split_prompts`), so adding pairs never moves a held-out prompt into training. When
the hash would hold out every prompt (one or two judged prompts), there is no held-out set: all train.
Both songs of a pair are scored with the prompt tokens they were generated with (none for pairs
stored without them).

Crop: each side of a pair is cut to its first `max_frames` frames (the same window every epoch,
so a full finetune's reference log-probs can be computed once); EOS is a model input only when
the window holds the song's end, as in SFT. A batch of B pairs is 2B songs collated by the SFT
collate (chosen first, then rejected), so texts reach the model in the same form as in SFT.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

from core.preference.pairs import PairStore, pairs_dir, prompt_key, split_prompts


class PairSet:
    """One split of the pairs dataset."""

    def __init__(self, split, max_frames: int):
        self.split = split
        self.max_frames = int(max_frames)
        plain = split.with_format(None)
        self.pair_ids = list(plain["pair_id"]) if len(split) else []
        self.prompt_ids = list(plain["prompt_id"]) if len(split) else []
        self.frames = [(len(c[0]), len(r[0])) for c, r in zip(plain["chosen"], plain["rejected"])] if len(split) else []

    def __len__(self) -> int:
        return len(self.pair_ids)

    def cropped_length(self, i: int) -> int:
        return min(max(self.frames[i]), self.max_frames)

    def _side(self, tokens, lyrics, description, prompt) -> dict[str, Any]:
        codes = torch.as_tensor(tokens).long()
        return {"codes": codes[:, :self.max_frames], "reaches_end": codes.shape[-1] <= self.max_frames,
                "prompt": None if prompt is None else torch.as_tensor(prompt).long(),
                "lyrics": lyrics, "description": description}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return self.item(key[0])  # (pair, epoch) from the BatchPlan: the crop does not depend on the epoch

    def item(self, i: int) -> dict[str, Any]:
        row = self.split[int(i)]
        prompt = row.get("prompt")
        return {"pair_id": row["pair_id"],
                "chosen": self._side(row["chosen"], row["lyrics"], row["description"], prompt),
                "rejected": self._side(row["rejected"], row["lyrics"], row["description"], prompt)}


def collate_pairs(items: list[dict[str, Any]], prompt_frames: int, version: str) -> dict[str, Any]:
    """B pairs -> one SFT-style batch of 2B songs (chosen 0..B-1, rejected B..2B-1) + their pair ids."""
    from core.data.batch import collate

    batch = collate([it["chosen"] for it in items] + [it["rejected"] for it in items], prompt_frames, version)
    batch["pair_ids"] = [it["pair_id"] for it in items]
    return batch


def load_pair_splits(cfg, max_frames: int) -> tuple[PairSet, Optional[PairSet], dict[str, Any]]:
    """(train pairs, held-out pairs or None, a description for the log) from the workspace's store."""
    from core.config import ConfigError

    store = PairStore(pairs_dir(cfg))
    if not store.exists() or len(store) == 0:
        raise ConfigError(f"no preference pairs in {store.root}: mark preferred / rejected candidates in the "
                          "Export tab or import a jsonl with `python -m core pairs import FILE`")
    ds = store.load()
    keys = [prompt_key(lyr, desc) for lyr, desc in zip(ds["lyrics"], ds["description"])]
    held = split_prompts(keys, cfg.dpo.val_fraction, cfg.training.seed)
    if held == set(keys):  # too few prompts for a held-out set (one judged prompt, say): train on them all
        held = set()
    train_idx = [i for i, k in enumerate(keys) if k not in held]
    val_idx = [i for i, k in enumerate(keys) if k in held]
    train = PairSet(ds.select(train_idx), max_frames)
    val = PairSet(ds.select(val_idx), max_frames) if val_idx else None
    info = {"pairs_dir": str(store.root), "train_pairs": len(train), "val_pairs": len(val_idx),
            "val_prompts": len(held)}
    return train, val, info
