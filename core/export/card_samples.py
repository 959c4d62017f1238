"""What goes on a pushed model's card: the songs and validation losses of a generation folder (A/B,
sweep) made from the checkpoint being pushed, with the base-model songs they are compared with. A folder
made from another checkpoint (the studio attaches the newest one) gives no samples and no losses; what
is left out is named in the push log."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg")


def _pushed_checkpoints(adapter_dir: Optional[Path], merged_dir: Optional[Path]) -> set[Path]:
    """The checkpoint folder(s) being pushed: the adapter, and the checkpoint the merged export came from."""
    out = {adapter_dir.resolve()} if adapter_dir is not None else set()
    info = merged_dir / "export.json" if merged_dir is not None else None
    if info is not None and info.is_file():
        source = json.loads(info.read_text(encoding="utf-8")).get("source")
        if source:
            out.add(Path(source).expanduser().resolve())
    return out


def _base_like(model: dict[str, Any]) -> bool:
    return model.get("kind") == "base" or (model.get("kind") == "lora" and model.get("strength") == 0)


def _card_items(samples_dir: Optional[Path], pushed: set[Path]) -> tuple[list[dict[str, Any]], Optional[dict], list[str]]:
    """The generation folder's items made from a pushed checkpoint, with the base-model items they are compared
    with (none when no item is the pushed checkpoint's); the folder's settings; the labels left out."""
    if samples_dir is None:
        return [], None, []
    man_path = samples_dir / "manifest.json"
    if not man_path.is_file():
        from core.export.hub import HubError  # hub imports this module

        raise HubError(f"{samples_dir} has no manifest.json; give a folder made by `python -m core generate`")
    man = json.loads(man_path.read_text(encoding="utf-8"))
    if man.get("status", "done") != "done":  # a folder written before manifests had a status is a finished one
        from core.export.hub import HubError

        raise HubError(f"{samples_dir} holds a generation that is {man.get('status')} ({man.get('error') or 'unfinished'}); "
                       "give a finished A/B or sweep folder")
    items = man.get("items", [])
    ours = [it for it in items if not _base_like(it.get("model", {})) and it.get("model", {}).get("checkpoint")
            and Path(it["model"]["checkpoint"]).expanduser().resolve() in pushed]
    keep = [it for it in items if it in ours or (ours and _base_like(it.get("model", {})))]
    dropped = [str(it.get("model", {}).get("label", "?")) for it in items if it not in keep]
    return keep, man.get("settings"), dropped


def card_samples(samples_dir: Optional[Path], adapter_dir: Optional[Path], merged_dir: Optional[Path], say: Callable[[str], None]):
    """Only what the pushed checkpoint made (and the base it is compared with) goes on its card:
    -> (items, card rows, (file, path in repo), the folder's settings)."""
    items, settings, left_out = _card_items(samples_dir, _pushed_checkpoints(adapter_dir, merged_dir))
    if left_out:
        say(f"not on the card (made from another checkpoint than the one pushed): {', '.join(left_out)}")
    rows, files = _samples(samples_dir, items)
    return items, rows, files, settings


def _samples(samples_dir: Optional[Path], items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Audio of the card's items: card rows, (file, path in repo)."""
    rows, files = [], []
    for it in items:
        for f in it.get("files", []):
            src = samples_dir / f
            if not src.is_file() or src.suffix.lower() not in AUDIO_EXT:
                continue
            rows.append({"label": f"{Path(f).stem} ({it.get('model', {}).get('label', '')})",
                         "path": f"samples/{f}", "val_loss": it.get("val_loss")})
            files.append((src, f"samples/{f}"))
    return rows, files


def val_losses(items: list[dict[str, Any]]) -> tuple[Optional[float], Optional[float]]:
    """(base, finetuned) validation loss from the card's items of an A/B or sweep."""
    before = after = None
    for it in items:
        m = it.get("model", {})
        if it.get("val_loss") is None:
            continue
        if _base_like(m) and before is None:
            before = it["val_loss"]
        elif not _base_like(m) and (m.get("kind") == "full" or m.get("strength", 1) == 1):
            after = it["val_loss"]
    return before, after
