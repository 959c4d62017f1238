"""What the model being finetuned allows: its timing (from the checkpoint's OfficialConfig) and tags."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from core.config import StudioConfig
from core.errors import StudioError
from core.model.official_config import ModelTiming, OfficialConfig


class DataError(StudioError, ValueError):
    """A prepare run that cannot start; the message names the file or config key to fix."""
    code = "data"


@dataclass
class ModelLimits(ModelTiming):
    """The model's timing as its OfficialConfig states it (nothing copied), plus where it came from."""
    config: OfficialConfig
    version: str
    runtime_root: Optional[Path] = None
    is_demo: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **self.timing_dict(), "is_demo": self.is_demo,
                "runtime_root": str(self.runtime_root) if self.runtime_root else None}

    @property
    def lyric_max_len(self) -> int:
        """The model's lyric token budget (the lyric conditioner cuts the rest)."""
        return int(self.config.lyric_max_len or 0)

    def lyric_tokens(self, text: str) -> Optional[int]:
        """How many tokens the model's lyric tokenizer makes of `text`; None when the tokenizer is unknown.

        The demo model is counted as SongGeneration counts (its Qwen2 tokenizer, bundled), not with its own
        small BPE (3-5 x more tokens for the same lyric): the demo then accepts exactly the lyrics an
        official checkpoint accepts. The demo itself reads its first `lyric_max_len` own tokens."""
        if not self.runtime_root or not self.config.lyric_token_path or not self.lyric_max_len:
            return None
        token_dir = self.runtime_root / self.config.lyric_token_path
        if self.is_demo:
            from core.model.text import official_token_dir

            token_dir = official_token_dir(self.runtime_root / "third_party" / "Qwen2-7B")
        tok = _lyric_tokenizer(str(token_dir), self.lyric_max_len, tuple(self.structure_tags), self.version)
        return len(tok.token_ids(text))


@lru_cache(maxsize=4)
def _lyric_tokenizer(token_dir: str, max_len: int, tags: tuple[str, ...], version: str):
    from core.model.text import lyric_tokenizer

    return lyric_tokenizer(token_dir, max_len, tags, version)


def model_limits(cfg: StudioConfig) -> ModelLimits:
    """max_dur / prompt_len / frame rate / tags of the model being finetuned (paths.base_model_path)."""
    if cfg.paths.base_model_path == "demo":
        # The demo carries its own runtime (in the workspace; paths.runtime_path may then point at a
        # SongGeneration folder used only for Demucs). Its limits need no weights.
        from core.model.demo import DEMO_VERSION, ensure_demo_runtime
        from core.model.official_config import read_official_config

        ckpt = ensure_demo_runtime(cfg.workspace_dir())
        config = read_official_config(ckpt / "config.yaml", runtime_root=ckpt.parents[1])
        return ModelLimits(config, DEMO_VERSION, Path(config.runtime_root), True)
    from core.model.info import describe_checkpoint, locate_base_model  # the model core's one source of truth

    d = describe_checkpoint(locate_base_model(cfg), cfg.paths.runtime_path)
    return ModelLimits(d.config, str(d.version), Path(d.runtime_root) if d.runtime_root else None, bool(d.is_demo))


def check_frame_rate(cfg: StudioConfig, codec: Any, limits: ModelLimits) -> None:
    if int(getattr(codec, "frame_rate", limits.frame_rate)) != limits.frame_rate:
        raise DataError(f"the codec {codec.id} makes {codec.frame_rate} Hz tokens but the model "
                        f"({cfg.paths.base_model_path}) expects {limits.frame_rate} Hz; pick a matching data.codec")
